//! Helpers shared by the end-to-end tests and the benchmarks: identities of the local control
//! plane (or of the cluster of `KUBECONFIG`), the operator as a child process, waiting for
//! conditions, and small builders of the project's objects.

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use socwarden_api::{Grant, Risk, Scope, SocAction, SocActionSpec, SocAgent, SocAgentSpec, Tier, Verb};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FIELD_MANAGER: &str = "e2e";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Where `e2e/cluster up` writes its kubeconfigs.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("SOC_WARDEN_CLUSTER_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("e2e/.cluster"))
}

/// The admin kubeconfig: `KUBECONFIG` when set (an existing cluster), else the local control plane's.
pub fn admin_kubeconfig() -> PathBuf {
    match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cluster_dir().join("admin.kubeconfig"),
    }
}

/// Whether the tests run against a cluster of the user's (identities are then impersonated).
pub fn external_cluster() -> bool {
    !cluster_dir().join("admin.kubeconfig").exists() || std::env::var_os("KUBECONFIG").is_some_and(|p| !p.is_empty())
}

pub async fn config_of(path: &Path) -> Result<Config> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)
}

pub async fn admin_config() -> Result<Config> {
    config_of(&admin_kubeconfig()).await
}

pub async fn admin() -> Result<Client> {
    Ok(Client::try_from(admin_config().await?)?)
}

/// The groups of each test identity (same as `e2e/cluster`'s token file).
pub fn groups_of(identity: &str) -> Vec<String> {
    let g = match identity {
        "lead-a" | "lead-b" | "lead-c" => "soc-leads",
        "analyst" => "soc-analysts",
        "gitops" => "gitops-appliers",
        "admin" => "system:masters",
        _ => "",
    };
    vec![g.to_string()]
}

/// A client acting as one of the test identities: its own token on the local control plane, or
/// impersonation (same user name and groups) on an existing cluster.
pub async fn as_user(identity: &str) -> Result<Client> {
    let local = cluster_dir().join(format!("{identity}.kubeconfig"));
    if !external_cluster() && local.exists() {
        return Ok(Client::try_from(config_of(&local).await?)?);
    }
    let mut cfg = admin_config().await?;
    cfg.auth_info.impersonate = Some(identity.to_string());
    cfg.auth_info.impersonate_groups = Some(groups_of(identity));
    Ok(Client::try_from(cfg)?)
}

/// A client that presents `token` (an agent's) to the same API server.
pub async fn with_token(token: &str) -> Result<Client> {
    let mut cfg = admin_config().await?;
    cfg.auth_info = serde_json::from_value::<AuthInfo>(json!({ "token": token }))?;
    Ok(Client::try_from(cfg)?)
}

/// A fresh namespace name; `Namespaces` deletes them all when dropped.
pub fn unique(prefix: &str) -> String {
    let n: u32 = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ^ std::process::id())
        % 1_000_000;
    format!("{prefix}-{n:06}")
}

/// Runs `f` with a fresh admin client on a runtime of its own, from a plain thread: usable from
/// `Drop`, where the test's runtime is blocked (its clients cannot make progress there).
pub fn blocking_cleanup<F, Fut>(f: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            if let Ok(c) = admin().await {
                f(c).await
            }
        })
    })
    .join()
    .ok();
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

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` saying what it waited for.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// Server-side applies every document of a multi-document YAML, as `kubectl apply --server-side` would.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value)?;
        let types = obj.types.clone().ok_or_else(|| anyhow!("document without apiVersion/kind"))?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match (caps.scope, obj.namespace()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &ar),
            (kube::discovery::Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &ar),
            (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        out.push(api.patch(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj)).await?);
    }
    Ok(out)
}

use serde::Deserialize;

/// Applies a typed object with server-side apply.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.patch(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await?)
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

/// Ensures the `default` AutonomyPolicy exists with default ceilings.
pub async fn default_policy(client: &Client) -> Result<()> {
    apply_yaml(
        client,
        "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {name: default}\nspec: {}\n",
    )
    .await?;
    Ok(())
}

/// The status condition `type_` of an agent, once the operator wrote it.
pub fn condition(a: &SocAgent, type_: &str) -> Option<socwarden_api::Condition> {
    a.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Waits until the agent satisfies `pred`, returning it.
pub async fn wait_agent(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&SocAgent) -> bool,
) -> Result<SocAgent> {
    let api: Api<SocAgent> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("agent {ns}/{name}: {what}"), timeout, || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let a = api.get_opt(name).await?;
            Ok(a.filter(|a| pred(a)))
        }
    })
    .await
}

pub fn ready(a: &SocAgent) -> bool {
    condition(a, "Ready").is_some_and(|c| c.status == "True")
        && a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation
}

/// The token in the agent's Secret, read as admin.
pub async fn agent_token(client: &Client, ns: &str, agent: &str) -> Result<Option<String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(s) = api.get_opt(&socwarden_core::agent::credentials::secret_name(agent)).await? else {
        return Ok(None);
    };
    let token = s.data.and_then(|d| d.get("token").map(|b| String::from_utf8_lossy(&b.0).to_string()));
    Ok(token)
}

/// HTTP status of a request made with `client`: 200-ish, 401, 403, 404 …
pub async fn status_of<T, F>(f: F) -> u16
where
    F: Future<Output = kube::Result<T>>,
{
    match f.await {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => {
            // An unauthenticated client may fail before any status (e.g. on discovery).
            eprintln!("request failed without an API status: {e}");
            0
        }
    }
}

/// Asks the API server whether the caller of `client` may do `verb` on `resource` in `namespace`.
pub async fn can_i(client: &Client, verb: &str, group: &str, resource: &str, namespace: &str) -> Result<bool> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = api.create(&PostParams::default(), &review).await?;
    Ok(r.status.is_some_and(|s| s.allowed))
}

/// The `warden` binary built by `cargo build` (or `WARDEN_BIN`).
pub fn warden_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARDEN_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    target.join("debug/warden")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The port the local control plane sends its audit events to (from `e2e/.cluster/env`).
pub fn audit_port() -> Option<u16> {
    let env = std::fs::read_to_string(cluster_dir().join("env")).ok()?;
    env.lines().find_map(|l| l.strip_prefix("AUDIT_PORT=")).and_then(|p| p.trim().parse().ok())
}

/// Where the operator under test keeps its Secrets.
pub const OPERATOR_NAMESPACE: &str = "soc-warden-system";

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

/// The decision log every operator started by the tests appends to.
pub fn decision_log() -> PathBuf {
    repo().join("target/e2e-logs/decisions.jsonl")
}

/// The operator as a child process of the test, killed when dropped.
/// The kubectl of the local control plane (or the one on PATH for an existing cluster).
pub fn kubectl() -> String {
    let env = cluster_dir().join("env");
    let local = (!external_cluster()).then(|| std::fs::read_to_string(env).ok()).flatten();
    local
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("KUBECTL=")).map(String::from))
        .unwrap_or_else(|| "kubectl".into())
}

/// The chart renderer `e2e/test` builds from `e2e/render` (Helm itself is not installable here).
pub fn renderer() -> PathBuf {
    repo().join("target/render")
}

/// Renders `charts/soc-warden` with the given values files (release `soc-warden` in the operator's
/// namespace), the chart's CRDs first unless `skip_crds`.
pub fn render_chart(values: &[PathBuf], skip_crds: bool) -> Result<String> {
    let bin = renderer();
    if !bin.exists() {
        bail!("{} not found: run e2e/test (it builds the chart renderer from e2e/render)", bin.display());
    }
    let mut cmd = Command::new(&bin);
    cmd.args(["-name", "soc-warden", "-namespace", OPERATOR_NAMESPACE]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    if skip_crds {
        cmd.arg("-skip-crds");
    }
    let out = cmd.arg(repo().join("charts/soc-warden")).output()?;
    if !out.status.success() {
        bail!("rendering the chart: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The documents of a multi-document YAML stream (empty ones dropped).
pub fn yaml_docs(yaml: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = serde_json::Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The kinds of the chart that make up the operator's identity and permissions.
const IDENTITY_KINDS: &[&str] = &["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// How the operator authenticates in the tests: as the Helm chart's ServiceAccount, with exactly
/// the chart's RBAC (rendered with the default values and applied here) and a TokenRequest token,
/// so every end-to-end test also proves the chart's permissions are enough. Returns its kubeconfig
/// and the chart's delegable rules (a file for `--delegable`). `SOC_WARDEN_E2E_OPERATOR=admin`
/// runs it as the admin instead (for debugging a failure that might be RBAC).
async fn operator_identity() -> Result<Option<(PathBuf, PathBuf)>> {
    static IDENTITY: tokio::sync::OnceCell<Option<(PathBuf, PathBuf)>> = tokio::sync::OnceCell::const_new();
    IDENTITY
        .get_or_try_init(|| async {
            if std::env::var("SOC_WARDEN_E2E_OPERATOR").is_ok_and(|v| v == "admin") {
                return Ok(None);
            }
            let admin = admin().await?;
            ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
            let docs = yaml_docs(&render_chart(&[], true)?)?;
            let mut delegable = None;
            let mut sa_name = None;
            for d in &docs {
                let kind = d["kind"].as_str().unwrap_or_default();
                if kind == "ConfigMap" {
                    delegable = d["data"]["delegable.yaml"].as_str().map(String::from);
                }
                if kind == "ServiceAccount" {
                    sa_name = d["metadata"]["name"].as_str().map(String::from);
                }
                if IDENTITY_KINDS.contains(&kind) {
                    apply_yaml(&admin, &serde_yaml::to_string(d)?).await?;
                }
            }
            let sa_name = sa_name.ok_or_else(|| anyhow!("the chart renders no ServiceAccount"))?;
            let delegable = delegable.ok_or_else(|| anyhow!("the chart renders no delegable.yaml ConfigMap"))?;
            let sa = Api::<ServiceAccount>::namespaced(admin.clone(), OPERATOR_NAMESPACE);
            let tr: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 4 * 3600}}))?;
            let token = sa
                .create_token_request(&sa_name, &PostParams::default(), &tr)
                .await?
                .status
                .map(|s| s.token)
                .ok_or_else(|| anyhow!("no token for the chart's ServiceAccount"))?;
            // The admin kubeconfig's cluster, with the ServiceAccount as its user.
            let mut kc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(admin_kubeconfig())?)?;
            kc["users"] = serde_yaml::to_value(json!([{"name": "soc-warden-operator", "user": {"token": token}}]))?;
            if let Some(contexts) = kc["contexts"].as_sequence_mut() {
                for c in contexts {
                    c["context"]["user"] = "soc-warden-operator".into();
                }
            }
            let dir = repo().join("target/e2e-logs");
            std::fs::create_dir_all(&dir)?;
            let kubeconfig = dir.join(format!("operator-{}.kubeconfig", std::process::id()));
            std::fs::write(&kubeconfig, serde_yaml::to_string(&kc)?)?;
            let rules = dir.join(format!("delegable-{}.yaml", std::process::id()));
            std::fs::write(&rules, delegable)?;
            Ok::<_, anyhow::Error>(Some((kubeconfig, rules)))
        })
        .await
        .cloned()
}

pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra_args: &[&str]) -> Result<Self> {
        Self::start_opts(extra_args, true).await
    }

    /// `audit`: listen on the local control plane's audit port (only one process can).
    pub async fn start_opts(extra_args: &[&str], audit: bool) -> Result<Self> {
        let bin = warden_bin();
        if !bin.exists() {
            bail!("{} not found: run `cargo build --bin warden` first (e2e/test does)", bin.display());
        }
        ensure_namespace(&admin().await?, OPERATOR_NAMESPACE).await?;
        let metrics_port = free_port();
        let webhook_port = free_port();
        // The API server must reach the webhook: on the local control plane that is loopback.
        let host = std::env::var("SOC_WARDEN_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let logs = repo().join("target/e2e-logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("operator-{}.log", unique("run")));
        let out = std::fs::File::create(&log)?;
        let decision_log = logs.join("decisions.jsonl");
        // The local control plane sends its audit events to a fixed port: listen there.
        let audit: Vec<String> = match (audit_port(), external_cluster() || !audit) {
            (Some(port), false) => vec![
                "--audit-addr".into(),
                format!("127.0.0.1:{port}"),
                "--audit-token-file".into(),
                cluster_dir().join("audit-token").display().to_string(),
            ],
            _ => vec![],
        };
        let identity = operator_identity().await?;
        let (kubeconfig, delegable) = match &identity {
            Some((k, d)) => (k.clone(), vec!["--delegable".to_string(), d.display().to_string()]),
            None => (admin_kubeconfig(), vec![]),
        };
        let child = Command::new(&bin)
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--namespace", OPERATOR_NAMESPACE])
            .args(["--webhook-addr", &format!("0.0.0.0:{webhook_port}")])
            .args(["--webhook-url", &format!("https://{host}:{webhook_port}")])
            .arg("--decision-log")
            .arg(&decision_log)
            .args(&audit)
            .args(&delegable)
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let op = Self { child: Some(child), metrics_port, log };
        let url = format!("http://127.0.0.1:{metrics_port}/readyz");
        wait_for("operator ready", Duration::from_secs(60), || {
            let url = url.clone();
            async move { Ok(http_get(&url).await.ok().filter(|(code, _)| *code == 200).map(|_| ())) }
        })
        .await
        .with_context(|| format!("operator log: {}", op.log.display()))?;
        Ok(op)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub async fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(body)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET on loopback (enough for /metrics and /readyz).
pub async fn http_get(url: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// URLs"))?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// The value of a metric line `name{labels} value` (first match with all `labels`).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
            return None;
        }
        value.parse().ok()
    })
}

/// Objects of `ar` labelled as belonging to an agent, in every namespace.
pub async fn owned_by(client: &Client, ar: &ApiResource, agent_ns: &str, agent: &str) -> Result<Vec<DynamicObject>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let lp = kube::api::ListParams::default()
        .labels(&format!("socwarden.io/agent={agent},socwarden.io/agent-namespace={agent_ns}"));
    Ok(api.list(&lp).await?.items)
}

/// Watches until `n` agents in `namespaces` satisfy `pred`; returns the elapsed time.
pub async fn wait_all_agents(
    client: &Client,
    label: &str,
    n: usize,
    pred: fn(&SocAgent) -> bool,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let api: Api<SocAgent> = Api::all(client.clone());
    let wc = kube::runtime::watcher::Config::default().labels(label);
    let mut done = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(kube::runtime::watcher(api, wc).default_backoff_applied());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => bail!("only {} of {n} agents ready after {timeout:?}", done.len()),
            ev = stream.next() => {
                let Some(ev) = ev else { bail!("watch ended") };
                let a = ev?;
                let key = format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any());
                if pred(&a) { done.insert(key); } else { done.remove(&key); }
                if done.len() >= n { return Ok(start.elapsed()); }
            }
        }
    }
}

trait AppliedObjects:
    futures::Stream<Item = Result<kube::runtime::watcher::Event<SocAgent>, kube::runtime::watcher::Error>> + Sized
{
    fn default_backoff_applied(self) -> impl futures::Stream<Item = Result<SocAgent, kube::runtime::watcher::Error>> {
        use kube::runtime::WatchStreamExt;
        self.default_backoff().applied_objects()
    }
}
impl<S> AppliedObjects for S where
    S: futures::Stream<Item = Result<kube::runtime::watcher::Event<SocAgent>, kube::runtime::watcher::Error>>
{
}

/// The peak resident memory of a process (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The resident memory of a process (VmRSS), in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
