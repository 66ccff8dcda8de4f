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

/// A SOC admin with every right on `socwarden.io` (a RoleBinding to `*` on `*`, as broad roles are
/// written) still cannot forge what SOC Warden records: an ActionRequest's status (its decision),
/// an agent's status, or a DriftReport (where a drift pause lives; deleting it would lift the
/// pause). The chart's ValidatingAdmissionPolicy refuses each in the API server itself; the
/// admission webhook never sees /status. Meanwhile the operator, as the chart's ServiceAccount,
/// writes statuses as usual (the request below is decided Pending by it). Before the policy:
/// every write below was accepted.
#[tokio::test]
async fn a_soc_admin_with_every_right_cannot_forge_a_decision_or_lift_a_drift_pause() -> Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding};
    use kube::api::{DeleteParams, PostParams};
    use socwarden_api::{ActionRequest, Decision, DriftReport};
    let (s, isolate, _op, bot) = Scene::gated_isolation().await?;
    let home = s.home().to_string();
    file(&bot, &home, &request("r1", "bot", &isolate, json!({"app": "web"}), &home, "web-1")).await?;
    wait_for("pending", T, || async {
        Ok((decision_of(&s.admin, &home, "r1").await? == Some(Decision::Pending)).then_some(()))
    })
    .await?;

    // lead-c becomes a SOC admin of this namespace: every verb on every socwarden.io resource.
    let role = unique("soc-admin");
    let cr: ClusterRole = serde_json::from_value(json!({"metadata": {"name": role}}))?;
    let cr = ClusterRole {
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["socwarden.io".into()]),
            resources: Some(vec!["*".into()]),
            verbs: vec!["*".into()],
            ..Default::default()
        }]),
        ..cr
    };
    let roles = Api::<ClusterRole>::all(s.admin.clone());
    roles.create(&PostParams::default(), &cr).await?;
    /// The ClusterRole is cluster-wide: removed whatever the outcome.
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let name = self.0.clone();
            blocking_cleanup(move |c| async move {
                let _ = Api::<ClusterRole>::all(c).delete(&name, &DeleteParams::default()).await;
            });
        }
    }
    let _remove = Remove(role.clone());
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "lead-c"}],
    }))?;
    Api::<RoleBinding>::namespaced(s.admin.clone(), &home).create(&PostParams::default(), &rb).await?;
    wait_for("lead-c's RBAC", T, || async {
        Ok(can_i(&as_user("lead-c").await?, "patch", "socwarden.io", "actionrequests/status", &home)
            .await?
            .then_some(()))
    })
    .await?;
    let lead = as_user("lead-c").await?;
    let forbidden = |what: &str, r: kube::Result<serde_json::Value>| {
        let e = refusal(r);
        assert!(
            e.contains("only SOC Warden (system:serviceaccount:soc-warden-system:") && e.contains("lead-c may not"),
            "{what}: refused by the policy with its reason, got: {e}"
        );
    };

    let requests = Api::<ActionRequest>::namespaced(lead.clone(), &home);
    let forged = json!({"status": {"decision": "Approved", "reason": "approved by everyone"}});
    forbidden(
        "an ActionRequest's decision",
        requests.patch_status("r1", &PatchParams::default(), &Patch::Merge(&forged)).await.map(|_| json!({})),
    );
    let agents = Api::<SocAgent>::namespaced(lead.clone(), &home);
    let forged = json!({"status": {"tier": "autonomous"}});
    forbidden(
        "an agent's status",
        agents.patch_status("bot", &PatchParams::default(), &Patch::Merge(&forged)).await.map(|_| json!({})),
    );
    let reports = Api::<DriftReport>::namespaced(lead.clone(), &home);
    let report: DriftReport = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "DriftReport",
        "metadata": {"name": unique("forged")}, "spec": {"agent": "bot"},
    }))?;
    forbidden("a DriftReport", reports.create(&PostParams::default(), &report).await.map(|_| json!({})));
    if Api::<DriftReport>::namespaced(s.admin.clone(), &home).get_opt("bot").await?.is_some() {
        forbidden(
            "deleting the agent's DriftReport",
            reports.delete("bot", &DeleteParams::default()).await.map(|_| json!({})),
        );
    }
    // Nothing changed, and the operator still decides: the request stays Pending with its reason.
    assert_eq!(decision_of(&s.admin, &home, "r1").await?, Some(Decision::Pending));
    Ok(())
}
