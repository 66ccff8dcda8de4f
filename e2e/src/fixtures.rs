//! Builders of the test world: unique namespaces (deleted when the test ends), the CRDs and the
//! default AutonomyPolicy, and the project's objects (SocActions, SocAgents).

use crate::cluster::{FIELD_MANAGER, apply_yaml, blocking_cleanup, repo};
use crate::waiting::wait_for;
use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use socwarden_api::{Grant, Risk, Scope, SocAction, SocActionSpec, SocAgent, SocAgentSpec, Tier, Verb};
use std::time::Duration;

/// A fresh namespace name; `Namespaces` deletes them all when dropped.
pub fn unique(prefix: &str) -> String {
    let n: u32 = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ^ std::process::id())
        % 1_000_000;
    format!("{prefix}-{n:06}")
}

/// Namespaces created for one test, deleted when the test ends (also on failure).
pub struct Namespaces {
    pub names: Vec<String>,
}

impl Namespaces {
    pub async fn create(client: &Client, prefixes: &[&str]) -> Result<Self> {
        let api: Api<Namespace> = Api::all(client.clone());
        let mut names = Vec::new();
        for p in prefixes {
            let name = unique(p);
            api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
            names.push(name);
        }
        Ok(Self { names })
    }

    pub fn get(&self, i: usize) -> &str {
        &self.names[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        blocking_cleanup(move |client| async move {
            let api: Api<Namespace> = Api::all(client);
            for n in names {
                let _ = api.delete(&n, &DeleteParams::background()).await;
            }
        });
    }
}

/// The usual world of a test: the CRDs, the default policy, the people's RBAC
/// (`examples/05-people.yaml`) and two fresh namespaces, the agents' home and their scope.
pub struct Scene {
    pub admin: Client,
    pub ns: Namespaces,
}

impl Scene {
    pub async fn new() -> Result<Self> {
        let admin = crate::cluster::admin().await?;
        install_crds(&admin).await?;
        default_policy(&admin).await?;
        apply_yaml(&admin, &std::fs::read_to_string(repo().join("examples/05-people.yaml"))?).await?;
        let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
        Ok(Self { admin, ns })
    }

    /// The same world on the local control plane, whose API server sends its audit events to the
    /// operator's sink (what the behaviour tests need).
    pub async fn audited() -> Result<Self> {
        if crate::cluster::audit_port().is_none() || crate::cluster::external_cluster() {
            anyhow::bail!(
                "these tests need the local control plane, whose API server sends its audit events to the operator (e2e/cluster up)"
            );
        }
        Self::new().await
    }

    /// Where the agents live.
    pub fn home(&self) -> &str {
        self.ns.get(0)
    }

    /// Where they act.
    pub fn scope(&self) -> &str {
        self.ns.get(1)
    }

    /// On the local control plane's identities only: a fresh scene, a medium-risk isolation
    /// (`isolate_action_yaml`) under a unique name, the operator, and `gated_bot` for it. Returns
    /// the scene, the action's name, the operator (running while held) and the bot's client.
    pub async fn gated_isolation() -> Result<(Self, String, crate::operator::Operator, Client)> {
        if crate::cluster::external_cluster() {
            anyhow::bail!("runs as the local control plane's identities (e2e/cluster up)");
        }
        let s = Self::new().await?;
        let isolate = unique("isolate");
        apply_yaml(&s.admin, &isolate_action_yaml(&isolate, "medium")).await?;
        let op = crate::operator::Operator::start().await?;
        let bot = s.gated_bot(&isolate).await?;
        Ok((s, isolate, op, bot))
    }

    /// Agent `bot`, supervised, acting in its own home with `action` and approved by two
    /// `soc-leads` (the usual gated world); waits until it is Ready and returns a client acting
    /// with its token.
    pub async fn gated_bot(&self, action: &str) -> Result<Client> {
        let home = self.home();
        let mut a = agent("bot", home, Tier::Supervised, &[action], &[home]);
        a.spec.approvers.groups = vec!["soc-leads".into()];
        a.spec.approvers.min_approvals = 2;
        crate::cluster::apply(&Api::<SocAgent>::namespaced(self.admin.clone(), home), &a).await?;
        crate::waiting::wait_agent(&self.admin, home, "bot", "Ready", Duration::from_secs(60), crate::waiting::ready)
            .await?;
        let token = crate::cluster::agent_token(&self.admin, home, "bot").await?;
        crate::cluster::with_token(&token.ok_or_else(|| anyhow::anyhow!("bot has no token"))?).await
    }
}

/// Creates a namespace unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        match api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Installs (or updates) the CRDs from `crds/` and waits until they are served.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for entry in std::fs::read_dir(repo().join("crds"))? {
        let path = entry?.path();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
        wait_for(&format!("CRD {name} established"), Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let c = api.get(&name).await?;
                let ok = c
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(ok.then_some(()))
            }
        })
        .await?;
    }
    Ok(())
}

/// Ensures the `default` AutonomyPolicy exists with default ceilings.
pub async fn default_policy(client: &Client) -> Result<()> {
    apply_yaml(
        client,
        "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {name: default}\nspec: {}\n",
    )
    .await?;
    Ok(())
}

/// A SocAction with one grant.
pub fn action(name: &str, risk: Risk, group: &str, resource: &str, verbs: &[Verb]) -> SocAction {
    SocAction::new(
        name,
        SocActionSpec {
            risk,
            reversible: true,
            description: format!("test action {name}"),
            grants: vec![Grant {
                api_groups: vec![group.to_string()],
                resources: vec![resource.to_string()],
                verbs: verbs.to_vec(),
                resource_names: vec![],
            }],
            ..Default::default()
        },
    )
}

/// A SocAgent with the default policy and credentials.
/// Creates the agents `make(i)` for every `i` in `range`, `concurrency` at a time, each labelled
/// `bench-run=<run>`: how the benchmarks apply a fleet at once.
pub async fn create_agents(
    api: &Api<SocAgent>,
    run: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
    make: impl Fn(usize) -> SocAgent,
) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(range)
        .map(|i| {
            let mut a = make(i);
            a.metadata.labels.get_or_insert_default().insert("bench-run".into(), run.into());
            async move { api.create(&PostParams::default(), &a).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// A reversible SocAction of `risk` that isolates the pods of app `${app}` with a deny-all
/// NetworkPolicy `isolate-${app}` (the catalog's most common gated action), as YAML.
pub fn isolate_action_yaml(name: &str, risk: &str) -> String {
    format!(
        r#"apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {name}}}
spec:
  risk: {risk}
  reversible: true
  parameters: [{{name: app, type: string, required: true, pattern: "[a-z0-9-]+"}}]
  grants: [{{apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [create, delete]}}]
  execution:
    manifest: |
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata:
        name: "isolate-${{app}}"
      spec:
        podSelector: {{matchLabels: {{app: "${{app}}"}}}}
        policyTypes: [Ingress, Egress]
"#
    )
}

pub fn agent(name: &str, namespace: &str, tier: Tier, actions: &[&str], scope: &[&str]) -> SocAgent {
    let mut a = SocAgent::new(
        name,
        SocAgentSpec {
            tier,
            actions: actions.iter().map(|s| s.to_string()).collect(),
            scope: Scope { namespaces: scope.iter().map(|s| s.to_string()).collect() },
            policy_ref: "default".into(),
            ..Default::default()
        },
    );
    a.metadata.namespace = Some(namespace.to_string());
    a
}

/// An AutonomyPolicy of a test's own (e.g. one whose kill switch it flips), deleted when dropped
/// so that a failing test does not leave every agent paused.
pub struct KillSwitch {
    pub name: String,
}

impl KillSwitch {
    pub fn new() -> Self {
        Self { name: unique("emergency") }
    }

    /// Sets the kill switch of this policy on or off.
    pub async fn set(&self, client: &Client, on: bool) -> Result<()> {
        apply_yaml(
            client,
            &format!("apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {}}}\nspec: {{killSwitch: {on}}}\n", self.name),
        )
        .await
        .map(|_| ())
    }
}

impl Default for KillSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KillSwitch {
    fn drop(&mut self) {
        let name = self.name.clone();
        blocking_cleanup(move |client| async move {
            let _ = kube::Api::<socwarden_api::AutonomyPolicy>::all(client)
                .delete(&name, &kube::api::DeleteParams::default())
                .await;
        });
    }
}

/// Waits until no SocAgent is left outside `namespaces` — the agents of earlier tests, whose
/// namespaces are being deleted once an operator releases them (it must be running). A test whose
/// invariant has a deadline starts from a quiet operator, not one still tearing down the last
/// test's fleet.
pub async fn only_agents_in(client: &Client, namespaces: &[&str], timeout: Duration) -> Result<()> {
    let all: Api<SocAgent> = Api::all(client.clone());
    wait_for("earlier tests' agents gone", timeout, || async {
        let left = all.list(&Default::default()).await?.items;
        Ok(left.iter().all(|a| a.metadata.namespace.as_deref().is_some_and(|n| namespaces.contains(&n))).then_some(()))
    })
    .await
}
