//! Behaviour drift against a real API server whose audit webhook points at the operator: after a
//! short learning period of normal activity, done by the agent with its own token, misbehaviour is
//! contained (403 at once, 401 within 15 s, workload at zero) and explained; normal variation is not.

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Approval, Phase, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);
const LEARNING: &str = "20s";

struct World {
    admin: Client,
    ns: Namespaces,
    read: String,
    enrich: String,
}

async fn world() -> Result<World> {
    let Scene { admin, ns } = Scene::audited().await?;
    let (read, enrich) = (unique("read"), unique("enrich"));
    // `read` also lets the agent read ConfigMaps, which it never does while learning. `enrich`
    // needs approval at the supervised tier.
    for (name, risk) in [(&read, "low"), (&enrich, "medium")] {
        apply_yaml(
            &admin,
            &format!(
                "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {name}}}\nspec:\n  risk: {risk}\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [list]}}, {{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}}]\n"
            ),
        )
        .await?;
    }
    Ok(World { admin, ns, read, enrich })
}

/// An agent with a workload, the given sensitivity and a 20 s learning period; its token client.
async fn monitored(w: &World, name: &str, sensitivity: &str) -> Result<Client> {
    let (home, scope) = (w.ns.get(0), w.ns.get(1));
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}}}
    }))?;
    apply(&Api::<Deployment>::namespaced(w.admin.clone(), home), &d).await?;
    let a: SocAgent = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
        "metadata": {"name": name, "namespace": home},
        "spec": {"tier": "supervised", "actions": [w.read, w.enrich], "scope": {"namespaces": [scope]},
                 "approvers": {"groups": ["soc-leads"], "minApprovals": 1},
                 "workloadRef": {"kind": "Deployment", "name": name},
                 "baseline": {"learningPeriod": LEARNING, "sensitivity": sensitivity, "onDrift": "Pause"}}
    }))?;
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), home), &a).await?;
    wait_agent(&w.admin, home, name, "Ready", T, ready).await?;
    with_token(&agent_token(&w.admin, home, name).await?.unwrap()).await
}

async fn learned(w: &World, name: &str) -> Result<socwarden_api::DriftReportStatus> {
    wait_report(&w.admin, w.ns.get(0), name, "baseline learned", Duration::from_secs(60), |r| {
        r.baseline.as_ref().is_some_and(|b| b.learned_at.is_some())
    })
    .await
}

fn paused_for_drift(a: &SocAgent) -> bool {
    condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
}

/// After a drift pause: refused at once, token dead within 15 s, workload at zero, and
/// `kubectl describe` says why.
async fn assert_contained(w: &World, name: &str, bot: &Client, signal: &str) -> Result<String> {
    let (home, scope) = (w.ns.get(0), w.ns.get(1));
    let a = wait_agent(&w.admin, home, name, "paused for drift", T, paused_for_drift).await?;
    let code = status_of(Api::<Pod>::namespaced(bot.clone(), scope).list(&ListParams::default())).await;
    assert!(code == 403 || code == 401, "next request refused, got {code}");
    wait_for("token dead", Duration::from_secs(15), || async {
        Ok((status_of(Api::<Pod>::namespaced(bot.clone(), scope).list(&ListParams::default())).await == 401)
            .then_some(()))
    })
    .await?;
    let d = Api::<Deployment>::namespaced(w.admin.clone(), home).get(name).await?;
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(0));
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains(signal), "the pause names the {signal} signal: {msg}");
    let kubectl = std::fs::read_to_string(cluster_dir().join("env"))?
        .lines()
        .find_map(|l| l.strip_prefix("KUBECTL=").map(String::from))
        .unwrap_or_else(|| "kubectl".into());
    let out = std::process::Command::new(kubectl)
        .args(["describe", "socagent", name, "-n", home])
        .env("KUBECONFIG", admin_kubeconfig())
        .output()?;
    let described = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(described.contains("paused for drift") && described.contains(signal), "{described}");
    Ok(a.status.unwrap().pause.unwrap().id)
}

#[tokio::test]
async fn a_burst_of_403s_pauses_and_only_an_approver_resumes() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let bot = monitored(&w, "prober", "medium").await?;
    let id = token_id(&agent_token(&w.admin, &home, "prober").await?.expect("a token")).expect("a jti");
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "prober".into(), w.read.clone(), 7);
    learned(&w, "prober").await?;
    // Probing beyond its grants: reading Secrets in its own scope.
    for _ in 0..10 {
        let _ = Api::<Secret>::namespaced(bot.clone(), &scope).get("db-credentials").await;
    }
    let pause_id = assert_contained(&w, "prober", &bot, "outOfScope").await?;
    normal.stop().await;
    // The statistics name the token of the calls they judged: the agent's one token.
    let paused = wait_for("the pause in the decision log", T, || async {
        Ok(logged_for_agent(&home, "prober", "Paused").into_iter().next())
    })
    .await?;
    assert_eq!(paused["credentials"], json!([id]), "{paused}");

    // A drift pause is lifted only by an approver's resume: not by the kill switch going on and
    // off, nor by spec.paused going true and false.
    let agents = Api::<SocAgent>::namespaced(w.admin.clone(), &home);
    let ks = KillSwitch::new();
    ks.set(&w.admin, true).await?;
    wait_agent(&w.admin, &home, "prober", "paused (kill switch on)", T, |a| {
        condition(a, "Paused").is_some_and(|c| c.status == "True")
    })
    .await?;
    ks.set(&w.admin, false).await?;
    drop(ks);
    for paused in [true, false] {
        agents.patch("prober", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": paused}}))).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = agents.get("prober").await?;
    assert!(paused_for_drift(&still), "still paused for drift: {:?}", condition(&still, "Paused"));

    // The analyst may not resume it; a lead may.
    let resume = |name: &str| -> Approval {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"resume": {"agent": "prober", "pauseId": pause_id}, "decision": "approve"}})).unwrap()
    };
    let refused = Api::<Approval>::namespaced(as_user("analyst").await?, &home)
        .create(&PostParams::default(), &resume("by-analyst"))
        .await;
    assert!(matches!(refused, Err(kube::Error::Api(ref s)) if s.message.contains("not an approver")), "{refused:?}");
    Api::<Approval>::namespaced(as_user("lead-a").await?, &home)
        .create(&PostParams::default(), &resume("by-lead"))
        .await?;
    let back = wait_agent(&w.admin, &home, "prober", "resumed", T, |a| ready(a) && !paused_for_drift(a)).await?;
    let st = back.status.unwrap();
    assert!(st.resumed_at.is_some() && st.last_drift_pause.is_some());
    let fresh = with_token(&agent_token(&w.admin, &home, "prober").await?.unwrap()).await?;
    assert_eq!(status_of(Api::<Pod>::namespaced(fresh, &scope).list(&ListParams::default())).await, 200);
    let d = Api::<Deployment>::namespaced(w.admin.clone(), &home).get("prober").await?;
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));

    // A promotion right after a drift pause is held by the clean window and the cooling-off
    // (default 24h and 72h), measured from the pause and the resume recorded in the status.
    Api::<SocAgent>::namespaced(as_user("gitops").await?, &home)
        .patch("prober", &PatchParams::default(), &Patch::Merge(json!({"spec": {"tier": "autonomous"}})))
        .await?;
    let held = wait_agent(&w.admin, &home, "prober", "PromotionPending", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| c.status == "True")
    })
    .await?;
    let msg = condition(&held, "PromotionPending").unwrap().message;
    assert!(msg.contains("within the clean window of 24h"), "{msg}");
    assert!(msg.contains("cooling off after the drift pause until"), "{msg}");
    assert_eq!(held.status.and_then(|s| s.effective_tier), Some(Tier::Supervised));
    Ok(())
}

#[tokio::test]
async fn twenty_times_the_normal_rate_pauses() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let bot = monitored(&w, "burst", "low").await?;
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "burst".into(), w.read.clone(), 11);
    learned(&w, "burst").await?;
    // About 3 calls a second normally; now about 60.
    let pods = Api::<Pod>::namespaced(bot.clone(), &scope);
    for _ in 0..120 {
        let _ = pods.list(&ListParams::default()).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_contained(&w, "burst", &bot, "rate").await?;
    normal.stop().await;
    Ok(())
}

#[tokio::test]
async fn never_seen_calls_pause_at_high_and_are_only_reported_at_low() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let high = monitored(&w, "strict", "high").await?;
    let low = monitored(&w, "lenient", "low").await?;
    let n1 = Normal::start(high.clone(), home.clone(), scope.clone(), "strict".into(), w.read.clone(), 3);
    let n2 = Normal::start(low.clone(), home.clone(), scope.clone(), "lenient".into(), w.read.clone(), 5);
    learned(&w, "strict").await?;
    learned(&w, "lenient").await?;
    // Within its grant, covered by no request, never done while learning: reading ConfigMaps.
    for c in [&high, &low] {
        let configmaps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(c.clone(), &scope);
        configmaps.list(&ListParams::default()).await?;
        configmaps.get_opt("settings").await?;
    }
    assert_contained(&w, "strict", &high, "novelty").await?;
    // Reported (an Event, the decision log and the DriftReport say what was seen), not paused.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.admin.clone(), &home);
    let note = wait_for("novelty reported", T, || async {
        Ok(events.list(&ListParams::default()).await?.items.into_iter().find_map(|e| {
            let about = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("lenient");
            (about && e.reason.as_deref() == Some("DriftReported")).then(|| e.note.unwrap_or_default())
        }))
    })
    .await?;
    assert!(
        note.contains("DriftReport lenient") && !note.contains("configmaps"),
        "the Event points to the report: {note}"
    );
    // The detail is in the decision log (and was in the DriftReport while the window held it).
    let logged = std::fs::read_to_string(decision_log())?
        .lines()
        .filter(|l| l.contains(&format!("\"namespace\":\"{home}\"")) && l.contains("\"agent\":\"lenient\""))
        .find(|l| l.contains("DriftReported"))
        .map(String::from)
        .unwrap_or_default();
    assert!(
        logged.contains("never seen: API call get configmaps, API call list configmaps"),
        "the decision log names what was seen: {logged}"
    );
    let lenient = Api::<SocAgent>::namespaced(w.admin.clone(), &home).get("lenient").await?;
    assert_eq!(lenient.status.as_ref().unwrap().phase, Some(Phase::Active), "reported, not paused, at low");
    assert!(!paused_for_drift(&lenient));
    n1.stop().await;
    n2.stop().await;
    Ok(())
}

#[tokio::test]
async fn normal_behaviour_with_natural_variation_is_never_paused() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let bot = monitored(&w, "steady", "high").await?;
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "steady".into(), w.read.clone(), 13);
    learned(&w, "steady").await?;
    // Watch it for 20 s more of the same (with its jitter), at the most sensitive setting.
    let agents = Api::<SocAgent>::namespaced(w.admin.clone(), &home);
    let reports = Api::<socwarden_api::DriftReport>::namespaced(w.admin.clone(), &home);
    let mut seen_normal = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a = agents.get("steady").await?;
        let drift = reports.get("steady").await?.status.and_then(|s| s.drift);
        assert!(!paused_for_drift(&a), "paused on normal behaviour: {drift:?}");
        seen_normal |= drift.is_some_and(|d| d.state == socwarden_api::drift::State::Normal);
    }
    let calls = normal.stop().await;
    assert!(calls > 80, "the agent was active ({calls} calls)");
    assert!(seen_normal, "the assessment reached Normal");
    assert_eq!(agents.get("steady").await?.status.unwrap().phase, Some(Phase::Active));
    let _ = Tier::Supervised;
    Ok(())
}

/// Issue 9 §6: only the agent's own requests are its behaviour. A never-seen action that an
/// analyst files on its behalf (and a lead denies) does not count against the agent; the same
/// action filed by the agent itself pauses it at once (the detector was live all along).
#[tokio::test]
async fn requests_others_file_are_not_the_agents_behaviour() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let bot = monitored(&w, "strict", "high").await?;
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "strict".into(), w.read.clone(), 7);
    learned(&w, "strict").await?;
    let novel = |name: &str| -> Result<ActionRequest> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"agent": "strict", "action": w.enrich, "target": {"kind": "Pod", "name": "web-1", "namespace": scope}}
        }))?)
    };
    let analyst = as_user("analyst").await?;
    for i in 0..3 {
        let name = format!("by-analyst-{i}");
        Api::<ActionRequest>::namespaced(analyst.clone(), &home).create(&PostParams::default(), &novel(&name)?).await?;
        let r = wait_for("a decision", T, || async {
            let r = Api::<ActionRequest>::namespaced(w.admin.clone(), &home).get(&name).await?;
            Ok(r.status.filter(|s| s.decision.is_some()))
        })
        .await?;
        assert_eq!(r.decision, Some(socwarden_api::Decision::Pending), "{}", r.message);
        approve("lead-a", &home, &approval(&format!("deny-{i}"), &name, "deny")).await?;
        decided(&w.admin, &home, &name).await?;
    }
    // Several judgements later, the agent is still active.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let a = Api::<SocAgent>::namespaced(w.admin.clone(), &home).get("strict").await?;
    assert!(!paused_for_drift(&a), "paused for what someone else filed: {:?}", condition(&a, "Paused"));
    assert_eq!(a.status.as_ref().unwrap().phase, Some(Phase::Active));
    // The same from the agent itself is contained: a never-seen action it asked for and a human
    // refused (asking alone is not drift: an approved or pending request is a record).
    Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &novel("by-agent")?).await?;
    approve("lead-a", &home, &approval("deny-agent", "by-agent", "deny")).await?;
    wait_agent(&w.admin, &home, "strict", "paused for drift", T, paused_for_drift).await?;
    normal.stop().await;
    Ok(())
}
