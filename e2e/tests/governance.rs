//! Human-in-the-loop governance against a real API server: the agent files requests with its own
//! token, humans decide with their own identities, the admission webhook stamps and refuses, the
//! gate decides, the operator executes exactly what was approved, and promotions wait for evidence.

use anyhow::Result;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Approval, Decision, ExecutionState, SocAction, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

struct World {
    scene: Scene,
    read: String,
    isolate: String,
}

impl std::ops::Deref for World {
    type Target = Scene;
    fn deref(&self) -> &Scene {
        &self.scene
    }
}

/// Namespaces, the people's RBAC, and a catalog with a low-risk read and a medium-risk isolation
/// that applies a NetworkPolicy.
async fn world() -> Result<World> {
    let scene = Scene::new().await?;
    let admin = scene.admin.clone();
    let read = unique("read");
    let isolate = unique("isolate");
    let catalog = format!(
        r#"
apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {read}}}
spec:
  risk: low
  parameters: [{{name: alertId, type: string, required: true, pattern: "[A-Z]+-[0-9]+"}}]
  grants: [{{apiGroups: [""], resources: [pods], verbs: [list]}}]
  protectedTargets: [{{kind: Pod, namePattern: "dc-.*"}}]
  limits: {{maxExecutionsPerHour: 3}}
"#
    );
    apply_yaml(&admin, &catalog).await?;
    apply_yaml(&admin, &isolate_action_yaml(&isolate, "medium")).await?;
    Ok(World { scene, read, isolate })
}

async fn new_agent(w: &World, name: &str, tier: Tier) -> Result<Client> {
    let mut a = agent(name, w.home(), tier, &[&w.read, &w.isolate], &[w.scope()]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 2;
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), w.home()), &a).await?;
    wait_agent(&w.admin, w.home(), name, "Ready", T, ready).await?;
    with_token(&agent_token(&w.admin, w.home(), name).await?.unwrap()).await
}

#[tokio::test]
async fn the_agent_files_requests_with_its_token_but_cannot_approve_or_edit() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let bot = new_agent(&w, "bot", Tier::Supervised).await?;
    let home = w.home();

    // The body claims lead-a; the stamp says who really asked.
    let mut r = request("r1", "bot", &w.read, json!({"alertId": "SOC-1"}), w.scope(), "web-1");
    r.spec.requester = "lead-a".into();
    let created = file(&bot, home, &r).await?;
    assert_eq!(created.spec.requester, format!("system:serviceaccount:{home}:warden-bot"));
    assert!(!created.spec.signature.is_empty());
    assert_eq!(decided(&w.admin, home, "r1").await?.status.unwrap().decision, Some(Decision::AutoApproved));

    // Approving its own request, editing itself or the catalog: refused by RBAC.
    let a = Api::<Approval>::namespaced(bot.clone(), home)
        .create(&PostParams::default(), &approval("self", "r1", "approve"))
        .await;
    assert_eq!(status_of(async { a }).await, 403);
    let promote = json!({"spec": {"tier": "autonomous"}});
    let own = Api::<SocAgent>::namespaced(bot.clone(), home);
    assert_eq!(status_of(own.patch("bot", &PatchParams::default(), &Patch::Merge(&promote))).await, 403);
    let catalog = Api::<SocAction>::all(bot.clone());
    assert_eq!(
        status_of(catalog.patch(&w.read, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"risk": "low"}}))))
            .await,
        403
    );
    assert_eq!(status_of(catalog.delete(&w.isolate, &DeleteParams::default())).await, 403);
    // Requests are records: the spec cannot change.
    let edit = json!({"spec": {"target": {"kind": "Pod", "name": "web-2", "namespace": w.scope()}}});
    let msg = refusal(
        Api::<ActionRequest>::namespaced(w.admin.clone(), home)
            .patch("r1", &PatchParams::default(), &Patch::Merge(&edit))
            .await,
    );
    assert!(msg.contains("immutable"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn only_the_agents_approvers_decide_and_the_real_approver_is_recorded() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let _bot = new_agent(&w, "bot", Tier::Supervised).await?;
    let home = w.home();
    // lead-a proposes a gated action (humans may file requests too).
    let lead_a = as_user("lead-a").await?;
    file(&lead_a, home, &request("r1", "bot", &w.isolate, json!({"app": "web"}), w.scope(), "web-1")).await?;
    wait_for("pending", T, || async {
        Ok(decision_of(&w.admin, home, "r1").await?.filter(|d| *d == Decision::Pending))
    })
    .await?;

    let msg = refusal(approve("analyst", home, &approval("by-analyst", "r1", "approve")).await);
    assert!(msg.contains("analyst is not an approver of SocAgent bot"), "{msg}");
    let msg = refusal(approve("lead-a", home, &approval("by-requester", "r1", "approve")).await);
    assert!(msg.contains("lead-a requested this action and cannot approve it too"), "{msg}");

    // lead-b approves, claiming to be someone else: the record says lead-b.
    let mut forged = approval("by-b", "r1", "approve");
    forged.spec.approver = "ceo".into();
    let a = approve("lead-b", home, &forged).await?;
    assert_eq!(a.spec.approver, "lead-b");
    // Still one short of the quorum of two.
    let st = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get("r1").await?.status.unwrap();
    assert_eq!(st.required_approvals, Some(2));
    wait_for("one approval counted", T, || async {
        let s = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get("r1").await?.status.unwrap();
        Ok((s.approvals.len() == 1 && s.decision == Some(Decision::Pending)).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn two_of_n_approves_one_deny_wins_and_an_expired_request_never_runs() -> Result<()> {
    let w = world().await?;
    // A policy of our own with a short approval timeout.
    let fast = unique("fast");
    apply_yaml(&w.admin, &format!("apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {fast}}}\nspec: {{approvals: {{timeout: 4s}}}}\n")).await?;
    let _op = Operator::start().await?;
    let mut a = agent("bot", w.home(), Tier::Supervised, &[&w.read, &w.isolate], &[w.scope()]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 2;
    a.spec.policy_ref = fast.clone();
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), w.home()), &a).await?;
    wait_agent(&w.admin, w.home(), "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&w.admin, w.home(), "bot").await?.unwrap()).await?;
    let (home, scope) = (w.home(), w.scope());
    let netpols = Api::<NetworkPolicy>::namespaced(w.admin.clone(), scope);

    // Quorum.
    file(&bot, home, &request("q", "bot", &w.isolate, json!({"app": "web"}), scope, "web-1")).await?;
    approve("lead-a", home, &approval("q-a", "q", "approve")).await?;
    approve("lead-b", home, &approval("q-b", "q", "approve")).await?;
    let q = decided(&w.admin, home, "q").await?;
    let st = q.status.unwrap();
    assert_eq!(st.decision, Some(Decision::Approved));
    assert_eq!(st.approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), ["lead-a", "lead-b"]);
    wait_for("isolation applied", T, || async { Ok(netpols.get_opt("isolate-web").await?) }).await?;

    // One deny wins.
    file(&bot, home, &request("d", "bot", &w.isolate, json!({"app": "api"}), scope, "api-1")).await?;
    approve("lead-a", home, &approval("d-a", "d", "approve")).await?;
    approve("lead-c", home, &approval("d-c", "d", "deny")).await?;
    let d = decided(&w.admin, home, "d").await?;
    assert_eq!(d.status.as_ref().unwrap().decision, Some(Decision::Denied));
    assert!(d.status.unwrap().message.contains("denied by lead-c"));

    // Nobody decides: expired, and never executed.
    file(&bot, home, &request("x", "bot", &w.isolate, json!({"app": "db"}), scope, "db-1")).await?;
    let x = decided(&w.admin, home, "x").await?;
    let st = x.status.unwrap();
    assert_eq!(st.decision, Some(Decision::Expired));
    assert!(st.execution.is_none());
    // An approval arriving afterwards is refused: the request is decided.
    let msg = refusal(approve("lead-a", home, &approval("x-late", "x", "approve")).await);
    assert!(msg.contains("already decided (Expired)"), "{msg}");
    assert!(netpols.get_opt("isolate-api").await?.is_none() && netpols.get_opt("isolate-db").await?.is_none());
    let _ = Api::<socwarden_api::AutonomyPolicy>::all(w.admin.clone()).delete(&fast, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test]
async fn low_risk_runs_alone_protected_targets_are_refused_and_budgets_reject() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.home(), w.scope());
    let sup = new_agent(&w, "sup", Tier::Supervised).await?;
    let auto = new_agent(&w, "auto", Tier::Autonomous).await?;

    file(&sup, home, &request("ok-1", "sup", &w.read, json!({"alertId": "SOC-7"}), scope, "web-1")).await?;
    let ok = decided(&w.admin, home, "ok-1").await?;
    assert_eq!(ok.status.as_ref().unwrap().decision, Some(Decision::AutoApproved));
    assert!(ok.status.unwrap().message.contains("runs without approval at tier supervised"));

    // Protected: refused at admission, whatever the tier.
    for (c, who) in [(&sup, "sup"), (&auto, "auto")] {
        let msg =
            refusal(file(c, home, &request("dc", who, &w.read, json!({"alertId": "SOC-8"}), scope, "dc-01")).await);
        assert!(msg.contains("is protected"), "{who}: {msg}");
    }
    // Out of scope and bad parameters: refused too, saying why.
    let msg = refusal(
        file(&sup, home, &request("far", "sup", &w.read, json!({"alertId": "SOC-8"}), "kube-system", "x")).await,
    );
    assert!(msg.contains("outside the scope"), "{msg}");
    let msg =
        refusal(file(&sup, home, &request("bad", "sup", &w.read, json!({"alertId": "drop table"}), scope, "x")).await);
    assert!(msg.contains("does not match"), "{msg}");

    // Budget: 3 per hour.
    for i in 2..=3 {
        file(&sup, home, &request(&format!("ok-{i}"), "sup", &w.read, json!({"alertId": "SOC-9"}), scope, "web-1"))
            .await?;
        assert_eq!(
            decided(&w.admin, home, &format!("ok-{i}")).await?.status.unwrap().decision,
            Some(Decision::AutoApproved)
        );
    }
    file(&sup, home, &request("ok-4", "sup", &w.read, json!({"alertId": "SOC-9"}), scope, "web-1")).await?;
    let over = decided(&w.admin, home, "ok-4").await?.status.unwrap();
    assert_eq!(over.decision, Some(Decision::Rejected));
    assert!(over.message.contains("the budget is 3 per hour"), "{}", over.message);
    Ok(())
}

#[tokio::test]
async fn an_approved_isolation_applies_exactly_once_across_a_restart_and_rolls_back() -> Result<()> {
    let w = world().await?;
    let mut op = Operator::start().await?;
    let bot = new_agent(&w, "bot", Tier::Supervised).await?;
    let (home, scope) = (w.home(), w.scope());
    let netpols = Api::<NetworkPolicy>::namespaced(w.admin.clone(), scope);
    file(&bot, home, &request("iso", "bot", &w.isolate, json!({"app": "web"}), scope, "web-1")).await?;
    approve("lead-a", home, &approval("iso-a", "iso", "approve")).await?;
    approve("lead-b", home, &approval("iso-b", "iso", "approve")).await?;
    // Crash the operator right after the approval, and start it again.
    op.kill();
    let _op2 = Operator::start().await?;
    let r = wait_for("executed", T, || async {
        let r = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get("iso").await?;
        let done = r.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.state)
            == Some(ExecutionState::Succeeded);
        Ok(done.then_some(r))
    })
    .await?;
    let applied = &r.status.unwrap().execution.unwrap().applied;
    assert_eq!(applied.len(), 1);
    // Exactly the approved object: one NetworkPolicy, as the template says, applied once.
    let np = netpols.get("isolate-web").await?;
    assert_eq!(np.metadata.generation, Some(1));
    let spec = serde_json::to_value(np.spec.unwrap())?;
    assert_eq!(spec["podSelector"]["matchLabels"]["app"], "web");
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(netpols.list(&ListParams::default()).await?.items.len(), 1);
    let lines = logged("iso", home);
    let executed = lines.iter().filter(|l| l["decision"] == "Executed").count();
    let approved = lines.iter().filter(|l| l["decision"] == "Approved").count();
    assert_eq!((approved, executed), (1, 1), "decision log: {lines:?}");
    assert!(lines.iter().all(|l| l["phase"] == "Respond"));

    // Rollback: deleting the request removes the isolation.
    Api::<ActionRequest>::namespaced(w.admin.clone(), home).delete("iso", &DeleteParams::default()).await?;
    wait_for("isolation lifted", T, || async { Ok(netpols.get_opt("isolate-web").await?.is_none().then_some(())) })
        .await?;
    wait_for("rollback logged", T, || async {
        Ok(logged("iso", home).iter().any(|l| l["decision"] == "RolledBack" && l["phase"] == "Recover").then_some(()))
    })
    .await?;
    Ok(())
}

/// A one-shot HTTP server that records the first request it gets.
async fn capture_one() -> Result<(u16, tokio::task::JoinHandle<Result<(String, Vec<u8>)>>)> {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let request = soc_warden_e2e::endpoint::read_request(&mut s).await?;
        s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
        Ok(request)
    });
    Ok((port, task))
}

#[tokio::test]
async fn an_http_action_reaches_the_endpoint_signed() -> Result<()> {
    let w = world().await?;
    let (port, server) = capture_one().await?;
    let soar = unique("soar");
    let key = b"0123456789abcdef0123456789abcdef";
    ensure_namespace(&w.admin, OPERATOR_NAMESPACE).await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": soar, "namespace": OPERATOR_NAMESPACE},
        "stringData": {"key": String::from_utf8_lossy(key)}
    }))?;
    apply(&Api::<Secret>::namespaced(w.admin.clone(), OPERATOR_NAMESPACE), &secret).await?;
    apply_yaml(
        &w.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {soar}}}\nspec:\n  risk: low\n  parameters: [{{name: ip, type: ip, required: true}}]\n  execution:\n    http: {{url: \"http://127.0.0.1:{port}/block\", secretRef: {{name: {soar}, key: key}}}}\n"
        ),
    )
    .await?;
    let _op = Operator::start().await?;
    let mut a = agent("bot", w.home(), Tier::Supervised, &[&soar], &[w.scope()]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), w.home()), &a).await?;
    wait_agent(&w.admin, w.home(), "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&w.admin, w.home(), "bot").await?.unwrap()).await?;
    let mut r = request("block", "bot", &soar, json!({"ip": "203.0.113.9"}), w.scope(), "x");
    r.spec.target = socwarden_api::Target { kind: "IP".into(), name: "203.0.113.9".into(), namespace: None };
    let created = file(&bot, w.home(), &r).await?;

    let (head, body) = tokio::time::timeout(T, server).await???;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert!(head.starts_with("POST /block "), "{head}");
    assert_eq!(header("x-soc-warden-signature"), Some(soc_warden::execute::http_signature(key, &body)));
    assert_eq!(header("idempotency-key"), created.uid());
    let sent: Value = serde_json::from_slice(&body)?;
    assert_eq!(sent["parameters"]["ip"], "203.0.113.9");
    assert_eq!(sent["action"], soar.as_str());
    let done = wait_for("execution recorded", T, || async {
        let r = Api::<ActionRequest>::namespaced(w.admin.clone(), w.home()).get("block").await?;
        Ok(r.status.and_then(|s| s.execution).filter(|e| e.state == Some(ExecutionState::Succeeded)))
    })
    .await?;
    assert!(done.result.contains("answered 202"), "{}", done.result);
    Ok(())
}

#[tokio::test]
async fn with_the_webhook_bypassed_forged_approvals_and_requests_do_not_count() -> Result<()> {
    let w = world().await?;
    // The operator would put its webhook back within the repair interval; keep it away for the test.
    let op = Operator::start_with(&["--webhook-repair-interval", "1h"]).await?;
    let bot = new_agent(&w, "bot", Tier::Supervised).await?;
    let home = w.home();
    file(&bot, home, &request("r1", "bot", &w.isolate, json!({"app": "web"}), w.scope(), "web-1")).await?;
    wait_for("pending", T, || async {
        Ok(decision_of(&w.admin, home, "r1").await?.filter(|d| *d == Decision::Pending))
    })
    .await?;
    let r1 = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get("r1").await?;

    // An attacker with cluster-admin removes the webhook and writes the stamps by hand.
    Api::<MutatingWebhookConfiguration>::all(w.admin.clone()).delete("socwarden.io", &DeleteParams::default()).await?;
    Api::<ValidatingWebhookConfiguration>::all(w.admin.clone())
        .delete("socwarden.io", &DeleteParams::default())
        .await?;
    let binding = socwarden_core::admission::signature::request_binding(&r1.spec);
    for (name, who) in [("forged-a", "lead-a"), ("forged-b", "lead-b")] {
        let mut a = approval(name, "r1", "approve");
        a.spec.approver = who.into();
        a.spec.approver_groups = vec!["soc-leads".into()];
        a.spec.bound_to = socwarden_core::admission::signature::bound_to_request(&r1.uid().unwrap(), &binding);
        a.spec.signature = "00".repeat(32);
        // The API server stops calling a deleted webhook once its informer has seen the deletion.
        let approvals = Api::<Approval>::namespaced(w.admin.clone(), home);
        wait_for("the webhook out of the way", T, || async {
            match approvals.create(&PostParams::default(), &a).await {
                Ok(_) => Ok(Some(())),
                Err(kube::Error::Api(e)) if e.message.contains("admission webhook") => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    }
    let mut unstamped = request("r2", "bot", &w.read, json!({"alertId": "SOC-3"}), w.scope(), "web-1");
    unstamped.spec.requester = "lead-a".into();
    file(&w.admin, home, &unstamped).await?;

    let r2 = decided(&w.admin, home, "r2").await?.status.unwrap();
    assert_eq!(r2.decision, Some(Decision::Rejected));
    assert!(r2.message.contains("not stamped by the admission webhook"), "{}", r2.message);
    // The operator looked at r1 with both forged approvals in hand (it says so in its log) …
    wait_for("forged approvals examined", T, || async {
        let log = std::fs::read_to_string(&op.log).unwrap_or_default();
        let seen =
            |n: &str| log.lines().any(|l| l.contains("approval ignored") && l.contains(n) && l.contains("not stamped"));
        Ok((seen("forged-a") && seen("forged-b")).then_some(()))
    })
    .await?;
    // … and they did not count.
    let s = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get("r1").await?.status.unwrap();
    assert_eq!(s.decision, Some(Decision::Pending));
    assert!(s.approvals.is_empty());
    let netpols = Api::<NetworkPolicy>::namespaced(w.admin.clone(), w.scope());
    assert!(netpols.get_opt("isolate-web").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_gitops_promotion_waits_for_evidence_and_approvals_and_a_demotion_is_immediate() -> Result<()> {
    let w = world().await?;
    let promo = unique("promo");
    apply_yaml(
        &w.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {promo}}}\nspec:\n  promotion: {{minDwell: 1s, cleanWindow: 1s, coolingOff: 1s, minShadowDecisions: 2, minShadowAgreement: 0.9}}\n"
        ),
    )
    .await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.home(), w.scope());
    let mut a = agent("bot", home, Tier::Supervised, &[&w.read, &w.isolate], &[scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 2;
    a.spec.policy_ref = promo.clone();
    let agents = Api::<SocAgent>::namespaced(w.admin.clone(), home);
    apply(&agents, &a).await?;
    wait_agent(&w.admin, home, "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&w.admin, home, "bot").await?.unwrap()).await?;
    let netpol_probe = || async {
        let api = Api::<NetworkPolicy>::namespaced(bot.clone(), scope);
        let np: NetworkPolicy =
            serde_json::from_value(json!({"metadata": {"name": "probe"}, "spec": {"podSelector": {}}})).unwrap();
        let code = status_of(api.create(&PostParams::default(), &np)).await;
        if code == 200 {
            let _ = api.delete("probe", &DeleteParams::default()).await;
        }
        code
    };
    assert_eq!(netpol_probe().await, 403, "isolate is gated at supervised");

    // The GitOps applier raises the tier.
    let gitops = Api::<SocAgent>::namespaced(as_user("gitops").await?, home);
    gitops.patch("bot", &PatchParams::apply("argocd").force(), &Patch::Apply(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent", "metadata": {"name": "bot"}, "spec": {"tier": "autonomous"}
    }))).await?;
    let pending = wait_agent(&w.admin, home, "bot", "PromotionPending", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| c.status == "True")
    })
    .await?;
    let msg = condition(&pending, "PromotionPending").unwrap().message;
    assert!(msg.contains("needs 2 approvals from soc-leads, has 0"), "{msg}");
    assert!(msg.contains("shadow evidence: 0 decisions of the 2 needed"), "{msg}");
    assert_eq!(pending.status.as_ref().unwrap().effective_tier, Some(Tier::Supervised));
    assert_eq!(netpol_probe().await, 403, "credentials follow the effective tier");

    // Shadow evidence: two isolations that autonomous would have run alone, approved by humans.
    for (i, app) in ["a", "b"].iter().enumerate() {
        let name = format!("shadow-{i}");
        file(&bot, home, &request(&name, "bot", &w.isolate, json!({"app": app}), scope, app)).await?;
        approve("lead-a", home, &approval(&format!("{name}-a"), &name, "approve")).await?;
        approve("lead-b", home, &approval(&format!("{name}-b"), &name, "approve")).await?;
        assert_eq!(decided(&w.admin, home, &name).await?.status.unwrap().decision, Some(Decision::Approved));
    }
    let after = wait_agent(&w.admin, home, "bot", "evidence counted", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| !c.message.contains("shadow"))
    })
    .await?;
    let msg = condition(&after, "PromotionPending").unwrap().message;
    assert!(msg.contains("needs 2 approvals from soc-leads, has 0"), "{msg}");
    let shadow = after.status.unwrap().shadow.unwrap();
    assert_eq!((shadow.decisions, shadow.agreed), (2, 2));

    // The analyst cannot approve a promotion; two leads can.
    let promote = |name: &str| -> Approval {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"promotion": {"agent": "bot", "tier": "autonomous"}, "decision": "approve"}})).unwrap()
    };
    let msg = refusal(approve("analyst", home, &promote("p-analyst")).await);
    assert!(msg.contains("not an approver"), "{msg}");
    approve("lead-a", home, &promote("p-a")).await?;
    let one = wait_agent(&w.admin, home, "bot", "one promotion approval", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| c.message.contains("has 1"))
    })
    .await?;
    assert_eq!(one.status.unwrap().effective_tier, Some(Tier::Supervised));
    approve("lead-b", home, &promote("p-b")).await?;
    wait_agent(&w.admin, home, "bot", "promoted", T, |a| {
        a.status.as_ref().and_then(|s| s.effective_tier) == Some(Tier::Autonomous)
    })
    .await?;
    wait_for("isolation grant after promotion", T, || async { Ok((netpol_probe().await == 200).then_some(())) })
        .await?;

    // A demotion takes effect at once.
    gitops.patch("bot", &PatchParams::apply("argocd").force(), &Patch::Apply(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent", "metadata": {"name": "bot"}, "spec": {"tier": "assist"}
    }))).await?;
    let demoted = wait_agent(&w.admin, home, "bot", "demoted", T, |a| {
        a.status.as_ref().and_then(|s| s.effective_tier) == Some(Tier::Assist)
    })
    .await?;
    assert!(condition(&demoted, "PromotionPending").is_some_and(|c| c.status == "False"));
    wait_for("grant gone after demotion", T, || async { Ok((netpol_probe().await == 403).then_some(())) }).await?;
    let log = std::fs::read_to_string(decision_log())?;
    assert!(log.lines().any(|l| l.contains("\"Promoted\"") && l.contains("\"Govern\"") && l.contains(home)));
    let _ = Api::<socwarden_api::AutonomyPolicy>::all(w.admin.clone()).delete(&promo, &DeleteParams::default()).await;
    Ok(())
}

/// Hardening III (SSRF read channel): a catalog committer points an HTTP execution at an internal
/// endpoint and reads the answer back from the request's status. The status says the call failed
/// and its HTTP code; what the endpoint answered stays in the operator's log.
#[tokio::test]
async fn what_an_endpoint_answers_never_reaches_the_requests_status() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let w = world().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            if soc_warden_e2e::endpoint::read_request(&mut s).await.is_ok() {
                let body = "instance credentials: AKIA-INTERNAL-SECRET-0042";
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        }
    });
    let soar = unique("internal");
    ensure_namespace(&w.admin, OPERATOR_NAMESPACE).await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": soar, "namespace": OPERATOR_NAMESPACE},
        "stringData": {"key": "0123456789abcdef0123456789abcdef"}
    }))?;
    apply(&Api::<Secret>::namespaced(w.admin.clone(), OPERATOR_NAMESPACE), &secret).await?;
    let gitops = as_user("gitops").await?;
    apply_yaml(
        &gitops,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {soar}}}\nspec:\n  risk: low\n  parameters: [{{name: ip, type: ip, required: true}}]\n  execution:\n    http: {{url: \"http://127.0.0.1:{port}/latest/meta-data\", secretRef: {{name: {soar}, key: key}}}}\n"
        ),
    )
    .await?;
    let _op = Operator::start().await?;
    let a = agent("bot", w.home(), Tier::Supervised, &[&soar], &[w.scope()]);
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), w.home()), &a).await?;
    wait_agent(&w.admin, w.home(), "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&w.admin, w.home(), "bot").await?.unwrap()).await?;
    let mut r = request("probe", "bot", &soar, json!({"ip": "203.0.113.9"}), w.scope(), "x");
    r.spec.target = socwarden_api::Target { kind: "IP".into(), name: "203.0.113.9".into(), namespace: None };
    file(&bot, w.home(), &r).await?;
    let failed = wait_for("execution failed", T, || async {
        let r = Api::<ActionRequest>::namespaced(gitops.clone(), w.home()).get("probe").await?;
        Ok(r.status.filter(|s| s.execution.as_ref().is_some_and(|e| e.state == Some(ExecutionState::Failed))))
    })
    .await?;
    let shown = serde_json::to_string(&failed)?;
    assert!(!shown.contains("AKIA-INTERNAL-SECRET"), "the endpoint's answer leaked into the status: {shown}");
    assert!(shown.contains("answered 500"), "the status still says what failed: {shown}");
    Ok(())
}
