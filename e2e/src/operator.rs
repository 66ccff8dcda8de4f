//! The operator under test as a child process: the `warden` binary, the chart ServiceAccount it
//! runs as (its RBAC from `helm template`), its ports and logs, and scraping its HTTP endpoints and
//! memory.

use crate::cluster::{
    admin, admin_kubeconfig, apply_yaml, audit_port, cluster_dir, external_cluster, repo, webhook_client_ca,
};
use crate::fixtures::{ensure_namespace, unique};
use crate::waiting::yaml_docs;
use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the operator under test keeps its Secrets.
pub const OPERATOR_NAMESPACE: &str = "soc-warden-system";

/// The holders of the Leases of `count` shards, by shard (a shard nobody holds is absent).
pub async fn shard_holders(admin: &kube::Client, count: usize) -> Result<std::collections::BTreeMap<usize, String>> {
    let api = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let mut out = std::collections::BTreeMap::new();
    for k in 0..count {
        let lease = api.get_opt(&soc_warden::shard::lease_name(k, count)).await?;
        if let Some(h) = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty()) {
            out.insert(k, h);
        }
    }
    Ok(out)
}

/// The `warden` binary built by `cargo build` (or `WARDEN_BIN`).
pub fn warden_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARDEN_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    target.join("debug/warden")
}

/// Where each operator the tests start is recorded by its pid: `e2e/test` stops those a test
/// left behind (a test process killed mid-way cannot drop its `Operator`), and no other process.
pub fn operator_pids() -> PathBuf {
    repo().join("target/e2e-logs/operators.pids")
}

fn record_pid(pid: u32) {
    use std::io::Write as _;
    let path = operator_pids();
    let _ = std::fs::create_dir_all(path.parent().expect("a directory"));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(f, "{pid}");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The decision log every operator started by the tests appends to.
pub fn decision_log() -> PathBuf {
    repo().join("target/e2e-logs/decisions.jsonl")
}

/// Lines of the decision log about one request.
pub fn logged(request: &str, ns: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(decision_log()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["request"] == request && v["namespace"] == ns)
        .collect()
}

/// Lines of the decision log about agent `agent` of `ns` that say `decision`.
pub fn logged_for_agent(ns: &str, agent: &str, decision: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(decision_log()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["namespace"] == ns && v["agent"] == agent && v["decision"] == decision)
        .collect()
}

/// A client with the operator's identity (see `operator_identity`): what a plain client doing the
/// operator's writes would be authorized as.
pub async fn operator_client() -> Result<kube::Client> {
    match operator_identity().await? {
        Some((kubeconfig, _)) => Ok(kube::Client::try_from(crate::config_of(&kubeconfig).await?)?),
        None => admin().await,
    }
}

/// The kinds of the chart that make up the operator's identity and permissions, and the policy that
/// only that identity writes statuses and DriftReports (so every test runs under it).
const IDENTITY_KINDS: &[&str] = &[
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// How the operator authenticates in the tests: as the Helm chart's ServiceAccount, with exactly
/// the chart's RBAC (rendered by `helm template` with the default values and the webhook's client CA, applied here) and a TokenRequest token,
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
            // The defaults plus the one choice the chart requires (who may call the webhook).
            let docs = yaml_docs(&crate::helm::render_chart(
                &[repo().join("charts/soc-warden/ci/api-server-client-ca.yaml")],
                true,
            )?)?;
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

/// The operator as a child process of the test, killed when dropped.
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    /// Where the admission webhook listens (TLS, on every address of the machine).
    pub webhook_port: u16,
    /// Where the MCP gateway listens (TLS, loopback; `mcp_url`).
    pub mcp_port: u16,
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
        // A port `free_port` found free may be taken by an outgoing connection before the operator
        // binds it: start again on fresh ports (the operator exits at once when a bind fails).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(extra_args, audit).await {
                Err(e) if attempt < 3 && e.to_string().contains("port taken") => continue,
                other => return other,
            }
        }
    }

    async fn start_once(extra_args: &[&str], audit: bool) -> Result<Self> {
        let bin = warden_bin();
        if !bin.exists() {
            bail!("{} not found: run `cargo build --bin warden` first (e2e/test does)", bin.display());
        }
        ensure_namespace(&admin().await?, OPERATOR_NAMESPACE).await?;
        let metrics_port = free_port();
        let webhook_port = free_port();
        let mcp_port = free_port();
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
        // As its ServiceAccount the operator learns its user name (SelfSubjectReview); as the admin
        // (a static token) it is told (SOC_WARDEN_E2E_OPERATOR_USER for another cluster's user).
        let operator_user: Vec<String> = match &identity {
            Some(_) => vec![],
            None => vec![
                "--operator-user".into(),
                std::env::var("SOC_WARDEN_E2E_OPERATOR_USER").unwrap_or_else(|_| "admin".into()),
            ],
        };
        // The local control plane authenticates to admission webhooks with a client certificate.
        let client_ca: Vec<String> = match webhook_client_ca() {
            Some(ca) => vec!["--webhook-client-ca".into(), ca.display().to_string()],
            None => vec![],
        };
        let child = Command::new(&bin)
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--namespace", OPERATOR_NAMESPACE])
            .args(["--webhook-addr", &format!("0.0.0.0:{webhook_port}")])
            // A test may register another URL (one nothing answers, say).
            .args(if extra_args.contains(&"--webhook-url") {
                vec![]
            } else {
                vec!["--webhook-url".to_string(), format!("https://{host}:{webhook_port}")]
            })
            .args(["--mcp-addr", &format!("127.0.0.1:{mcp_port}")])
            .args(&operator_user)
            .arg("--decision-log")
            .arg(&decision_log)
            .args(&audit)
            .args(&delegable)
            .args(&client_ca)
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        record_pid(child.id());
        let mut op = Self { child: Some(child), metrics_port, webhook_port, mcp_port, log };
        let url = format!("http://127.0.0.1:{metrics_port}/readyz");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http_get(&url).await.is_ok_and(|(code, _)| code == 200) {
                return Ok(op);
            }
            if let Some(code) = op.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                if std::fs::read_to_string(&op.log).is_ok_and(|l| l.contains("Address already in use")) {
                    bail!("port taken");
                }
                bail!("the operator exited ({code}) before it was ready; operator log: {}", op.log.display());
            }
            if std::time::Instant::now() > deadline {
                bail!("timed out after 60s waiting for the operator to be ready; operator log: {}", op.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The MCP gateway's endpoint.
    pub fn mcp_url(&self) -> String {
        format!("https://127.0.0.1:{}/mcp", self.mcp_port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the process (`STOP`, `CONT`, …).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status()?.success();
        if !ok {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The HTTP status `/readyz` answers.
    pub async fn readyz(&self) -> Result<u16> {
        Ok(http_get(&format!("http://127.0.0.1:{}/readyz", self.metrics_port)).await?.0)
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

/// For a test that creates SocAgents while no operator runs (the operator is started on them
/// later): removes the webhook configurations an earlier test's operator left behind. They fail
/// closed, and SocAgent creates are reviewed, so they would refuse every create ("failed calling
/// webhook"). Waits until the API server has stopped calling them (its informer lags the delete).
pub async fn forget_webhook(admin: &kube::Client) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
    let name = soc_warden::webhook_config::WEBHOOK_CONFIG;
    let dp = kube::api::DeleteParams::default();
    let _ = Api::<ValidatingWebhookConfiguration>::all(admin.clone()).delete(name, &dp).await;
    let _ = Api::<MutatingWebhookConfiguration>::all(admin.clone()).delete(name, &dp).await;
    let probe = crate::fixtures::agent(&unique("probe"), "default", socwarden_api::Tier::Observe, &[], &["default"]);
    let dry = PostParams { dry_run: true, ..Default::default() };
    crate::waiting::wait_for("the API server no longer calling the webhook", Duration::from_secs(30), || {
        let (api, probe, dry) =
            (Api::<socwarden_api::SocAgent>::namespaced(admin.clone(), "default"), probe.clone(), dry.clone());
        async move {
            match api.create(&dry, &probe).await {
                Ok(_) => Ok(Some(())),
                Err(kube::Error::Api(e)) if e.message.contains("failed calling webhook") => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
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
