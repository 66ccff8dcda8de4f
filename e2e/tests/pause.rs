//! Pause and resume, manual and by the kill switch, against a real API server: the agent's token is
//! refused at once (403), dies within seconds (401), its workload stops, and resuming gives a fresh
//! token while the old one stays dead.

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use soc_warden::workload::PAUSED_REPLICAS;
use soc_warden_e2e::*;
use socwarden_api::{Phase, Risk, SocAction, SocAgent, Tier, Verb, WorkloadKind, WorkloadRef};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

async fn list_pods(c: &Client, ns: &str) -> u16 {
    status_of(Api::<Pod>::namespaced(c.clone(), ns).list(&ListParams::default())).await
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]}}
        }
    }))
    .unwrap()
}

async fn replicas(admin: &Client, ns: &str, name: &str) -> Result<(Option<i32>, Option<String>)> {
    let d = Api::<Deployment>::namespaced(admin.clone(), ns).get(name).await?;
    Ok((d.spec.and_then(|s| s.replicas), d.metadata.annotations.and_then(|a| a.get(PAUSED_REPLICAS).cloned())))
}

async fn setup() -> Result<(Client, Namespaces, String)> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    default_policy(&admin).await?;
    let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    Ok((admin, ns, read))
}

/// 403 on the very next request, then 401 within 15 s; returns how long the 401 took.
async fn assert_cut(admin: &Client, home: &str, scope: &str, token: &str) -> Result<Duration> {
    let bot = with_token(token).await?;
    let code = list_pods(&bot, scope).await;
    assert!(code == 403 || code == 401, "the very next request after the pause is refused, got {code}");
    let start = Instant::now();
    wait_for("old token rejected with 401", Duration::from_secs(15), || async {
        Ok((list_pods(&bot, scope).await == 401).then_some(()))
    })
    .await?;
    assert!(agent_token(admin, home, "bot").await?.is_none(), "the token Secret is gone");
    Ok(start.elapsed())
}

#[tokio::test]
async fn manual_pause_cuts_credentials_and_stops_the_workload_and_resume_issues_a_new_token() -> Result<()> {
    let (admin, ns, read) = setup().await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    apply(&Api::<Deployment>::namespaced(admin.clone(), home), &deployment("bot", 3)).await?;
    let _op = Operator::start().await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let mut a = agent("bot", home, Tier::Supervised, &[&read], &[scope]);
    a.spec.workload_ref =
        Some(WorkloadRef { kind: WorkloadKind::Deployment, name: "bot".into(), grace_period_seconds: None });
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "Ready", T, ready).await?;
    let old = agent_token(&admin, home, "bot").await?.unwrap();
    let bot = with_token(&old).await?;
    assert_eq!(list_pods(&bot, scope).await, 200);

    a.spec.paused = true;
    apply(&agents, &a).await?;
    let paused =
        wait_agent(&admin, home, "bot", "Paused", T, |a| condition(a, "Paused").is_some_and(|c| c.status == "True"))
            .await?;
    let took = assert_cut(&admin, home, scope, &old).await?;
    eprintln!("401 after {took:?} from the first refusal");
    let st = paused.status.unwrap();
    assert_eq!(st.phase, Some(Phase::Paused));
    assert_eq!(st.pause.as_ref().unwrap().reason, "Manual");
    assert_eq!(condition(&agents.get("bot").await?, "CredentialsIssued").unwrap().reason, "Revoked");
    assert_eq!(replicas(&admin, home, "bot").await?, (Some(0), Some("3".into())));
    // Nothing binds the service account any more, in any namespace.
    let rb =
        owned_by(&admin, &kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()), home, "bot")
            .await?;
    assert!(rb.is_empty(), "RoleBindings left: {:?}", rb.iter().map(|o| o.name_any()).collect::<Vec<_>>());

    // A GitOps sync scaling it back up while paused is undone.
    Api::<Deployment>::namespaced(admin.clone(), home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}})))
        .await?;
    // The operator holds it at zero on its next look (workloads are not watched): force one.
    a.spec.credentials.ttl = "2h".into();
    apply(&agents, &a).await?;
    wait_for("held at zero", T, || async { Ok((replicas(&admin, home, "bot").await?.0 == Some(0)).then_some(())) })
        .await?;

    // Resume: fresh token, old one stays dead, replicas restored.
    a.spec.paused = false;
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "Ready again", T, ready).await?;
    let new = agent_token(&admin, home, "bot").await?.unwrap();
    assert_ne!(new, old);
    assert_eq!(list_pods(&with_token(&new).await?, scope).await, 200);
    assert_eq!(list_pods(&bot, scope).await, 401, "the old token stays dead");
    assert_eq!(replicas(&admin, home, "bot").await?, (Some(3), None));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), home);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bot"))
        .filter_map(|e| e.reason)
        .collect();
    for r in ["CredentialsIssued", "Paused", "Resumed"] {
        assert!(reasons.iter().any(|x| x == r), "Event {r} missing in {reasons:?}");
    }
    Ok(())
}

/// Removes the emergency policy even when the test fails, so other tests are not left paused.
#[tokio::test]
async fn the_kill_switch_pauses_every_agent_and_releasing_it_resumes_them() -> Result<()> {
    let (admin, ns, read) = setup().await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let _op = Operator::start().await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let names = ["a1", "a2", "a3"];
    for n in names {
        apply(&agents, &agent(n, home, Tier::Supervised, &[&read], &[scope])).await?;
    }
    let mut tokens = Vec::new();
    for n in names {
        wait_agent(&admin, home, n, "Ready", T, ready).await?;
        tokens.push(agent_token(&admin, home, n).await?.unwrap());
    }

    // A separate policy, so that releasing it cannot disturb the default one.
    let ks = KillSwitch { name: unique("emergency") };
    let policy = format!(
        "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {}}}\nspec: {{killSwitch: true}}\n",
        ks.name
    );
    apply_yaml(&admin, &policy).await?;
    for (n, token) in names.iter().zip(&tokens) {
        let a = wait_agent(&admin, home, n, "paused by the kill switch", T, |a| {
            condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "KillSwitch")
        })
        .await?;
        assert!(condition(&a, "Paused").unwrap().message.contains("kill switch"));
        let bot = with_token(token).await?;
        wait_for("token dead", Duration::from_secs(15), || async {
            Ok((list_pods(&bot, scope).await == 401).then_some(()))
        })
        .await?;
    }

    // Releasing it resumes every agent with a fresh token.
    let release = policy.replace("killSwitch: true", "killSwitch: false");
    apply_yaml(&admin, &release).await?;
    for (n, old) in names.iter().zip(&tokens) {
        wait_agent(&admin, home, n, "Ready after release", T, ready).await?;
        let new = agent_token(&admin, home, n).await?.unwrap();
        assert_ne!(&new, old);
        assert_eq!(list_pods(&with_token(&new).await?, scope).await, 200);
    }
    drop(ks);
    Ok(())
}
