//! Hardening III, attacks 4 and 5 (issue 28), tried as the adversary: no agent where the audit
//! sink cannot see it, and nobody erases a drift pause by ending the SocAgent's life — not a lead
//! who may only pause (`socwarden-responder`) patching an owner reference onto it, not an admin
//! deleting it and applying it again from Git. Each test failed on the code before the fix.

use anyhow::Result;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{Approval, DriftReport, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

fn paused_for_drift(a: &SocAgent) -> bool {
    condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
}

fn invalid_for(a: &SocAgent, reason: &str) -> bool {
    condition(a, "InvalidSpec").is_some_and(|c| c.status == "True" && c.reason == reason)
}

/// A GitOps committer (`socwarden-editor`, on every namespace) declares an agent in the operator's
/// own namespace and in kube-system, whose ServiceAccounts the recommended audit policy leaves
/// out: refused at admission, saying why. With the webhook out of the way (a cluster admin), the
/// reconciler fails it closed: InvalidSpec `UnobservedNamespace`, no token. Before: admitted, and
/// the agent acted unaudited (it deleted a pod with no request and stayed Active).
#[tokio::test]
async fn no_agent_where_the_audit_sink_cannot_see_it() -> Result<()> {
    let scene = Scene::new().await?;
    let act = unique("unseen-read");
    apply_yaml(
        &scene.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {act}}}\nspec:\n  risk: low\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [list, delete]}}]\n"
        ),
    )
    .await?;
    // The operator would put its webhook back within the repair interval; keep it away below.
    let _op = Operator::start_with(&["--webhook-repair-interval", "1h"]).await?;
    let gitops = as_user("gitops").await?;
    let name = unique("unseen");
    for ns in [OPERATOR_NAMESPACE, "kube-system"] {
        let a = agent(&name, ns, Tier::Autonomous, &[&act], &[scene.scope()]);
        let msg = refusal(Api::<SocAgent>::namespaced(gitops.clone(), ns).create(&PostParams::default(), &a).await);
        assert!(msg.contains(&format!("namespace {ns} is not audited")), "{ns}: {msg}");
        assert!(msg.contains("declare the SocAgent in another namespace"), "{msg}");
    }
    // Anywhere else is fine.
    let fine = agent(&name, scene.home(), Tier::Supervised, &[&act], &[scene.scope()]);
    Api::<SocAgent>::namespaced(gitops.clone(), scene.home()).create(&PostParams::default(), &fine).await?;
    wait_agent(&scene.admin, scene.home(), &name, "Ready", T, ready).await?;

    // A cluster admin removes the webhook: the reconciler still refuses the agent.
    Api::<ValidatingWebhookConfiguration>::all(scene.admin.clone())
        .delete("socwarden.io", &DeleteParams::default())
        .await?;
    let agents = Api::<SocAgent>::namespaced(scene.admin.clone(), "kube-system");
    let a = agent(&name, "kube-system", Tier::Autonomous, &[&act], &[scene.scope()]);
    wait_for("the webhook out of the way", T, || async {
        match agents.create(&PostParams::default(), &a).await {
            Ok(_) => Ok(Some(())),
            Err(kube::Error::Api(e)) if e.message.contains("failed calling webhook") || e.code == 500 => Ok(None),
            Err(kube::Error::Api(e)) if e.message.contains("not audited") => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let refused =
        wait_agent(&scene.admin, "kube-system", &name, "InvalidSpec", T, |a| invalid_for(a, "UnobservedNamespace"))
            .await;
    let held = agent_token(&scene.admin, "kube-system", &name).await;
    let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(scene.admin.clone(), "kube-system");
    let sa_written = sa.get_opt(&socwarden_core::agent::credentials::service_account_name(&name)).await;
    // Clean up before asserting: an agent left in kube-system would outlive the test.
    let _ = agents.delete(&name, &DeleteParams::default()).await;
    let _ = wait_for("the agent in kube-system gone", T, || async {
        Ok(agents.get_opt(&name).await?.is_none().then_some(()))
    })
    .await;
    let refused = refused?;
    let msg = condition(&refused, "InvalidSpec").unwrap().message;
    assert!(msg.contains("namespace kube-system is not audited"), "{msg}");
    assert_eq!(held?, None, "no token for an agent the audit sink cannot see");
    assert!(sa_written?.is_none(), "not even a ServiceAccount where the agent stands");
    Ok(())
}

/// An agent with an autonomous pod-delete grant, whose Deployment runs it; its token client.
async fn deleter(scene: &Scene, name: &str, act: &str) -> Result<Client> {
    let a: SocAgent = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
        "metadata": {"name": name, "namespace": scene.home()},
        "spec": {"tier": "supervised", "actions": [act], "scope": {"namespaces": [scene.scope()]},
                 "approvers": {"groups": ["soc-leads"], "minApprovals": 1},
                 "baseline": {"onDrift": "Pause"}}
    }))?;
    apply(&Api::<SocAgent>::namespaced(scene.admin.clone(), scene.home()), &a).await?;
    wait_agent(&scene.admin, scene.home(), name, "Ready", T, ready).await?;
    with_token(&agent_token(&scene.admin, scene.home(), name).await?.expect("a token")).await
}

/// The agent deletes a pod with no request: contained at once (unrecorded write), paused for drift.
async fn drift_paused(scene: &Scene, name: &str, bot: &Client) -> Result<String> {
    let pods = Api::<Pod>::namespaced(scene.admin.clone(), scene.scope());
    let victim = unique("victim");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": victim},
        "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}
    }))?;
    pods.create(&PostParams::default(), &p).await?;
    Api::<Pod>::namespaced(bot.clone(), scene.scope()).delete(&victim, &DeleteParams::default()).await?;
    let a = wait_agent(&scene.admin, scene.home(), name, "paused for drift", T, paused_for_drift).await?;
    Ok(a.status.and_then(|s| s.pause).map(|p| p.id).expect("a pause id"))
}

/// Attack 5: a lead who may not delete SocAgents patches an owner reference onto a drift-paused
/// one (the garbage collector would delete it: its owner does not exist) — refused, and on its
/// DriftReport too. An admin who deletes the agent and applies it again from Git finds it paused
/// for drift under the same id, with no token, until an approver resumes it. Before: the owner
/// reference was admitted, the agent garbage-collected with its DriftReport, and the agent applied
/// again came back Active — a drift pause lifted with no approver.
#[tokio::test]
async fn a_drift_pause_outlives_the_agent() -> Result<()> {
    let scene = Scene::audited().await?;
    let (home, scope) = (scene.home().to_string(), scene.scope().to_string());
    let act = unique("delete-pod");
    apply_yaml(
        &scene.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {act}}}\nspec:\n  risk: low\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [get, list, delete]}}]\n"
        ),
    )
    .await?;
    let _op = Operator::start().await?;
    let bot = deleter(&scene, "bot", &act).await?;
    let pause_id = drift_paused(&scene, "bot", &bot).await?;

    // lead-a (soc-leads: patch and pause on socagents, no delete) ties the agent to an owner that
    // does not exist; then to its own DriftReport.
    let lead = as_user("lead-a").await?;
    let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "bait", "uid": "0b8f6d1e-0000-4000-8000-000000000000"}]}});
    let msg = refusal(
        Api::<SocAgent>::namespaced(lead, &home).patch("bot", &PatchParams::default(), &Patch::Merge(&owner)).await,
    );
    assert!(msg.contains(&format!("SocAgent {home}/bot cannot be owned by another object")), "{msg}");
    assert!(msg.contains("ConfigMap bait"), "{msg}");
    let reports = Api::<DriftReport>::namespaced(scene.admin.clone(), &home);
    let msg = refusal(reports.patch("bot", &PatchParams::default(), &Patch::Merge(&owner)).await);
    // Refused by the webhook (no owner) or, first, by the chart's admission policy (nobody but the
    // operator writes a DriftReport).
    assert!(
        msg.contains(&format!("DriftReport {home}/bot cannot be owned"))
            || msg.contains("only SOC Warden (system:serviceaccount:soc-warden-system:"),
        "even the admin's: {msg}"
    );
    let report = reports.get("bot").await?;
    assert_eq!(
        report.spec.pause.as_ref().map(|p| p.id.as_str()),
        Some(pause_id.as_str()),
        "the report keeps the pause"
    );
    assert!(report.metadata.owner_references.unwrap_or_default().is_empty(), "owned by nothing");

    // An admin deletes the agent (a GitOps prune) and applies it again.
    let agents = Api::<SocAgent>::namespaced(scene.admin.clone(), &home);
    let manifest = agents.get("bot").await?;
    agents.delete("bot", &DeleteParams::default()).await?;
    wait_for("the agent gone", T, || async { Ok(agents.get_opt("bot").await?.is_none().then_some(())) }).await?;
    let kept = reports.get_opt("bot").await?;
    assert!(
        kept.as_ref().is_some_and(|r| r.spec.pause.is_some()),
        "the report and its pause outlive the agent: {kept:?}"
    );
    let again: SocAgent = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
        "metadata": {"name": "bot", "namespace": home}, "spec": manifest.spec
    }))?;
    apply(&agents, &again).await?;
    let back = wait_agent(&scene.admin, &home, "bot", "reconciled", T, |a| {
        a.status.as_ref().is_some_and(|s| s.phase.is_some())
    })
    .await?;
    assert!(paused_for_drift(&back), "still paused for drift: {:?}", condition(&back, "Paused"));
    assert_eq!(back.status.as_ref().and_then(|s| s.pause.as_ref()).map(|p| p.id.as_str()), Some(pause_id.as_str()));
    assert_eq!(agent_token(&scene.admin, &home, "bot").await?, None, "no token while the pause holds");
    let secrets = Api::<Secret>::namespaced(scene.admin.clone(), &home);
    assert!(secrets.get_opt(&socwarden_core::agent::credentials::secret_name("bot")).await?.is_none());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(paused_for_drift(&agents.get("bot").await?), "and it stays paused");

    // Only an approver's resume, naming that pause, lifts it.
    let resume: Approval = serde_json::from_value(json!({"metadata": {"name": "resume-bot"},
        "spec": {"resume": {"agent": "bot", "pauseId": pause_id}, "decision": "approve"}}))?;
    Api::<Approval>::namespaced(as_user("lead-b").await?, &home).create(&PostParams::default(), &resume).await?;
    wait_agent(&scene.admin, &home, "bot", "resumed", T, |a| ready(a) && !paused_for_drift(a)).await?;
    let fresh = with_token(&agent_token(&scene.admin, &home, "bot").await?.expect("a fresh token")).await?;
    assert_eq!(status_of(Api::<Pod>::namespaced(fresh, &scope).list(&ListParams::default())).await, 200);
    assert_eq!(reports.get("bot").await?.spec.pause, None, "the report lets the pause go");

    // With no pause to keep, the report goes with the agent.
    agents.delete("bot", &DeleteParams::default()).await?;
    wait_for("the report deleted with its agent", T, || async {
        Ok(reports.get_opt("bot").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
