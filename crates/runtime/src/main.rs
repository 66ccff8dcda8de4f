use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use soc_warden::crdgen;
use soc_warden::probe;
use soc_warden::run;
use soc_warden::webhook_config::Endpoint;
use socwarden_core::agent::rbac;
use std::net::SocketAddr;
use std::path::PathBuf;

/// SOC Warden: keeps the AI agents of a Security Operations Center inside the autonomy they were granted.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run the operator against the cluster of KUBECONFIG (or the in-cluster service account).
    Run {
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "WARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// YAML list of the RBAC rules the operator may delegate to agents (default: the built-in list).
        #[arg(long, env = "WARDEN_DELEGABLE")]
        delegable: Option<PathBuf>,
        /// How many agents are reconciled at once.
        #[arg(long, env = "WARDEN_CONCURRENCY", default_value_t = 32)]
        concurrency: u16,
        /// Whether /metrics has every agent's drift score and token expiry: auto (every agent's
        /// under 2,000 agents, beyond only those worth a look — score >= 0.3, token expiring
        /// within 15 min), on, or off (only those worth a look).
        #[arg(long, env = "WARDEN_PER_AGENT_METRICS", value_enum, default_value_t = soc_warden::metrics::PerAgent::Auto)]
        per_agent_metrics: soc_warden::metrics::PerAgent,
        /// Log format.
        #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// The operator's namespace, where it keeps its signing key and webhook certificate.
        #[arg(long, env = "POD_NAMESPACE", default_value = "soc-warden-system")]
        namespace: String,
        /// Address the admission webhook listens on (TLS).
        #[arg(long, env = "WARDEN_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
        webhook_addr: SocketAddr,
        /// URL the API server uses to reach the webhook, e.g. https://127.0.0.1:9443 for a local
        /// operator. Registers the webhook configurations.
        #[arg(long, env = "WARDEN_WEBHOOK_URL", conflicts_with = "webhook_service")]
        webhook_url: Option<String>,
        /// The Service in front of the operator, as namespace/name:port. Registers the webhook
        /// configurations.
        #[arg(long, env = "WARDEN_WEBHOOK_SERVICE")]
        webhook_service: Option<String>,
        /// A directory with tls.crt, tls.key and ca.crt for the webhook (default: generated and
        /// kept in the Secret socwarden-webhook-tls).
        #[arg(long, env = "WARDEN_WEBHOOK_CERT_DIR")]
        webhook_cert_dir: Option<PathBuf>,
        /// PEM file of the CA that signed the client certificate the API server presents to
        /// admission webhooks (its --admission-control-config-file). With it, the webhook answers
        /// only callers holding such a certificate; without it, anyone who reaches the port.
        #[arg(long, env = "WARDEN_WEBHOOK_CLIENT_CA")]
        webhook_client_ca: Option<PathBuf>,
        /// How often the webhook configurations are written again (undoing deletions or edits).
        #[arg(long, env = "WARDEN_WEBHOOK_REPAIR_INTERVAL", default_value = "30s", value_parser = parse_duration)]
        webhook_repair_interval: std::time::Duration,
        /// Address of the audit sink (TLS; the API server's audit webhook posts to /audit).
        #[arg(long, env = "WARDEN_AUDIT_ADDR")]
        audit_addr: Option<SocketAddr>,
        /// File holding the bearer token the API server presents to the audit sink (required with --audit-addr).
        #[arg(long, env = "WARDEN_AUDIT_TOKEN_FILE", requires = "audit_addr")]
        audit_token_file: Option<PathBuf>,
        /// Take part in leader election (a Lease in --namespace): only the leader reconciles.
        #[arg(long, env = "WARDEN_LEADER_ELECT")]
        leader_elect: bool,
        /// This replica's name in the lease (default: POD_NAME, or host name and process id).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// How long a lease holds without renewal.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        lease_duration: std::time::Duration,
        /// With leader election, how many shards the agents are spread over (one Lease each, agents
        /// assigned by a stable hash of namespace and name): each replica reconciles, judges and
        /// contains only the agents of the shards it holds. Every replica must run with the same count.
        #[arg(long, env = "WARDEN_SHARDS", default_value_t = 1, requires = "leader_elect", value_parser = clap::value_parser!(u16).range(1..=256))]
        shards: u16,
        /// Address of the peer endpoint (TLS): with leader election, a replica sends the agents'
        /// calls its audit sink and MCP gateway received to the holder of each agent's shard.
        #[arg(long, env = "WARDEN_PEER_ADDR", requires = "leader_elect")]
        peer_addr: Option<SocketAddr>,
        /// How the other replicas reach this one's peer endpoint (default: https://<--peer-addr>,
        /// required when that address is 0.0.0.0 or ::, e.g. https://$(POD_IP):8444).
        #[arg(long, env = "WARDEN_PEER_URL", requires = "peer_addr")]
        peer_url: Option<String>,
        /// Address of the MCP gateway (TLS with the webhook's serving certificate; endpoint /mcp):
        /// agents list their catalog actions as tools and call them with their own token.
        #[arg(long, env = "WARDEN_MCP_ADDR")]
        mcp_addr: Option<SocketAddr>,
        /// The user the operator authenticates as: the only one whose ActionRequests may arrive
        /// already stamped (by its MCP gateway). Default: the subject of the operator's
        /// ServiceAccount token (in-cluster, or a kubeconfig with a token).
        #[arg(long, env = "WARDEN_OPERATOR_USER")]
        operator_user: Option<String>,
        /// Append every decision as a JSON line to this file (always also logged under target `decision`).
        #[arg(long, env = "WARDEN_DECISION_LOG")]
        decision_log: Option<PathBuf>,
        /// Namespaces whose ServiceAccounts your audit policy leaves out (comma-separated), besides
        /// --namespace and kube-system, which are always: SocAgents there are refused (the audit
        /// sink could not see what they do).
        #[arg(long, env = "WARDEN_UNAUDITED_NAMESPACES", value_delimiter = ',')]
        unaudited_namespaces: Vec<String>,
    },
    /// GET a URL once and check the answer (the chart's `helm test` pod; the image has no curl).
    /// Exits non-zero, saying why, unless the status (and text) are the expected ones.
    Probe {
        /// http:// or https:// URL.
        url: String,
        /// PEM file of the CA the server's certificate must chain to (required for https://).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// The name the server's certificate must hold (default: the URL's host), e.g. the
        /// Service's DNS name when the URL holds its cluster IP.
        #[arg(long)]
        server_name: Option<String>,
        /// The expected HTTP status.
        #[arg(long, default_value_t = 200)]
        expect_status: u16,
        /// A text the body must contain.
        #[arg(long)]
        expect_body: Option<String>,
        /// How long to wait for the whole answer.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Write the CRD manifests (one file per CRD) into directories (the repository's and the
    /// chart's by default), or print them with `-`.
    Crdgen {
        #[arg(default_values = ["crds", "charts/soc-warden/crds"])]
        out: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The user name of the operator's own token (the `sub` of a ServiceAccount token), if it has one.
/// Who the API server says the operator is (SelfSubjectReview, authentication.k8s.io/v1), whatever
/// its credentials: a ServiceAccount token, a certificate, an exec plugin.
async fn own_user(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = kube::Api::<SelfSubjectReview>::all(client.clone())
        .create(&kube::api::PostParams::default(), &SelfSubjectReview::default())
        .await;
    match review {
        Ok(r) => r.status.and_then(|s| s.user_info).and_then(|u| u.username),
        Err(e) => {
            tracing::warn!(error = %e, "SelfSubjectReview failed: the operator does not know its own user name");
            None
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    socwarden_api::duration::parse(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 5m)"))
}

/// `namespace/name:port`
fn parse_service(s: &str) -> anyhow::Result<Endpoint> {
    let bad = || anyhow::anyhow!("--webhook-service {s:?}: expected namespace/name:port");
    let (ns, rest) = s.split_once('/').ok_or_else(bad)?;
    let (name, port) = rest.split_once(':').ok_or_else(bad)?;
    Ok(Endpoint::Service { namespace: ns.into(), name: name.into(), port: port.parse().map_err(|_| bad())? })
}

/// glibc gives each thread that contends for the heap an arena of its own (up to eight per core)
/// and seldom returns their memory: with caches of many small objects that is a fifth of the
/// operator's memory (`bench-requests`, 10,000 requests: 107 MiB with the default, 84 MiB with two
/// arenas). Two are plenty for a process that mostly waits on the network. glibc reads the limit
/// only when a process starts, so the operator sets it and starts itself again, once (same pid).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("MALLOC_ARENA_MAX", "2").exec();
    eprintln!("could not restart with MALLOC_ARENA_MAX=2 ({err}); running with glibc's default arenas");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out } => {
            for out in out {
                for (file, yaml) in crdgen::manifests() {
                    if out.as_os_str() == "-" {
                        print!("---\n{yaml}");
                    } else {
                        std::fs::create_dir_all(&out)?;
                        std::fs::write(out.join(file), yaml).with_context(|| format!("writing {file}"))?;
                    }
                }
            }
            Ok(())
        }
        Command::Probe { url, ca, server_name, expect_status, expect_body, timeout } => {
            let ca = match &ca {
                Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?),
                None => None,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let answer = rt
                .block_on(probe::get(&url, ca.as_deref(), server_name.as_deref(), timeout))
                .with_context(|| format!("probing {url}"))?;
            let expect = probe::Expect { status: expect_status, body_contains: expect_body };
            probe::judge(&answer, &expect).map_err(|why| anyhow::anyhow!("{url} {why}"))?;
            println!("{url}: {} as expected", answer.status);
            Ok(())
        }
        Command::Run {
            metrics_addr,
            delegable,
            concurrency,
            per_agent_metrics,
            log_format,
            namespace,
            webhook_addr,
            webhook_url,
            webhook_service,
            webhook_cert_dir,
            webhook_client_ca,
            webhook_repair_interval,
            decision_log,
            audit_addr,
            audit_token_file,
            leader_elect,
            identity,
            lease_duration,
            shards,
            mcp_addr,
            peer_addr,
            peer_url,
            operator_user,
            unaudited_namespaces,
        } => {
            limit_malloc_arenas();
            init_logs(log_format);
            let yaml = match &delegable {
                Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                None => rbac::DEFAULT_DELEGABLE.to_string(),
            };
            let delegable = rbac::parse_delegable(&yaml).map_err(anyhow::Error::msg)?;
            let endpoint = match (webhook_url, webhook_service) {
                (Some(u), _) => Some(Endpoint::Url(u)),
                (None, Some(s)) => Some(parse_service(&s)?),
                (None, None) => None,
            };
            let client_ca = match &webhook_client_ca {
                Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?),
                None => None,
            };
            // The same namespaces for the webhook and the reconciler.
            let unobserved =
                std::sync::Arc::new(socwarden_core::agent::validate::unobserved(&namespace, &unaudited_namespaces));
            let mut webhook = endpoint.map(|endpoint| run::WebhookOptions {
                unobserved: unobserved.clone(),
                addr: webhook_addr,
                endpoint,
                cert_dir: webhook_cert_dir,
                client_ca,
                repair_interval: webhook_repair_interval,
                operator_user: None,
            });
            let audit = match (audit_addr, audit_token_file) {
                (Some(addr), Some(f)) => {
                    let token = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
                    let token = token.trim().to_string();
                    anyhow::ensure!(
                        token.len() >= 16,
                        "the audit token in {} is shorter than 16 characters",
                        f.display()
                    );
                    Some((addr, token))
                }
                (Some(_), None) => anyhow::bail!(
                    "--audit-addr needs --audit-token-file: the sink only accepts an authenticated API server"
                ),
                _ => None,
            };
            let peer_url = match (peer_addr, peer_url) {
                (Some(_), Some(url)) => Some(url),
                (Some(addr), None) if !addr.ip().is_unspecified() => Some(format!("https://{addr}")),
                (Some(addr), None) => anyhow::bail!(
                    "--peer-addr {addr} listens on every address: say how the other replicas reach it with --peer-url (e.g. https://$(POD_IP):{})",
                    addr.port()
                ),
                (None, _) => None,
            };
            if shards > 1 && peer_addr.is_none() {
                anyhow::bail!(
                    "--shards {shards} without --peer-addr: the calls a replica receives of agents it does not hold would never reach their judge; give every replica a peer endpoint (--peer-addr, --peer-url)"
                );
            }
            if leader_elect && peer_addr.is_none() {
                tracing::warn!(
                    "--leader-elect without --peer-addr: what a replica that does not lead receives (audit batches, MCP refusals) is judged by it alone and never acted on"
                );
            }
            let peer = peer_addr.zip(peer_url.clone());
            let leader = leader_elect.then(|| soc_warden::leader::Config {
                namespace: namespace.clone(),
                identity: identity.unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                    format!("{}-{}", host.trim(), std::process::id())
                }),
                duration: lease_duration,
                shards: usize::from(shards),
                peer_url,
            });
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(async {
                let config = kube::Config::infer().await.context("connecting to Kubernetes (is KUBECONFIG set?)")?;
                let client = kube::Client::try_from(config).context("connecting to Kubernetes")?;
                let operator_user = match operator_user {
                    Some(u) => Some(u),
                    None => own_user(&client).await,
                };
                if mcp_addr.is_some() && operator_user.is_none() {
                    anyhow::bail!(
                        "--mcp-addr needs to know the operator's own user name (its requests carry the agents' stamps): \
                         the API server did not answer a SelfSubjectReview; set --operator-user"
                    );
                }
                if let Some(w) = webhook.as_mut() {
                    w.operator_user = operator_user;
                }
                run::run(
                    client,
                    run::Options {
                        metrics_addr,
                        delegable,
                        concurrency,
                        per_agent_metrics,
                        namespace,
                        webhook,
                        decision_log,
                        audit,
                        leader,
                        mcp_addr,
                        peer,
                        unobserved,
                    },
                )
                .await
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flags_reference_is_generated_from_the_command_line() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let run = cli.find_subcommand("run").expect("a run command");
        let flags = socwarden_core::reference::flags(run);
        socwarden_core::reference::check(env!("CARGO_MANIFEST_DIR"), "docs/reference/warden-run.md", "flags", &flags);
    }
}
