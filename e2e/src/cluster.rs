//! Reaching the control plane: the repository root and the local cluster's state directory
//! (`e2e/.cluster`), kubeconfigs and clients (admin, test identities, agent tokens), kubectl,
//! server-side apply, and access checks.

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::path::{Path, PathBuf};

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

/// The token in the agent's Secret, read as admin.
pub async fn agent_token(client: &Client, ns: &str, agent: &str) -> Result<Option<String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(s) = api.get_opt(&socwarden_core::agent::credentials::secret_name(agent)).await? else {
        return Ok(None);
    };
    let token = s.data.and_then(|d| d.get("token").map(|b| String::from_utf8_lossy(&b.0).to_string()));
    Ok(token)
}

/// The id the API server gives the calls made with `token` in its audit events, `JTI=<jti>`: the
/// token's `jti` claim, read here on its own (not with the operator's code) so a test compares
/// what the operator recorded with the token itself.
pub fn token_id(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(format!("JTI={}", claims["jti"].as_str()?))
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

/// Applies a typed object with server-side apply.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.patch(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await?)
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

/// Objects of `ar` labelled as belonging to an agent, in every namespace.
pub async fn owned_by(client: &Client, ar: &ApiResource, agent_ns: &str, agent: &str) -> Result<Vec<DynamicObject>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let lp = kube::api::ListParams::default()
        .labels(&format!("socwarden.io/agent={agent},socwarden.io/agent-namespace={agent_ns}"));
    Ok(api.list(&lp).await?.items)
}

/// The port the local control plane sends its audit events to (from `e2e/.cluster/env`).
pub fn audit_port() -> Option<u16> {
    let env = std::fs::read_to_string(cluster_dir().join("env")).ok()?;
    env.lines().find_map(|l| l.strip_prefix("AUDIT_PORT=")).and_then(|p| p.trim().parse().ok())
}

/// The CA of the client certificate the local control plane presents to admission webhooks.
pub fn webhook_client_ca() -> Option<PathBuf> {
    if external_cluster() {
        return None;
    }
    let env = std::fs::read_to_string(cluster_dir().join("env")).ok()?;
    env.lines().find_map(|l| l.strip_prefix("WEBHOOK_CLIENT_CA=")).map(|p| PathBuf::from(p.trim()))
}

/// A kubeconfig for the local control plane that presents `token` (an agent's), written next to
/// the test identities' as `<name>.kubeconfig`; kubectl run with it acts as the agent.
pub fn token_kubeconfig(name: &str, token: &str) -> Result<PathBuf> {
    let template = std::fs::read_to_string(cluster_dir().join("analyst.kubeconfig"))?;
    let text: String = template
        .lines()
        .map(|l| if l.trim_start().starts_with("token:") { format!("    token: {token}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let path = cluster_dir().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text + "\n")?;
    Ok(path)
}

/// Runs kubectl with `kubeconfig`, feeding `stdin`; (success, stdout + stderr).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: &str) -> Result<(bool, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(kubectl())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

/// The kubectl of the local control plane (or the one on PATH for an existing cluster).
pub fn kubectl() -> String {
    let env = cluster_dir().join("env");
    let local = (!external_cluster()).then(|| std::fs::read_to_string(env).ok()).flatten();
    local
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("KUBECTL=")).map(String::from))
        .unwrap_or_else(|| "kubectl".into())
}

/// Runs `e2e/cluster ARGS…` on the local control plane (the fault tests stop and start its parts).
pub fn control_plane(args: &[&str]) -> Result<()> {
    if external_cluster() {
        return Err(anyhow!("fault tests need the local control plane (e2e/cluster up), not KUBECONFIG"));
    }
    let out = std::process::Command::new(repo().join("e2e/cluster"))
        .args(args)
        .env("SOC_WARDEN_CLUSTER_DIR", cluster_dir())
        .stdout(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(anyhow!("e2e/cluster {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// The process id of the local control plane's etcd (the first line of `e2e/.cluster/pids`).
pub fn etcd_pid() -> Result<u32> {
    let pids = std::fs::read_to_string(cluster_dir().join("pids")).context("reading the cluster's pids")?;
    Ok(pids.lines().next().ok_or_else(|| anyhow!("no etcd pid"))?.trim().parse()?)
}
