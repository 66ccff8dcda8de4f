//! Scoped credentials against a real API server: what an agent's own token may do, and how that
//! follows the tier, the scope, the catalog, deletion and rotation.
//!
//! Each test starts its own operator process; run with `--test-threads=1` (e2e/test does).

use anyhow::Result;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ApiResource, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{Risk, SocAction, SocAgent, Tier, Verb};
use socwarden_core::agent::credentials;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn setup(prefixes: &[&str]) -> Result<(Client, Namespaces)> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    default_policy(&admin).await?;
    let ns = Namespaces::create(&admin, prefixes).await?;
    Ok((admin, ns))
}

fn netpol(name: &str) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}))
        .unwrap()
}

async fn list_pods(c: &Client, ns: &str) -> u16 {
    status_of(Api::<Pod>::namespaced(c.clone(), ns).list(&ListParams::default())).await
}

async fn create_netpol(c: &Client, ns: &str) -> u16 {
    let api = Api::<NetworkPolicy>::namespaced(c.clone(), ns);
    let code = status_of(api.create(&PostParams::default(), &netpol("probe"))).await;
    if code == 200 {
        let _ = api.delete("probe", &DeleteParams::default()).await;
    }
    code
}

/// Catalog of two actions: one low risk (read pods), one medium (create NetworkPolicies).
async fn catalog(admin: &Client) -> Result<(String, String)> {
    let read = unique("read-pods");
    let isolate = unique("isolate");
    let api: Api<SocAction> = Api::all(admin.clone());
    apply(&api, &action(&read, Risk::Low, "", "pods", &[Verb::Get, Verb::List])).await?;
    apply(&api, &action(&isolate, Risk::Medium, "networking.k8s.io", "networkpolicies", &[Verb::Create, Verb::Delete]))
        .await?;
    Ok((read, isolate))
}

async fn wait_code(what: &str, want: u16, f: impl AsyncFn() -> u16) -> Result<()> {
    wait_for(what, T, || async { Ok((f().await == want).then_some(())) }).await
}

#[tokio::test]
async fn token_is_allowed_exactly_its_autonomous_verbs() -> Result<()> {
    let (admin, ns) = setup(&["home", "scope", "other"]).await?;
    let (home, scope, other) = (ns.get(0), ns.get(1), ns.get(2));
    let (read, isolate) = catalog(&admin).await?;
    let _op = Operator::start().await?;

    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    apply(&agents, &agent("triage", home, Tier::Supervised, &[&read, &isolate], &[scope])).await?;
    let a = wait_agent(&admin, home, "triage", "Ready", T, ready).await?;
    let st = a.status.unwrap();
    assert_eq!(st.autonomous_actions, vec![read.clone()]);
    assert_eq!(st.gated_actions, vec![isolate.clone()]);
    assert_eq!(st.effective_tier, Some(Tier::Supervised));

    let token = agent_token(&admin, home, "triage").await?.expect("token in the Secret");
    let bot = with_token(&token).await?;
    // Its autonomous action, in scope: allowed.
    assert_eq!(list_pods(&bot, scope).await, 200);
    // Anywhere else, anything else: refused.
    assert_eq!(list_pods(&bot, other).await, 403, "other namespace");
    assert_eq!(list_pods(&bot, home).await, 403, "home is not in scope");
    assert_eq!(create_netpol(&bot, scope).await, 403, "gated action");
    assert_eq!(status_of(Api::<Secret>::namespaced(bot.clone(), scope).list(&ListParams::default())).await, 403);
    assert_eq!(status_of(Api::<Secret>::namespaced(bot.clone(), home).list(&ListParams::default())).await, 403);
    // Its own SocAgent: readable, not writable.
    let own: Api<SocAgent> = Api::namespaced(bot.clone(), home);
    assert_eq!(status_of(own.get("triage")).await, 200);
    let promote = json!({"spec": {"tier": "autonomous"}});
    assert_eq!(status_of(own.patch("triage", &PatchParams::default(), &Patch::Merge(&promote))).await, 403);
    assert_eq!(status_of(own.delete("triage", &DeleteParams::default())).await, 403);
    assert_eq!(status_of(own.list(&ListParams::default())).await, 403);
    // It may file ActionRequests at home only.
    assert!(can_i(&bot, "create", "socwarden.io", "actionrequests", home).await?);
    assert!(!can_i(&bot, "create", "socwarden.io", "actionrequests", scope).await?);
    assert!(!can_i(&bot, "create", "socwarden.io", "approvals", home).await?);
    assert!(!can_i(&bot, "update", "socwarden.io", "socactions", "").await?);

    // The credential objects are what the design says.
    let secret = Api::<Secret>::namespaced(admin.clone(), home).get(&credentials::secret_name("triage")).await?;
    assert_eq!(secret.type_.as_deref(), Some(credentials::SECRET_TYPE));
    assert_eq!(secret.owner_references()[0].name, "triage");
    assert!(secret.annotations().contains_key(credentials::EXPIRES_AT));
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), home)
        .get(&credentials::service_account_name("triage"))
        .await?;
    assert_eq!(sa.automount_service_account_token, Some(false));
    let binding =
        Api::<RoleBinding>::namespaced(admin.clone(), scope).get(&credentials::rbac_name(home, "triage")).await?;
    assert!(binding.labels().contains_key(credentials::AGENT_LABEL));
    let ready = condition(&wait_agent(&admin, home, "triage", "Ready", T, ready).await?, "CredentialsIssued").unwrap();
    assert_eq!(ready.status, "True");
    Ok(())
}

#[tokio::test]
async fn tier_and_scope_changes_move_the_grants() -> Result<()> {
    let (admin, ns) = setup(&["home", "scope", "more"]).await?;
    let (home, scope, more) = (ns.get(0), ns.get(1), ns.get(2));
    let (read, isolate) = catalog(&admin).await?;
    // Promotions here need only one approval (the rules themselves are tested with the governance).
    apply_yaml(&admin, &std::fs::read_to_string(repo().join("examples/05-people.yaml"))?).await?;
    let open = unique("open");
    apply_yaml(&admin, &format!(
        "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {open}}}\nspec:\n  promotion: {{minDwell: 0s, cleanWindow: 0s, coolingOff: 0s, minShadowDecisions: 0}}\n"
    )).await?;
    let _op = Operator::start().await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let mut a = agent("bot", home, Tier::Supervised, &[&read, &isolate], &[scope]);
    a.spec.policy_ref = open.clone();
    // This test probes the grants themselves, writing with them without filing requests: an
    // unrecorded write would contain the agent (records.rs tests that), so drift only reports.
    a.spec.baseline.on_drift = socwarden_api::OnDrift::Alert;
    a.spec.approvers.users = vec!["lead-a".into()];
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&admin, home, "bot").await?.unwrap()).await?;
    assert_eq!(create_netpol(&bot, scope).await, 403);

    // Raise: once the promotion is approved, the medium-risk action becomes autonomous and its
    // grant appears.
    a.spec.tier = Tier::Autonomous;
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "promotion pending", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| c.status == "True")
    })
    .await?;
    assert_eq!(create_netpol(&bot, scope).await, 403, "not before the promotion takes effect");
    let promote: socwarden_api::Approval = serde_json::from_value(json!({
        "metadata": {"name": "promote"}, "spec": {"promotion": {"agent": "bot", "tier": "autonomous"}, "decision": "approve"}
    }))?;
    Api::<socwarden_api::Approval>::namespaced(as_user("lead-a").await?, home)
        .create(&PostParams::default(), &promote)
        .await?;
    wait_code("netpol allowed at autonomous", 200, || create_netpol(&bot, scope)).await?;
    assert_eq!(list_pods(&bot, scope).await, 200);

    // Lower to assist: nothing runs alone, every grant goes.
    a.spec.tier = Tier::Assist;
    apply(&agents, &a).await?;
    wait_code("pods refused at assist", 403, || list_pods(&bot, scope)).await?;
    assert_eq!(create_netpol(&bot, scope).await, 403);
    let st = wait_agent(&admin, home, "bot", "assist applied", T, |a| {
        ready(a) && a.status.as_ref().unwrap().effective_tier == Some(Tier::Assist)
    })
    .await?;
    assert!(st.status.unwrap().autonomous_actions.is_empty());

    // Back up to supervised (a promotion again, approved), adding a namespace to the scope.
    a.spec.tier = Tier::Supervised;
    a.spec.scope.namespaces = vec![scope.to_string(), more.to_string()];
    apply(&agents, &a).await?;
    let promote: socwarden_api::Approval = serde_json::from_value(json!({
        "metadata": {"name": "promote-again"}, "spec": {"promotion": {"agent": "bot", "tier": "supervised"}, "decision": "approve"}
    }))?;
    Api::<socwarden_api::Approval>::namespaced(as_user("lead-a").await?, home)
        .create(&PostParams::default(), &promote)
        .await?;
    wait_code("pods allowed in the added namespace", 200, || list_pods(&bot, more)).await?;
    // Each namespace's Role and RoleBinding are written concurrently: one may land a moment later.
    wait_code("pods allowed again in the first namespace", 200, || list_pods(&bot, scope)).await?;

    // Remove the first namespace: its RoleBinding and Role go, the grant ends.
    a.spec.scope.namespaces = vec![more.to_string()];
    apply(&agents, &a).await?;
    wait_code("pods refused in the removed namespace", 403, || list_pods(&bot, scope)).await?;
    assert_eq!(list_pods(&bot, more).await, 200);
    let name = credentials::rbac_name(home, "bot");
    wait_for("role removed from old scope", T, || async {
        let rb = Api::<RoleBinding>::namespaced(admin.clone(), scope).get_opt(&name).await?;
        let r = Api::<Role>::namespaced(admin.clone(), scope).get_opt(&name).await?;
        Ok((rb.is_none() && r.is_none()).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn deleting_an_agent_leaves_nothing_behind() -> Result<()> {
    let (admin, ns) = setup(&["home", "s1", "s2"]).await?;
    let (home, s1, s2) = (ns.get(0), ns.get(1), ns.get(2));
    let (read, _) = catalog(&admin).await?;
    let _op = Operator::start().await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    apply(&agents, &agent("gone", home, Tier::Supervised, &[&read], &[s1, s2])).await?;
    wait_agent(&admin, home, "gone", "Ready", T, ready).await?;
    let token = agent_token(&admin, home, "gone").await?.unwrap();

    let kinds = [
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<Role>(&()),
        ApiResource::erase::<RoleBinding>(&()),
    ];
    let mut before = 0;
    for k in &kinds {
        before += owned_by(&admin, k, home, "gone").await?.len();
    }
    assert_eq!(before, 1 + 1 + 3 + 3, "SA, Secret, and a Role+RoleBinding in home, s1, s2");

    agents.delete("gone", &DeleteParams::default()).await?;
    wait_for("agent deleted", T, || async { Ok(agents.get_opt("gone").await?.is_none().then_some(())) }).await?;
    for k in &kinds {
        let left = owned_by(&admin, k, home, "gone").await?;
        assert!(left.is_empty(), "{} left behind: {:?}", k.kind, left.iter().map(|o| o.name_any()).collect::<Vec<_>>());
    }
    let bot = with_token(&token).await?;
    wait_code("old token rejected", 401, || list_pods(&bot, s1)).await?;
    Ok(())
}

#[tokio::test]
async fn bad_inputs_fail_closed_and_spare_the_neighbour() -> Result<()> {
    let (admin, ns) = setup(&["home", "scope"]).await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let (read, _) = catalog(&admin).await?;
    let greedy = unique("read-secrets");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&greedy, Risk::Low, "", "secrets", &[Verb::Get])).await?;
    let _op = Operator::start().await?;

    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    apply(&agents, &agent("good", home, Tier::Supervised, &[&read], &[scope])).await?;
    apply(&agents, &agent("typo", home, Tier::Supervised, &[&read, "no-such-action"], &[scope])).await?;
    apply(&agents, &agent("greedy", home, Tier::Supervised, &[&read, &greedy], &[scope])).await?;
    let mut nopolicy = agent("nopolicy", home, Tier::Supervised, &[&read], &[scope]);
    nopolicy.spec.policy_ref = "no-such-policy".into();
    apply(&agents, &nopolicy).await?;
    let mut noworkload = agent("noworkload", home, Tier::Supervised, &[&read], &[scope]);
    noworkload.spec.workload_ref = Some(socwarden_api::WorkloadRef {
        kind: socwarden_api::WorkloadKind::Deployment,
        name: "missing".into(),
        grace_period_seconds: None,
    });
    apply(&agents, &noworkload).await?;

    let cases = [
        ("typo", "UnknownAction", "no-such-action"),
        ("greedy", "UndelegableGrant", "get secrets"),
        ("nopolicy", "PolicyNotFound", "no-such-policy"),
        ("noworkload", "WorkloadNotFound", "Deployment missing"),
    ];
    for (name, reason, says) in cases {
        let a = wait_agent(&admin, home, name, "InvalidSpec", T, |a| {
            condition(a, "InvalidSpec").is_some_and(|c| c.status == "True")
        })
        .await?;
        let c = condition(&a, "InvalidSpec").unwrap();
        assert_eq!(c.reason, reason, "{name}");
        assert!(c.message.contains(says), "{name}: {}", c.message);
        assert!(c.message.contains("no action grants"), "{name}: {}", c.message);
        assert_eq!(a.status.as_ref().unwrap().phase, Some(socwarden_api::Phase::Error));
        assert!(!ready(&a));
        // Fail closed: its token (base rules only) cannot use the valid action either.
        let token = wait_for("token", T, || agent_token(&admin, home, name)).await?;
        assert_eq!(list_pods(&with_token(&token).await?, scope).await, 403, "{name} holds no action grants");
    }
    // An Event says it too.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), home);
    let evs = events.list(&ListParams::default()).await?;
    assert!(evs.items.iter().any(|e| e.reason.as_deref() == Some("InvalidSpec")
        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("typo")));
    // The SocAction itself reports what it may not be granted.
    let g = wait_for("SocAction status", T, || async {
        let a = Api::<SocAction>::all(admin.clone()).get(&greedy).await?;
        Ok(a.status.filter(|s| !s.undelegable.is_empty()))
    })
    .await?;
    assert_eq!(g.undelegable, vec!["get secrets"]);

    // The neighbour is unaffected.
    wait_agent(&admin, home, "good", "Ready", T, ready).await?;
    let good = with_token(&agent_token(&admin, home, "good").await?.unwrap()).await?;
    assert_eq!(list_pods(&good, scope).await, 200);

    // Fixing the typo restores the grants.
    apply(&agents, &agent("typo", home, Tier::Supervised, &[&read], &[scope])).await?;
    wait_agent(&admin, home, "typo", "Ready", T, ready).await?;
    let typo = with_token(&agent_token(&admin, home, "typo").await?.unwrap()).await?;
    wait_code("fixed agent gets its grants", 200, || list_pods(&typo, scope)).await?;
    Ok(())
}

#[tokio::test]
async fn a_token_past_80_percent_of_its_life_is_replaced() -> Result<()> {
    let (admin, ns) = setup(&["home", "scope"]).await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let (read, _) = catalog(&admin).await?;
    let _op = Operator::start().await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    apply(&agents, &agent("rot", home, Tier::Supervised, &[&read], &[scope])).await?;
    wait_agent(&admin, home, "rot", "Ready", T, ready).await?;
    let old = agent_token(&admin, home, "rot").await?.unwrap();
    // Tokens carry their issue time (`iat`, set by the API server) in whole seconds: let the clock
    // pass it, or the replacement could be byte-for-byte the same token.
    let iat = credentials::jwt_claims(&old).and_then(|c| c["iat"].as_i64()).expect("the token has an iat claim");
    wait_for("the second after the token's iat", T, || async {
        Ok((jiff::Timestamp::now().as_second() > iat).then_some(()))
    })
    .await?;

    // Pretend the token was issued 85% of its hour ago.
    let now = jiff::Timestamp::now();
    let issued = now - jiff::SignedDuration::from_secs(3060);
    let expires = now + jiff::SignedDuration::from_secs(540);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), home);
    let patch = json!({"metadata": {"annotations": {
        credentials::ISSUED_AT: issued.to_string(),
        credentials::EXPIRES_AT: expires.to_string(),
    }}});
    secrets.patch(&credentials::secret_name("rot"), &PatchParams::default(), &Patch::Merge(&patch)).await?;

    let new =
        wait_for("a new token", T, || async { Ok(agent_token(&admin, home, "rot").await?.filter(|t| *t != old)) })
            .await?;
    let s = secrets.get(&credentials::secret_name("rot")).await?;
    let issued_now: jiff::Timestamp = s.annotations()[credentials::ISSUED_AT].parse()?;
    assert!(issued_now > issued + jiff::SignedDuration::from_secs(3000), "issued-at moved to now");
    assert_eq!(list_pods(&with_token(&new).await?, scope).await, 200, "the new token works");
    let a = agents.get("rot").await?;
    let held = a.status.unwrap().credentials.unwrap();
    assert_eq!(held.issued_at.unwrap(), s.annotations()[credentials::ISSUED_AT]);
    // Each token is named by its jti, in the status and on the decision-log line of its issue.
    let (old_id, new_id) = (token_id(&old).expect("a jti"), token_id(&new).expect("a jti"));
    assert_ne!(old_id, new_id);
    assert_eq!(held.credential_id.as_deref(), Some(new_id.as_str()), "the status names the token held now");
    let rotated = wait_for("the rotation in the decision log", T, || async {
        Ok(logged_for_agent(home, "rot", "TokenRotated").into_iter().next())
    })
    .await?;
    assert_eq!(rotated["credentials"], json!([new_id]), "{rotated}");
    assert!(rotated["message"].as_str().unwrap_or_default().starts_with("token past 80% of its lifetime"), "{rotated}");
    let first = logged_for_agent(home, "rot", "CredentialsIssued");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!((&first[0]["credentials"], &first[0]["phase"]), (&json!([old_id]), &json!("Protect")));
    Ok(())
}
