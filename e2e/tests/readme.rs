//! Every command the README shows is run here (or is the test command itself), so the README
//! cannot drift from what works. The walk through itself is `soc_warden_e2e::walkthrough`.

use anyhow::{Context as _, Result};
use soc_warden_e2e::walkthrough::*;
use soc_warden_e2e::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

#[tokio::test]
async fn every_readme_command_works() -> Result<()> {
    let commands = readme_commands()?;
    let expected: BTreeSet<String> = [
        "e2e/up",
        "e2e/up --node",
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
        // "Uninstall and clean up": node.rs runs these, after `helm uninstall`'s own test.
        "kubectl delete socagents,actionrequests --all -A --wait",
        "kubectl delete -f examples/ --ignore-not-found --wait",
        "helm uninstall soc-warden -n soc-warden-system --wait",
        "kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration socwarden.io",
        "kubectl delete -f charts/soc-warden/crds/",
        "kubectl delete namespace soc-warden-system",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        commands, expected,
        "the README shows a command this test does not run (or no longer shows one it runs)"
    );
    // `e2e/test` is the command that runs this very test (CI runs it through .ci/run).
    // `e2e/up --node` is run, followed by this same walk through, by node.rs on the node; so are
    // the cleanup commands (on_the_node_helm_uninstall_and_the_readme_cleanup_leave_nothing_of_soc_warden).

    let admin = admin().await?;
    install_crds(&admin).await?;
    // The tests before this one ran the operator as the chart's ServiceAccount under the chart's
    // admission policy, which lets only that account write statuses. `e2e/up` runs the operator
    // as the admin, as on the fresh cluster the README starts from, where there is no such policy
    // (a test after this one applies it again).
    let removed = Command::new(kubectl())
        .args(["delete", "--ignore-not-found", "validatingadmissionpolicybinding,validatingadmissionpolicy"])
        .arg(format!("{}-operator-writes", soc_warden_e2e::helm::RELEASE))
        .env("KUBECONFIG", admin_kubeconfig())
        .status()?;
    anyhow::ensure!(removed.success(), "removing the chart's admission policy left by earlier tests failed");
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

    walk_through(&admin).await?;
    let (code, _) = http_get(&format!("http://127.0.0.1:{port}/readyz")).await?;
    assert_eq!(code, 200, "the operator e2e/up started serves /readyz");
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
