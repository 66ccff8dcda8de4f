//! Every command the README shows is run here (or is the test command itself), so the README
//! cannot drift from what works.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, ExecutionState, SocAgent, Tier};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

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
    let out = Command::new(kubectl()).args(&args).current_dir(repo()).env("KUBECONFIG", admin_kubeconfig()).output()?;
    if !out.status.success() {
        bail!("`{line}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

const ISOLATE_REQUEST: &str =
    "kubectl --as system:serviceaccount:soc-agents:warden-triage-bot create -f examples/workflows/isolate-request.yaml";
const APPROVE_A: &str = "kubectl --as lead-a --as-group soc-leads create -f examples/workflows/isolate-approval.yaml";
const APPROVE_B: &str = "kubectl --as lead-b --as-group soc-leads create -f examples/workflows/isolate-approval.yaml";
const AGENT_TOKEN: &str = "kubectl -n soc-agents get secret warden-triage-bot-token -o jsonpath='{.data.token}' | base64 -d > /tmp/triage-bot.token";
const GATEWAY_CA: &str = "kubectl -n soc-warden-system get secret socwarden-webhook-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > /tmp/soc-warden-ca.crt";
const MCP_LIST: &str = "$(e2e/cluster mcp-client) examples/mcp/agent.py --url https://127.0.0.1:9444/mcp --token-file /tmp/triage-bot.token --ca-file /tmp/soc-warden-ca.crt list";
const MCP_CALL: &str = r#"$(e2e/cluster mcp-client) examples/mcp/agent.py --url https://127.0.0.1:9444/mcp --token-file /tmp/triage-bot.token --ca-file /tmp/soc-warden-ca.crt call enrich-alert '{"parameters":{"alertId":"SOC-4711"},"target":{"kind":"Pod","name":"web-frontend-7d4b9","namespace":"web"}}'"#;

/// Runs a README line that needs a shell (pipes, redirections, `$(…)`) from the repository, with
/// the test cluster's kubectl first on the PATH; returns its output.
fn run_sh(line: &str) -> Result<String> {
    let kubectl_dir = std::path::Path::new(&kubectl()).parent().map(|p| p.display().to_string()).unwrap_or_default();
    let path = format!("{kubectl_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", line])
        .current_dir(repo())
        .env("KUBECONFIG", admin_kubeconfig())
        .env("PATH", path)
        .output()?;
    if !out.status.success() {
        bail!("`{line}` failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

const APPROVE_PROMOTION: &str =
    "kubectl --as lead-a --as-group soc-leads create -f examples/workflows/promote-intel-bot-approval.yaml";

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
        ISOLATE_REQUEST,
        APPROVE_A,
        APPROVE_B,
        "kubectl get actionrequest isolate-web-frontend -n soc-agents",
        "kubectl get networkpolicy soc-isolate-web-frontend -n web",
        "kubectl apply -f examples/workflows/promote-intel-bot.yaml",
        APPROVE_PROMOTION,
        "kubectl describe socagent intel-bot -n soc-agents",
        AGENT_TOKEN,
        GATEWAY_CA,
        MCP_LIST,
        MCP_CALL,
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
        // The README's gateway lines use e2e/up's default MCP address; the admin is the operator here.
        .env("WARDEN_OPERATOR_USER", "admin")
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

    // The agent at the MCP gateway, with the token SOC Warden issued it.
    run_sh(AGENT_TOKEN)?;
    run_sh(GATEWAY_CA)?;
    let tools = run_sh(MCP_LIST)?;
    for needle in ["enrich-alert", "isolate-pod", "Needs 2 approvals", "warden_status"] {
        assert!(tools.contains(needle), "{needle} missing from:\n{tools}");
    }
    let call = run_sh(MCP_CALL)?;
    let call: serde_json::Value = serde_json::from_str(&call)?;
    assert_eq!(call["isError"], false, "{call}");
    assert_eq!(call["structuredContent"]["decision"], "AutoApproved", "{call}");

    // The walk through: the agent files an isolation, two leads approve, the operator executes it.
    let requests: Api<ActionRequest> = Api::namespaced(admin.clone(), "soc-agents");
    run_kubectl(ISOLATE_REQUEST)?;
    let decided = |want: Decision| {
        let requests = requests.clone();
        move || {
            let requests = requests.clone();
            async move {
                let r = requests.get("isolate-web-frontend").await?;
                Ok(r.status.filter(|s| s.decision == Some(want)))
            }
        }
    };
    let pending = wait_for("the isolation waits for approval", T, decided(Decision::Pending)).await?;
    assert_eq!(pending.required_approvals, Some(2), "{pending:?}");
    run_kubectl(APPROVE_A)?;
    run_kubectl(APPROVE_B)?;
    let approved = wait_for("the isolation is approved and executed", T, || async {
        let r = requests.get("isolate-web-frontend").await?;
        Ok(r.status.filter(|s| s.execution.as_ref().is_some_and(|e| e.state == Some(ExecutionState::Succeeded))))
    })
    .await?;
    assert_eq!(approved.decision, Some(Decision::Approved));
    let approvers: BTreeSet<String> = approved.approvals.iter().map(|a| a.approver.clone()).collect();
    assert_eq!(approvers, BTreeSet::from(["lead-a".to_string(), "lead-b".to_string()]));
    let listing = run_kubectl("kubectl get actionrequest isolate-web-frontend -n soc-agents")?;
    assert!(listing.contains("Approved") && listing.contains("Succeeded"), "{listing}");
    run_kubectl("kubectl get networkpolicy soc-isolate-web-frontend -n web")?;

    // The promotion: committed, held at observe with what is missing, one approval recorded.
    run_kubectl("kubectl apply -f examples/workflows/promote-intel-bot.yaml")?;
    let waiting = |needle: &'static str, present: bool| {
        let admin = admin.clone();
        async move {
            wait_agent(&admin, "soc-agents", "intel-bot", needle, T, move |a: &SocAgent| {
                let msg = condition(a, "PromotionPending").filter(|c| c.status == "True").map(|c| c.message);
                msg.is_some_and(|m| m.contains(needle) == present && m.contains("dwell"))
                    && a.status.as_ref().and_then(|s| s.effective_tier) == Some(Tier::Observe)
            })
            .await
        }
    };
    waiting("needs 1 approval from soc-leads, has 0", true).await?;
    run_kubectl(APPROVE_PROMOTION)?;
    waiting("needs 1 approval from", false).await?;
    let described = run_kubectl("kubectl describe socagent intel-bot -n soc-agents")?;
    assert!(described.contains("PromotionPending") && described.contains("observe → assist"), "{described}");
    requests.delete("isolate-web-frontend", &DeleteParams::default()).await?;
    wait_for("the isolation rolled back", T, || async {
        let np = Api::<NetworkPolicy>::namespaced(admin.clone(), "web").get_opt("soc-isolate-web-frontend").await?;
        Ok(np.is_none().then_some(()))
    })
    .await?;

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
