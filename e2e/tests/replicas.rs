//! Two replicas, one truth (issue 30): what a replica that does not lead receives counts. The API
//! server's audit webhook and an agent's MCP client reach the *standby* — as the chart's Service
//! may send them to either pod — and the leader contains all the same: an unrecorded write at the
//! first one, a probing agent on its refused calls. Written as the adversary: the agent acts with
//! the token the operator issued it.

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);
const LEASE: u64 = 6;

/// A replica taking part in leader election, serving its peer endpoint on `peer`.
fn replica(name: &str, peer: u16) -> Vec<String> {
    let peer = format!("127.0.0.1:{peer}");
    ["--leader-elect", "--identity", name, "--lease-duration", &format!("{LEASE}s"), "--peer-addr", &peer]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

async fn holder(admin: &Client) -> Result<Option<String>> {
    let l = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get_opt(soc_warden::leader::LEASE).await?;
    Ok(l.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

/// `a` leads without an audit sink; `b` stands by and holds the port the API server's audit
/// webhook posts to: every audit batch reaches the standby only.
struct Two {
    scene: Scene,
    leader: Operator,
    standby: Operator,
    /// The leader's peer port.
    peer: u16,
}

async fn two(a: &str, b: &str) -> Result<Two> {
    let scene = Scene::audited().await?;
    let admin = scene.admin.clone();
    ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
    // A lease left by an earlier run must not delay this one.
    let _ = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .delete(soc_warden::leader::LEASE, &Default::default())
        .await;
    let peer = free_port();
    let args = replica(a, peer);
    let leader = Operator::start_opts(&args.iter().map(String::as_str).collect::<Vec<_>>(), false).await?;
    wait_for(&format!("{a} leads"), T, || async { Ok(holder(&admin).await?.filter(|h| h == a)) }).await?;
    let args = replica(b, free_port());
    let standby = Operator::start_opts(&args.iter().map(String::as_str).collect::<Vec<_>>(), true).await?;
    let log = standby.log.clone();
    wait_for(&format!("{b} stands by"), T, || async {
        Ok(std::fs::read_to_string(&log)?.contains("standing by for the leader lease").then_some(()))
    })
    .await?;
    Ok(Two { scene, leader, standby, peer })
}

#[tokio::test]
async fn an_unrecorded_write_the_standby_received_contains_the_agent_at_the_first_one() -> Result<()> {
    let w = two("lead-r", "standby-r").await?;
    let (admin, home, scope) = (w.scene.admin.clone(), w.scene.home().to_string(), w.scene.scope().to_string());
    let delete = pod_action(&admin, "delete-pod", "get, list, delete", false).await?;
    let victims: Vec<String> = (0..20).map(|i| format!("victim-{i}")).collect();
    victim_pods(&admin, &scope, &victims).await?;
    let mut a = agent("rogue", &home, Tier::Supervised, &[&delete], &[&scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    apply(&Api::<SocAgent>::namespaced(admin.clone(), &home), &a).await?;
    wait_agent(&admin, &home, "rogue", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&admin, &home, "rogue").await?.expect("a token")).await?;

    // In its grant, allowed by RBAC, never recorded; each audit batch goes to the standby.
    let through = delete_until_refused(&bot, &scope, &victims).await;
    let paused = wait_agent(&admin, &home, "rogue", "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&paused, "Paused").unwrap().message;
    assert!(msg.contains("unrecorded") && msg.contains(&format!("delete pods {scope}/victim-0")), "{msg}");
    println!("deletes that got through before containment: {through} of {}", victims.len());
    assert!(through < victims.len(), "contained before the end: {through} of {} deletes got through", victims.len());
    // The standby sent them; the leader took them and acted.
    let sent = metric(&w.standby.metrics().await?, "socwarden_peer_calls_total", &[("result", "forwarded")]);
    let taken = metric(&w.leader.metrics().await?, "socwarden_peer_calls_total", &[("result", "received")]);
    assert!(sent.unwrap_or(0.0) >= 1.0 && taken.unwrap_or(0.0) >= 1.0, "forwarded {sent:?}, received {taken:?}");
    let standby_log = std::fs::read_to_string(&w.standby.log)?;
    assert!(!standby_log.contains("execution finished"), "the standby did not act");
    Ok(())
}

/// A pod on the network that reaches a replica's peer endpoint cannot inject observations: an
/// unsigned body, or one signed with another key, is refused and changes nothing.
#[tokio::test]
async fn the_peer_endpoint_refuses_calls_not_signed_with_the_operators_key() -> Result<()> {
    let w = two("lead-p", "standby-p").await?;
    let (admin, home) = (w.scene.admin.clone(), w.scene.home().to_string());
    let read = pod_action(&admin, "read", "list", false).await?;
    let scope = w.scene.scope().to_string();
    apply(
        &Api::<SocAgent>::namespaced(admin.clone(), &home),
        &agent("victim", &home, Tier::Supervised, &[&read], &[&scope]),
    )
    .await?;
    wait_agent(&admin, &home, "victim", "Ready", T, ready).await?;
    let ca = https::webhook_ca(&admin).await?;
    // What an attacker would send: an unrecorded delete by the victim agent, unsigned and
    // signed with a key of its own.
    let call = format!(
        r#"[{{"ns":"{home}","agent":"victim","at":{now},"api":["delete pods",200],"recorded":false,"access":{{"at":{now},"verb":"delete","group":"","resource":"pods","subresource":"","namespace":"{scope}","name":"x","code":200}}}}]"#,
        now = jiff::Timestamp::now().as_microsecond()
    );
    let ms = jiff::Timestamp::now().as_millisecond();
    for body in [call.clone(), format!("{ms} {}\n{call}", "00".repeat(32))] {
        let (code, text) = https::post(w.peer, "/calls", body.as_bytes(), &ca, None).await?;
        assert_eq!(code, 401, "refused: {text}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = Api::<SocAgent>::namespaced(admin.clone(), &home).get("victim").await?;
    assert!(!paused_for_drift(&a), "nothing injected contains anyone: {:?}", condition(&a, "Paused"));
    let refused = metric(&w.leader.metrics().await?, "socwarden_peer_calls_total", &[("result", "refused")]);
    assert_eq!(refused, Some(2.0));
    Ok(())
}

/// The agent's MCP client reaches the standby's gateway: its normal calls become requests the
/// leader decides, and its refused probes, seen only by the standby, still contain it.
#[tokio::test]
async fn a_probing_agent_served_by_the_standby_is_contained() -> Result<()> {
    let w = two("lead-m", "standby-m").await?;
    let (admin, home, scope) = (w.scene.admin.clone(), w.scene.home().to_string(), w.scene.scope().to_string());
    let read = pod_action(&admin, "read", "list", true).await?;
    let token = prober(&w.scene.admin, w.scene.home(), w.scene.scope(), &read).await?;
    let bot = McpAgent::new(&w.standby.mcp_url(), &token, &https::webhook_ca(&admin).await?)?;
    let normal =
        json!({"parameters": {"alertId": "SOC-1"}, "target": {"kind": "Pod", "name": "web-1", "namespace": scope}});
    wait_for("baseline learned through the standby's gateway", Duration::from_secs(90), || async {
        let r = bot.call(&read, &normal, &[]).await?;
        anyhow::ensure!(r.out["isError"] == false, "a normal call failed: {} {}", r.out, r.err);
        let report: Option<socwarden_api::DriftReport> =
            Api::namespaced(admin.clone(), &home).get_opt("prober").await?;
        Ok(report.and_then(|r| r.status).and_then(|s| s.baseline).filter(|b| b.learned_at.is_some()))
    })
    .await?;
    // Probing: targets outside its scope, again and again, each refused by the standby's gateway.
    let probe = json!({"parameters": {"alertId": "SOC-2"}, "target": {"kind": "Pod", "name": "etcd", "namespace": "kube-system"}});
    let started = std::time::Instant::now();
    let refused = probe_over_mcp(&bot, &read, &probe, 8).await?;
    let paused = wait_agent(&admin, &home, "prober", "paused for drift", T, paused_for_drift).await?;
    println!("contained after {refused} refused probes, {:?} after the first", started.elapsed());
    let msg = condition(&paused, "Paused").unwrap().message;
    assert!(msg.contains("outOfScope"), "{msg}");
    let sent = metric(&w.standby.metrics().await?, "socwarden_peer_calls_total", &[("result", "forwarded")]);
    assert!(sent.unwrap_or(0.0) >= 1.0, "the standby sent the refusals to the leader: {sent:?}");
    let r = bot.call(&read, &normal, &[]).await?;
    assert!(r.code == 2 || r.code == 3, "contained: refused at the gateway; {} {}", r.code, r.err);
    Ok(())
}

/// The leader dies in the middle of a probing burst whose audit batches reach the standby: the
/// standby, which judged them too, takes the lease and contains within the lease + 2 s.
#[tokio::test]
async fn the_leader_killed_during_a_probing_burst_the_successor_contains() -> Result<()> {
    let mut w = two("lead-k", "standby-k").await?;
    let (admin, home, scope) = (w.scene.admin.clone(), w.scene.home().to_string(), w.scene.scope().to_string());
    let read = pod_action(&admin, "read", "list", false).await?;
    let bot = with_token(&prober(&w.scene.admin, w.scene.home(), w.scene.scope(), &read).await?).await?;
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "prober".into(), read.clone(), 5);
    wait_report(&admin, &home, "prober", "baseline learned", Duration::from_secs(60), |r| {
        r.baseline.as_ref().is_some_and(|b| b.learned_at.is_some())
    })
    .await?;
    // Probing beyond its grants (reading Secrets in its scope); the leader dies after the third.
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(bot.clone(), &scope);
    let mut killed = None;
    for i in 0..10 {
        let _ = secrets.get("db-credentials").await;
        if i == 2 {
            w.leader.kill();
            killed = Some(std::time::Instant::now());
        }
    }
    let killed = killed.expect("killed");
    wait_agent(&admin, &home, "prober", "paused for drift", Duration::from_secs(LEASE + 20), paused_for_drift).await?;
    let took = killed.elapsed();
    normal.stop().await;
    println!("contained {took:?} after the leader was killed (lease {LEASE} s)");
    assert_eq!(holder(&admin).await?.as_deref(), Some("standby-k"));
    assert!(took <= Duration::from_secs(LEASE + 2), "contained {took:?} after the kill: more than the lease + 2 s");
    Ok(())
}
