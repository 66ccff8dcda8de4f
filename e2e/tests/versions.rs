//! What must hold on every supported Kubernetes, run on v1.35 with the suite and again, by
//! `e2e/test`, on the newest API server (v1.37, `SOC_WARDEN_K8S=v1.37 e2e/cluster up`): the API
//! server is the one the version says, and it accepts the CRDs and every example as they are
//! shipped (`kubectl apply --dry-run=server`, or `create` for objects named by `generateName`, so its own validation, CEL rules included, judges
//! them, and nothing is created).

use anyhow::{Result, ensure};
use soc_warden_e2e::*;
use std::path::Path;

/// The examples a user applies (the workloads and agents need their namespaces, which a dry run
/// would not create: those are applied for real first).
const EXAMPLES: &[&str] = &[
    "examples/05-people.yaml",
    "examples/10-policy.yaml",
    "examples/20-actions.yaml",
    "examples/30-workloads.yaml",
    "examples/40-agents.yaml",
    "examples/workflows/isolate-request.yaml",
    "examples/workflows/isolate-approval.yaml",
    "examples/workflows/promote-intel-bot.yaml",
    "examples/workflows/promote-intel-bot-approval.yaml",
];

fn kubectl_admin(args: &[&str]) -> Result<String> {
    let (ok, out) = kubectl_with(&admin_kubeconfig(), args, "")?;
    ensure!(ok, "kubectl {}: {out}", args.join(" "));
    Ok(out)
}

#[tokio::test]
async fn the_crds_and_every_example_pass_the_api_servers_own_validation() -> Result<()> {
    let admin = admin().await?;
    let server: serde_json::Value = serde_json::from_str(&kubectl_admin(&["get", "--raw", "/version"])?)?;
    let minor: u32 = server["minor"].as_str().unwrap_or_default().trim_end_matches('+').parse()?;
    ensure!(server["major"] == "1" && minor >= 33, "a supported API server (1.33+), got {server}");

    let crds = repo().join("crds");
    let out = kubectl_admin(&["apply", "--dry-run=server", "-f", crds.to_str().unwrap_or_default()])?;
    ensure!(out.matches("(server dry run)").count() == std::fs::read_dir(&crds)?.count(), "{out}");
    install_crds(&admin).await?;
    // No operator runs here: webhooks an earlier test registered would refuse every write.
    forget_webhook(&admin).await?;
    // The examples' namespaces, for real; one that an earlier test is still deleting is waited for.
    let namespaces = repo().join("examples/00-namespaces.yaml");
    wait_for("the examples' namespaces not terminating", std::time::Duration::from_secs(120), || async {
        let phases = kubectl_with(
            &admin_kubeconfig(),
            &["get", "-f", namespaces.to_str().unwrap_or_default(), "--ignore-not-found", "-o", "jsonpath={..phase}"],
            "",
        )?
        .1;
        Ok((!phases.contains("Terminating")).then_some(()))
    })
    .await?;
    kubectl_admin(&["apply", "-f", namespaces.to_str().unwrap_or_default()])?;
    for example in EXAMPLES {
        let path = repo().join(example);
        ensure!(Path::new(&path).exists(), "{example} is missing");
        // Objects named by generateName (the approvals) are created, as the README does.
        let verb = if std::fs::read_to_string(&path)?.contains("generateName") { "create" } else { "apply" };
        let out = kubectl_admin(&[verb, "--dry-run=server", "-f", path.to_str().unwrap_or_default()])?;
        ensure!(out.contains("(server dry run)"), "{example}: {out}");
    }
    Ok(())
}
