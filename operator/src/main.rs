use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use soc_warden::{crdgen, rbac, run};
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
        /// Log format.
        #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Write the CRD manifests (one file per CRD) into a directory, or print them with `-`.
    Crdgen {
        #[arg(default_value = "crds")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out } => {
            for (file, yaml) in crdgen::manifests() {
                if out.as_os_str() == "-" {
                    print!("---\n{yaml}");
                } else {
                    std::fs::create_dir_all(&out)?;
                    std::fs::write(out.join(file), yaml).with_context(|| format!("writing {file}"))?;
                }
            }
            Ok(())
        }
        Command::Run { metrics_addr, delegable, concurrency, log_format } => {
            init_logs(log_format);
            let yaml = match &delegable {
                Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                None => rbac::DEFAULT_DELEGABLE.to_string(),
            };
            let delegable = rbac::parse_delegable(&yaml).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(async {
                let client =
                    kube::Client::try_default().await.context("connecting to Kubernetes (is KUBECONFIG set?)")?;
                run::run(client, run::Options { metrics_addr, delegable, concurrency }).await
            })
        }
    }
}
