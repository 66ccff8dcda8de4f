//! Every command the README shows is run here (or is the test command itself), so the README
//! cannot drift from what works.

use anyhow::{Context as _, Result, bail};
use kube::api::{Api, DeleteParams};
use soc_warden::api::SocAgent;
use soc_warden_e2e::*;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shell commands of the README's ```sh blocks, without comments.
fn readme_commands() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("README.md"))?;
    let mut out = BTreeSet::new();
    let mut in_sh = false;
    for line in text.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() => {
                out.insert(l.split('#').next().unwrap_or("").trim().to_string());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Runs a README `kubectl …` line against the test cluster; returns its output.
fn run_kubectl(line: &str) -> Result<String> {
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let out = Command::new(kubectl()).args(&args).env("KUBECONFIG", admin_kubeconfig()).output()?;
    if !out.status.success() {
        bail!("`{line}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn every_readme_command_works() -> Result<()> {
    let commands = readme_commands()?;
    let expected: BTreeSet<String> = [
        "e2e/up",
        "e2e/test",
        "kubectl get socagents -A",
        "kubectl describe socagent triage-bot -n soc-agents",
        "kubectl get socactions",
        "kubectl explain socagent.spec.credentials",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        commands, expected,
        "the README shows a command this test does not run (or no longer shows one it runs)"
    );
    // `e2e/test` is the command that runs this very test (CI runs it through .ci/run).

    let admin = admin().await?;
    install_crds(&admin).await?;
    // `e2e/up` against the running cluster (KUBECONFIG set, so it starts nothing). The test build
    // already built the operator; WARDEN_BIN makes the script use it instead of building again.
    let port = free_port();
    let log = std::fs::File::create(repo().join("target/e2e-logs/e2e-up.log"))?;
    let up = Up(Command::new(repo().join("e2e/up"))
        .env("KUBECONFIG", admin_kubeconfig())
        .env("WARDEN_BIN", warden_bin())
        .env("WARDEN_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("WARDEN_WEBHOOK_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("WARDEN_DECISION_LOG", decision_log())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting e2e/up")?);

    for name in ["triage-bot", "containment-bot", "intel-bot"] {
        wait_agent(&admin, "soc-agents", name, "Ready", Duration::from_secs(120), ready).await?;
    }
    let listing = run_kubectl("kubectl get socagents -A")?;
    for needle in ["triage-bot", "containment-bot", "intel-bot", "supervised", "Active"] {
        assert!(listing.contains(needle), "{needle} missing from:\n{listing}");
    }
    let described = run_kubectl("kubectl describe socagent triage-bot -n soc-agents")?;
    assert!(described.contains("Ready") && described.contains("CredentialsIssued"), "{described}");
    assert!(run_kubectl("kubectl get socactions")?.contains("isolate-pod"));
    assert!(run_kubectl("kubectl explain socagent.spec.credentials")?.contains("ttl"));
    let (code, _) = http_get(&format!("http://127.0.0.1:{port}/readyz")).await?;
    assert_eq!(code, 200, "the operator e2e/up started serves /readyz");

    // Leave the shared cluster as the other tests expect it (the operator releases the agents).
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), "soc-agents");
    for name in ["triage-bot", "containment-bot", "intel-bot"] {
        agents.delete(name, &DeleteParams::default()).await?;
    }
    wait_for("example agents deleted", Duration::from_secs(60), || async {
        Ok(agents.list(&Default::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    drop(up);
    let _ = Command::new(kubectl())
        .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
        .arg(repo().join("examples/00-namespaces.yaml"))
        .arg("-f")
        .arg(repo().join("examples/20-actions.yaml"))
        .env("KUBECONFIG", admin_kubeconfig())
        .status();
    Ok(())
}
