//! The walk through the examples (docs/getting-started/walkthrough.md), run as a user would type it: by `readme.rs` against
//! the operator `e2e/up` runs as a local process, and by `node.rs` against the chart's pods that
//! `e2e/up --node` installs. Every command the documentation shows is one of these or is checked there.

use crate::*;
use anyhow::{Result, bail};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams};
use socwarden_api::{ActionRequest, Decision, ExecutionState, SocAgent, Tier};
use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The documentation a user reads: the README, ARCHITECTURE.md, CONTRIBUTING.md and `docs/`.
pub fn doc_files() -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = ["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md"].map(|f| repo().join(f)).to_vec();
    let mut dirs = vec![repo().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The shell commands of the documentation's ```sh blocks (every file of `doc_files`), without
/// comments.
pub fn readme_commands() -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for file in doc_files()? {
        let text = std::fs::read_to_string(&file)?;
        let mut in_sh = false;
        for line in text.lines() {
            match line.trim() {
                "```sh" => in_sh = true,
                "```" => in_sh = false,
                l if in_sh => {
                    // A comment line is no command.
                    let command = l.split('#').next().unwrap_or("").trim();
                    if !command.is_empty() {
                        out.insert(command.to_string());
                    }
                }
                _ => {}
            }
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

pub const ISOLATE_REQUEST: &str =
    "kubectl --as system:serviceaccount:soc-agents:warden-triage-bot create -f examples/workflows/isolate-request.yaml";
pub const APPROVE_A: &str =
    "kubectl --as lead-a --as-group soc-leads create -f examples/workflows/isolate-approval.yaml";
pub const APPROVE_B: &str =
    "kubectl --as lead-b --as-group soc-leads create -f examples/workflows/isolate-approval.yaml";
pub const AGENT_TOKEN: &str = "kubectl -n soc-agents get secret warden-triage-bot-token -o jsonpath='{.data.token}' | base64 -d > /tmp/triage-bot.token";
pub const GATEWAY_CA: &str = "kubectl -n soc-warden-system get secret socwarden-webhook-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > /tmp/soc-warden-ca.crt";
pub const MCP_LIST: &str = "$(e2e/cluster mcp-client) examples/mcp/agent.py --url https://127.0.0.1:9444/mcp --token-file /tmp/triage-bot.token --ca-file /tmp/soc-warden-ca.crt list";
pub const MCP_CALL: &str = r#"$(e2e/cluster mcp-client) examples/mcp/agent.py --url https://127.0.0.1:9444/mcp --token-file /tmp/triage-bot.token --ca-file /tmp/soc-warden-ca.crt call enrich-alert '{"parameters":{"alertId":"SOC-4711"},"target":{"kind":"Pod","name":"web-frontend-7d4b9","namespace":"web"}}'"#;

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

pub const APPROVE_PROMOTION: &str =
    "kubectl --as lead-a --as-group soc-leads create -f examples/workflows/promote-intel-bot-approval.yaml";

/// `e2e/up` (or `e2e/up --node`) as a child of the test, stopped as Ctrl-C would when dropped.
pub struct Up(pub Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// From the examples' agents being Ready to their deletion: listings, the agent at the MCP
/// gateway (https://127.0.0.1:9444/mcp), the isolation approved by two leads and executed, the
/// promotion held with what it needs, the rollback.
pub async fn walk_through(admin: &Client) -> Result<()> {
    for name in ["triage-bot", "containment-bot", "intel-bot"] {
        wait_agent(admin, "soc-agents", name, "Ready", Duration::from_secs(120), ready).await?;
    }
    let listing = run_kubectl("kubectl get socagents -A")?;
    for needle in ["triage-bot", "containment-bot", "intel-bot", "supervised", "Active"] {
        assert!(listing.contains(needle), "{needle} missing from:\n{listing}");
    }
    let described = run_kubectl("kubectl describe socagent triage-bot -n soc-agents")?;
    assert!(described.contains("Ready") && described.contains("CredentialsIssued"), "{described}");
    assert!(run_kubectl("kubectl get socactions")?.contains("isolate-pod"));
    assert!(run_kubectl("kubectl explain socagent.spec.credentials")?.contains("ttl"));

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
    Ok(())
}

/// The content hash of the walk through's isolation as a lead reviews it: the request of
/// `examples/workflows/isolate-request.yaml` with the `isolate-pod` SocAction of
/// `examples/20-actions.yaml` (what `kubectl warden approve isolate-web-frontend -n soc-agents`
/// prints, and what `examples/workflows/isolate-approval.yaml` approves).
pub fn example_content() -> Result<String> {
    use serde::Deserialize;
    let request: ActionRequest =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("examples/workflows/isolate-request.yaml"))?)?;
    let actions = std::fs::read_to_string(repo().join("examples/20-actions.yaml"))?;
    for doc in serde_yaml::Deserializer::from_str(&actions) {
        let v = serde_yaml::Value::deserialize(doc)?;
        if v["kind"].as_str() == Some("SocAction") && v["metadata"]["name"].as_str() == Some(&request.spec.action) {
            let action: socwarden_api::SocAction = serde_yaml::from_value(v)?;
            return Ok(socwarden_core::admission::signature::request_content(&request.spec, &action.spec));
        }
    }
    bail!("examples/20-actions.yaml has no SocAction {}", request.spec.action)
}

#[cfg(test)]
mod tests {
    /// The walk through's approval approves the content the example request and action have: an
    /// edit of either changes it, and the approval must be reviewed (and its `seen` updated) again.
    #[test]
    fn the_example_approval_names_the_content_of_the_example_request() {
        let content = super::example_content().unwrap();
        let approval: socwarden_api::Approval = serde_yaml::from_str(
            &std::fs::read_to_string(crate::repo().join("examples/workflows/isolate-approval.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            approval.spec.seen.as_deref(),
            Some(content.as_str()),
            "set spec.seen of examples/workflows/isolate-approval.yaml to {content} once you reviewed what it approves"
        );
    }
}
