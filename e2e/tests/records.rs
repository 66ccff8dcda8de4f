//! Approved vs done, against a real API server whose audit webhook points at the operator: every
//! write of an agent is matched with the decided request that covers it. The agent acts with its
//! own token — kubectl (discovery, access reviews and all) or a plain client — after a learning
//! period in which it only listed pods and never used the action it then uses.

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, DriftReport, ExecutionState, Phase, SocAgent};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

struct World {
    admin: Client,
    ns: Namespaces,
    read: String,
    delete: String,
}

async fn world() -> Result<World> {
    let Scene { admin, ns } = Scene::audited().await?;
    let (read, delete) = (unique("read"), unique("delete-pod"));
    apply_yaml(
        &admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {read}}}\nspec:\n  risk: low\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [list]}}]\n"
        ),
    )
    .await?;
    // Low risk: it runs alone at the supervised tier, so the agent holds its grant.
    apply_yaml(
        &admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {delete}}}\nspec:\n  risk: low\n  description: Delete a compromised pod.\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [get, list, delete]}}]\n"
        ),
    )
    .await?;
    Ok(World { admin, ns, read, delete })
}

/// A supervised agent holding both actions, learning for 20 s while it lists pods (and files
/// `read` requests) as usual; returns its token client and that traffic, still running.
async fn learned_agent(w: &World, name: &str, seed: u64) -> Result<(Client, String, Normal)> {
    let (home, scope) = (w.ns.get(0), w.ns.get(1));
    let a: SocAgent = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
        "metadata": {"name": name, "namespace": home},
        "spec": {"tier": "supervised", "actions": [w.read, w.delete], "scope": {"namespaces": [scope]},
                 "approvers": {"groups": ["soc-leads"], "minApprovals": 1},
                 "baseline": {"learningPeriod": "20s", "sensitivity": "medium", "onDrift": "Pause"}}
    }))?;
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), home), &a).await?;
    wait_agent(&w.admin, home, name, "Ready", T, ready).await?;
    let token = agent_token(&w.admin, home, name).await?.expect("a token");
    let bot = with_token(&token).await?;
    let normal = Normal::start(bot.clone(), home.into(), scope.into(), name.into(), w.read.clone(), seed);
    wait_report(&w.admin, home, name, "baseline learned", Duration::from_secs(60), |r| {
        r.baseline.as_ref().is_some_and(|b| b.learned_at.is_some())
    })
    .await?;
    Ok((bot, token, normal))
}

async fn pods(w: &World, names: &[String]) -> Result<()> {
    victim_pods(&w.admin, w.ns.get(1), names).await
}

fn delete_request(w: &World, name: &str, agent: &str, pod: &str) -> String {
    format!(
        "apiVersion: socwarden.io/v1alpha1\nkind: ActionRequest\nmetadata: {{name: {name}, namespace: {}}}\nspec:\n  agent: {agent}\n  action: {}\n  target: {{kind: Pod, namespace: {}, name: {pod}}}\n  justification: pod {pod} runs a miner (alert ALERT-7)\n",
        w.ns.get(0),
        w.delete,
        w.ns.get(1)
    )
}

fn paused_for_drift(a: &SocAgent) -> bool {
    condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
}

#[tokio::test]
async fn an_agent_doing_its_job_stays_active_and_its_request_shows_the_write() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    pods(&w, &["miner-1".into()]).await?;
    let (_bot, token, normal) = learned_agent(&w, "worker", 7).await?;

    // As the agent, with kubectl: ask what it may do, file the request, and act once it runs.
    let kubeconfig = token_kubeconfig(&unique("worker"), &token)?;
    let (ok, out) = kubectl_with(&kubeconfig, &["auth", "can-i", "delete", "pods", "-n", &scope], "")?;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) =
        kubectl_with(&kubeconfig, &["create", "-f", "-"], &delete_request(&w, "kill-miner", "worker", "miner-1"))?;
    assert!(ok, "{out}");
    let r = decided(&w.admin, &home, "kill-miner").await?;
    assert_eq!(r.status.as_ref().and_then(|s| s.decision), Some(Decision::AutoApproved));
    let (ok, out) = kubectl_with(&kubeconfig, &["delete", "pod", "miner-1", "-n", &scope], "")?;
    assert!(ok, "{out}");

    // The request shows what was done under it (the audit event reached the sink and was matched).
    let requests = Api::<ActionRequest>::namespaced(w.admin.clone(), &home);
    let r = wait_for("the request shows the write it covered", T, || async {
        let r = requests.get("kill-miner").await?;
        let e = r.status.as_ref().and_then(|s| s.execution.clone());
        Ok(e.filter(|e| e.state == Some(ExecutionState::ActedOn)).map(|_| r))
    })
    .await?;
    let e = r.status.unwrap().execution.unwrap();
    let did: Vec<String> = e.performed.iter().map(ToString::to_string).collect();
    assert_eq!(did, vec![format!("delete pods {scope}/miner-1 → 200")], "{e:?}");
    // Approved vs done, per credential: the write names the token kubectl used, and so does the
    // decision log's line of it.
    let id = token_id(&token).expect("a jti");
    assert_eq!(e.performed[0].credential.as_deref(), Some(id.as_str()), "{e:?}");
    let acted = logged("kill-miner", &home).into_iter().find(|l| l["decision"] == "ActedOn").expect("logged");
    assert_eq!(acted["credentials"], json!([id]), "{acted}");

    // And the agent that did its job stays active: judged for 5 s more after the write was seen.
    let agents = Api::<SocAgent>::namespaced(w.admin.clone(), &home);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a = agents.get("worker").await?;
        assert!(!paused_for_drift(&a), "contained for doing its job: {:?}", condition(&a, "Paused"));
    }
    assert_eq!(agents.get("worker").await?.status.and_then(|s| s.phase), Some(Phase::Active));
    let report = Api::<DriftReport>::namespaced(w.admin.clone(), &home).get("worker").await?;
    let drift = report.status.and_then(|s| s.drift).expect("assessed");
    assert!(
        drift.signals.iter().all(|s| !s.observed.contains("delete pods") && !s.observed.contains(&w.delete)),
        "the recorded use is not novelty: {drift:?}"
    );
    // `explain` tells a lead what the agent did under its request.
    let (ok, out) = kubectl_warden("lead-a", &["explain", "worker", "-n", &home])?;
    assert!(ok && out.contains(&format!("did: delete pods {scope}/miner-1 → 200")), "{out}");
    normal.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_write_without_a_record_contains_the_agent_on_the_first_one() -> Result<()> {
    let w = world().await?;
    let op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let victims: Vec<String> = (0..10).map(|i| format!("victim-{i}")).collect();
    pods(&w, &victims).await?;
    let (bot, token, normal) = learned_agent(&w, "rogue", 11).await?;
    // The id of the token the agent acts with, read from the token itself.
    let id = token_id(&token).expect("a token issued by Kubernetes 1.30+ carries a jti claim");
    let held = Api::<SocAgent>::namespaced(w.admin.clone(), &home).get("rogue").await?;
    let shown = held.status.and_then(|s| s.credentials).and_then(|c| c.credential_id);
    assert_eq!(shown.as_deref(), Some(id.as_str()), "the status names the token the agent holds");

    // In its grant, allowed by RBAC, never recorded.
    let through = delete_until_refused(&bot, &scope, &victims).await;
    let a = wait_agent(&w.admin, &home, "rogue", "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains("unrecorded") && msg.contains(&format!("delete pods {scope}/victim-0")), "{msg}");
    assert!(through < victims.len(), "contained before the end: {through} of {} deletes got through", victims.len());

    // The decision log names the exact token that made the write (as the API server's audit event
    // did), and leads back to the issue of that token.
    let paused = wait_for("the pause in the decision log", T, || async {
        Ok(logged_for_agent(&home, "rogue", "Paused").into_iter().next())
    })
    .await?;
    assert_eq!(paused["credentials"], json!([id]), "the pause names the token of the write: {paused}");
    let issued: Vec<_> = ["CredentialsIssued", "TokenRotated"]
        .iter()
        .flat_map(|d| logged_for_agent(&home, "rogue", d))
        .filter(|l| l["credentials"] == json!([id]))
        .collect();
    assert_eq!(issued.len(), 1, "one issue of that token in the decision log: {issued:?}");
    assert_eq!(issued[0]["phase"], "Protect");
    let report = Api::<DriftReport>::namespaced(w.admin.clone(), &home).get("rogue").await?;
    let drift = report.status.and_then(|s| s.drift).expect("assessed");
    assert_eq!(drift.credentials, vec![id.clone()], "the DriftReport names it too");
    println!("writes that got through before containment: {through} (target 1)");
    let latency = metric(&op.metrics().await?, "socwarden_containment_duration_seconds_sum", &[]).unwrap_or(f64::NAN);
    println!("containment (audit batch at the sink → RoleBindings and Secret deleted): {:.0} ms", latency * 1000.0);
    normal.stop().await;
    Ok(())
}

/// Issue 28: the agent pads the audit batch of its unrecorded delete with ~1 MB calls. Each is a
/// list of pods — what it does all day — whose query carries a million `<`, which the API server's
/// audit JSON writes as `\u003c`: a ~6 MB event at Metadata level. Before, the sink refused the
/// batch over 8 MiB (413), the API server retried and then dropped it, the delete with it, and the
/// agent stayed Active.
#[tokio::test]
async fn a_write_hidden_among_megabyte_calls_still_contains_the_agent() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    pods(&w, &["victim-0".into()]).await?;
    let (bot, token, normal) = learned_agent(&w, "padder", 29).await?;

    let (port, ca) = soc_warden_e2e::https::apiserver()?;
    let target = format!("/api/v1/namespaces/{scope}/pods?limit=1&pad={}", "<".repeat(1_000_000));
    let padded = || {
        let (ca, token, target) = (ca.clone(), token.clone(), target.clone());
        tokio::spawn(async move { soc_warden_e2e::https::get_bearer(port, &ca, &token, &target).await })
    };
    let before: Vec<_> = (0..4).map(|_| padded()).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    Api::<Pod>::namespaced(bot.clone(), &scope).delete("victim-0", &DeleteParams::default()).await?;
    let after: Vec<_> = (0..4).map(|_| padded()).collect();
    for call in before.into_iter().chain(after) {
        assert_eq!(call.await??, 200, "a padded call is an ordinary list of pods");
    }

    let a = wait_agent(&w.admin, &home, "padder", "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains("unrecorded") && msg.contains(&format!("delete pods {scope}/victim-0")), "{msg}");
    normal.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_approved_request_for_one_pod_does_not_cover_another() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    pods(&w, &["pod-a".into(), "pod-b".into()]).await?;
    let (bot, _, normal) = learned_agent(&w, "narrow", 23).await?;

    let r: ActionRequest = serde_yaml::from_str(&delete_request(&w, "delete-a", "narrow", "pod-a"))?;
    Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await?;
    let r = decided(&w.admin, &home, "delete-a").await?;
    assert_eq!(r.status.as_ref().and_then(|s| s.decision), Some(Decision::AutoApproved));
    // Approved for pod A; deletes pod B.
    Api::<Pod>::namespaced(bot.clone(), &scope).delete("pod-b", &DeleteParams::default()).await?;
    let a = wait_agent(&w.admin, &home, "narrow", "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains(&format!("delete pods {scope}/pod-b")) && msg.contains("no record"), "{msg}");
    assert!(Api::<Pod>::namespaced(w.admin.clone(), &scope).get_opt("pod-a").await?.is_some(), "pod A untouched");
    let r = Api::<ActionRequest>::namespaced(w.admin.clone(), &home).get("delete-a").await?;
    let performed = r.status.and_then(|s| s.execution).map(|e| e.performed).unwrap_or_default();
    assert!(performed.is_empty(), "the write to pod B is not recorded under the request for pod A: {performed:?}");
    normal.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_agent_cannot_read_its_drift_score_or_baseline() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let home = w.ns.get(0).to_string();
    let (bot, _, normal) = learned_agent(&w, "curious", 31).await?;

    // What it needs: its phase, tier, what it may do alone.
    let own = Api::<SocAgent>::namespaced(bot.clone(), &home).get("curious").await?;
    let status = own.status.clone().expect("a status");
    assert_eq!(status.phase, Some(Phase::Active));
    assert!(!status.autonomous_actions.is_empty());
    // Nothing of its assessment: no score, no signals, no baseline, no Drifted condition.
    let text = serde_json::to_string(&status)?;
    for leak in ["drift\"", "score", "baseline", "signals", "Drifted", "WithinBaseline", "Learning"] {
        assert!(!text.contains(leak), "the agent reads {leak} in its own SocAgent's status: {text}");
    }
    // The DriftReport exists, and the agent cannot read it.
    assert!(Api::<DriftReport>::namespaced(w.admin.clone(), &home).get("curious").await?.status.is_some());
    let reports = Api::<DriftReport>::namespaced(bot.clone(), &home);
    assert_eq!(status_of(reports.get("curious")).await, 403);
    assert_eq!(status_of(reports.list(&Default::default())).await, 403);
    normal.stop().await;
    Ok(())
}

/// Hardening III §2: a request covers only what it names. The agent files a decoy aimed at an
/// address (no Kubernetes object), which runs alone, then deletes pods its grant allows: neither
/// delete is covered by the decoy, the first contains it, and the decoy records no write.
#[tokio::test]
async fn a_decoy_aimed_at_an_address_covers_no_delete() -> Result<()> {
    let w = world().await?;
    let _op = Operator::start().await?;
    let (home, scope) = (w.ns.get(0).to_string(), w.ns.get(1).to_string());
    let victims: Vec<String> = (2..6).map(|i| format!("vault-{i}")).collect();
    pods(&w, &victims).await?;
    let (bot, _, normal) = learned_agent(&w, "decoy", 31).await?;

    let decoy = format!(
        "apiVersion: socwarden.io/v1alpha1\nkind: ActionRequest\nmetadata: {{name: decoy, namespace: {home}}}\nspec:\n  agent: decoy\n  action: {}\n  target: {{kind: IP, name: 203.0.113.9}}\n  justification: block the scanner at 203.0.113.9\n",
        w.delete
    );
    let r: ActionRequest = serde_yaml::from_str(&decoy)?;
    Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await?;
    let r = decided(&w.admin, &home, "decoy").await?;
    assert_eq!(r.status.as_ref().and_then(|s| s.decision), Some(Decision::AutoApproved));
    let through = delete_until_refused(&bot, &scope, &victims).await;
    let a = wait_agent(&w.admin, &home, "decoy", "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains(&format!("delete pods {scope}/vault-2")) && msg.contains("no record"), "{msg}");
    assert!(through < victims.len(), "contained before the end: {through} of {}", victims.len());
    let r = Api::<ActionRequest>::namespaced(w.admin.clone(), &home).get("decoy").await?;
    let performed = r.status.and_then(|s| s.execution).map(|e| e.performed).unwrap_or_default();
    assert!(performed.is_empty(), "nothing is recorded under the decoy: {performed:?}");
    normal.stop().await;
    Ok(())
}
