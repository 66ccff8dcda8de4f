//! The second half of the review, tried as a human with partial RBAC: a lead who may only pause
//! (`socwarden-responder`) and a GitOps applier (`socwarden-editor`), with the roles of
//! `examples/05-people.yaml`. Each test names the guarantee it checks.

use anyhow::Result;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{Risk, SocAction, SocAgent, Tier, Verb};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn patch_as(who: &str, ns: &str, name: &str, spec: Value) -> Result<(), String> {
    let client = as_user(who).await.map_err(|e| e.to_string())?;
    Api::<SocAgent>::namespaced(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A lead who may only pause cannot rewrite the agent — not its approvers (a two-lead quorum
/// turned into self-approval), scope, actions, tier, onDrift or learning period — while
/// `kubectl warden pause`/`resume` keep working; the editor changes everything but `spec.paused`
/// (a Git sync never undoes a responder's pause).
#[tokio::test]
async fn a_lead_who_may_only_pause_cannot_rewrite_an_agent() -> Result<()> {
    let scene = Scene::new().await?;
    let (home, scope) = (scene.home(), scene.scope());
    let act = unique("people-read");
    apply(&Api::<SocAction>::all(scene.admin.clone()), &action(&act, Risk::Low, "", "pods", &[Verb::List])).await?;
    let _op = Operator::start().await?;
    let mut a = agent("bot", home, Tier::Supervised, &[&act], &[scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 2;
    apply(&Api::<SocAgent>::namespaced(scene.admin.clone(), home), &a).await?;
    wait_agent(&scene.admin, home, "bot", "Ready", T, ready).await?;

    for spec in [
        json!({"approvers": {"users": ["lead-a"], "groups": [], "minApprovals": 1}}),
        json!({"scope": {"namespaces": [scope, "kube-system"]}}),
        json!({"actions": []}),
        json!({"tier": "autonomous"}),
        json!({"baseline": {"onDrift": "Alert"}}),
        json!({"baseline": {"learningPeriod": "1m"}}),
        json!({"paused": true, "approvers": {"minApprovals": 1}}),
    ] {
        let e = patch_as("lead-a", home, "bot", spec.clone()).await.expect_err(&format!("lead-a changed {spec}"));
        assert!(e.contains("lead-a may not change the spec") && e.contains("'update'"), "{e}");
    }
    let unchanged = Api::<SocAgent>::namespaced(scene.admin.clone(), home).get("bot").await?;
    assert_eq!((unchanged.spec.approvers.min_approvals, unchanged.spec.paused), (2, false));

    // Pausing and resuming is what the responder is for.
    let (ok, out) = kubectl_warden("lead-a", &["pause", "bot", "-n", home])?;
    assert!(ok, "{out}");
    wait_agent(&scene.admin, home, "bot", "paused", T, |a| condition(a, "Paused").is_some_and(|c| c.status == "True"))
        .await?;
    let (ok, out) = kubectl_warden("lead-a", &["resume", "bot", "-n", home])?;
    assert!(ok, "{out}");
    wait_agent(&scene.admin, home, "bot", "Ready again", T, ready).await?;

    // The editor (GitOps) changes the agent, but not spec.paused.
    patch_as("gitops", home, "bot", json!({"approvers": {"minApprovals": 1}})).await.map_err(anyhow::Error::msg)?;
    let e = patch_as("gitops", home, "bot", json!({"paused": true})).await.expect_err("the editor paused the agent");
    assert!(e.contains("gitops may not change spec.paused") && e.contains("'pause'"), "{e}");
    Ok(())
}

/// A GitOps committer cannot take the operator down with a duration: beyond the schema's bound the
/// API server refuses it with the pattern, and past ten years with the CRD's validation rule
/// (before: `99999999999d` was accepted and the decision's `created + timeout` overflowed and
/// panicked; then `999999d` was accepted and the policy said it was invalid, failing its agents
/// closed, as `policy::validate` still does for a policy stored before the rule); every agent goes
/// on being served.
#[tokio::test]
async fn a_committer_cannot_take_the_operator_down_with_a_duration() -> Result<()> {
    let scene = Scene::new().await?;
    let (home, scope) = (scene.home(), scene.scope());
    let act = unique("people-read");
    apply(&Api::<SocAction>::all(scene.admin.clone()), &action(&act, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start().await?;
    let gitops = as_user("gitops").await?;
    let policy = |name: &str, timeout: &str| {
        format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {name}}}\nspec: {{approvals: {{timeout: {timeout}}}}}\n"
        )
    };
    let (huge, long) = (unique("huge"), unique("long"));
    let e = apply_yaml(&gitops, &policy(&huge, "99999999999d")).await.expect_err("the schema bounds durations");
    assert!(format!("{e:#}").contains("spec.approvals.timeout"), "{e:#}");
    let e = apply_yaml(&gitops, &policy(&long, "999999d")).await.expect_err("the CRD's rule bounds durations");
    assert!(format!("{e:#}").contains("spec.approvals.timeout: Invalid value"), "{e:#}");
    assert!(format!("{e:#}").contains("999999d is longer than 3650d (ten years)"), "{e:#}");
    let agents = Api::<SocAgent>::namespaced(scene.admin.clone(), home);
    apply(&agents, &agent("fine", home, Tier::Supervised, &[&act], &[scope])).await?;
    wait_agent(&scene.admin, home, "fine", "Ready", T, ready).await?;
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/readyz", op.metrics_port)).await?;
    assert_eq!(code, 200, "the operator is still serving");
    Ok(())
}
