//! Agents sharded over three replicas (issue 30 §2): each shard's Lease is held by the replica the
//! rendezvous hash prefers, each agent is reconciled by its shard's holder alone, an unrecorded
//! write that reaches a replica holding another shard contains at the first one, and a dead
//! replica's shards are held again within the lease + 2 s, their agents served by the new holder.
//! Written as the adversary: the agents act with the tokens the operator issued them.

use anyhow::{Result, anyhow};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams};
use soc_warden::shard::{MEMBER_LABEL, lease_name, preferred, shard_of};
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(40);
const LEASE: u64 = 6;
const SHARDS: usize = 3;

/// A name in `namespace` whose agent falls in `shard`.
fn agent_in(namespace: &str, prefix: &str, shard: usize) -> String {
    (0..).map(|i| format!("{prefix}-{i}")).find(|n| shard_of(namespace, n, SHARDS) == shard).expect("a name")
}

async fn start(name: &str, audit: bool) -> Result<Operator> {
    let peer = format!("127.0.0.1:{}", free_port());
    let lease = format!("{LEASE}s");
    let args = [
        "--leader-elect",
        "--identity",
        name,
        "--lease-duration",
        &lease,
        "--peer-addr",
        &peer,
        "--shards",
        "3",
        "--webhook-repair-interval",
        "3s",
    ];
    Operator::start_opts(&args, audit).await
}

/// The agent `name` (Supervised, allowed to delete pods in the scope) is Ready; its token.
async fn ready_agent(scene: &Scene, name: &str, delete: &str) -> Result<Client> {
    let (admin, home) = (scene.admin.clone(), scene.home().to_string());
    let mut a = agent(name, &home, Tier::Supervised, &[delete], &[scene.scope()]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    // On the host each replica registers the admission webhook at its own port (the chart's
    // Service fronts them all): after a kill, the dead one's registration stands until another
    // replica writes its own again.
    let agents = Api::<SocAgent>::namespaced(admin.clone(), &home);
    wait_for(&format!("{name} admitted"), Duration::from_secs(60), || async { Ok(apply(&agents, &a).await.ok()) })
        .await?;
    wait_agent(&admin, &home, name, "Ready", T, ready).await?;
    with_token(&agent_token(&admin, &home, name).await?.ok_or_else(|| anyhow!("{name} has no token"))?).await
}

/// Deletes pods as `bot` until refused; the agent must be paused for drift with the first delete
/// named, before the last victim.
async fn contained_at_the_first(scene: &Scene, name: &str, bot: &Client, tag: &str) -> Result<()> {
    let (admin, home, scope) = (scene.admin.clone(), scene.home().to_string(), scene.scope().to_string());
    let victims: Vec<String> = (0..20).map(|i| format!("{tag}-{i}")).collect();
    victim_pods(&admin, &scope, &victims).await?;
    let through = delete_until_refused(bot, &scope, &victims).await;
    let paused = wait_agent(&admin, &home, name, "paused for drift", T, paused_for_drift).await?;
    let msg = condition(&paused, "Paused").unwrap().message;
    assert!(msg.contains("unrecorded") && msg.contains(&format!("delete pods {scope}/{tag}-0")), "{name}: {msg}");
    println!("{name}: {through} of {} deletes got through before containment", victims.len());
    assert!(through < victims.len(), "{name}: all {through} deletes got through");
    Ok(())
}

#[tokio::test]
async fn three_replicas_share_the_agents_by_shard_and_a_dead_replicas_shards_are_taken_over() -> Result<()> {
    let scene = Scene::audited().await?;
    let admin = scene.admin.clone();
    ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
    // Leases left by an earlier run must not delay this one.
    let leases = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    for k in 0..SHARDS {
        let _ = leases.delete(&lease_name(k, SHARDS), &Default::default()).await;
    }
    for l in leases.list(&ListParams::default().labels(&format!("{MEMBER_LABEL}=true"))).await? {
        let _ = leases.delete(&l.metadata.name.unwrap_or_default(), &Default::default()).await;
    }
    let names = ["shard-a", "shard-b", "shard-c"].map(String::from);
    // The third replica holds the port the API server's audit webhook posts to: every audit batch
    // reaches it, whichever shard its agent is in.
    let mut replicas = [start(&names[0], false).await?, start(&names[1], false).await?, start(&names[2], true).await?];
    let wanted: BTreeMap<usize, String> =
        (0..SHARDS).map(|k| (k, preferred(k, SHARDS, names.iter().map(String::as_str)).unwrap().to_string())).collect();
    // Three shards over three replicas: one each (no replica holds more than its share).
    assert_eq!(wanted.values().collect::<std::collections::BTreeSet<_>>().len(), 3, "{wanted:?}");
    let started = Instant::now();
    wait_for("each shard held by its preferred replica", T, || async {
        Ok((shard_holders(&admin, SHARDS).await? == wanted).then_some(()))
    })
    .await?;
    println!("three shards over three replicas {:?} after the last start: {wanted:?}", started.elapsed());
    let index = |identity: &str| names.iter().position(|n| n == identity).expect("a replica");

    // One agent per shard, each reconciled (issued a token) by its shard's holder alone: the
    // expiry of an agent's token is exported by that replica only.
    let delete = pod_action(&admin, "delete-pod", "get, list, delete", false).await?;
    let home = scene.home().to_string();
    let agents: Vec<String> = (0..SHARDS).map(|k| agent_in(&home, "agent", k)).collect();
    let mut bots = Vec::new();
    for a in &agents {
        bots.push(ready_agent(&scene, a, &delete).await?);
    }
    for (k, a) in agents.iter().enumerate() {
        let owner = index(&wanted[&k]);
        wait_for(&format!("{a}'s token expiry exported by its holder alone"), T, || async {
            let mut exporting = Vec::new();
            for (i, r) in replicas.iter().enumerate() {
                let m = metric(&r.metrics().await?, "socwarden_credential_expiry_timestamp_seconds", &[("agent", a)]);
                if m.is_some() {
                    exporting.push(i);
                }
            }
            Ok((exporting == vec![owner]).then_some(()))
        })
        .await?;
    }

    // An unrecorded write by an agent whose shard the audit replica does not hold: the batch
    // reaches the audit replica, which relays it; the holder contains at the first delete.
    let k = (0..SHARDS).find(|k| wanted[k] != names[2]).expect("a shard not held by the audit replica");
    let holder = index(&wanted[&k]);
    contained_at_the_first(&scene, &agents[k], &bots[k], "first").await?;
    let sent = metric(&replicas[2].metrics().await?, "socwarden_peer_calls_total", &[("result", "forwarded")]);
    let taken = metric(&replicas[holder].metrics().await?, "socwarden_peer_calls_total", &[("result", "received")]);
    assert!(sent.unwrap_or(0.0) >= 1.0 && taken.unwrap_or(0.0) >= 1.0, "forwarded {sent:?}, received {taken:?}");

    // That holder dies. Its shard is held again within the lease + 2 s by a live replica.
    let dead = names[holder].clone();
    replicas[holder].kill();
    let killed = Instant::now();
    let lost: Vec<usize> = wanted.iter().filter(|(_, h)| **h == dead).map(|(k, _)| *k).collect();
    let after = wait_for("the dead replica's shards held again", T, || async {
        let now = shard_holders(&admin, SHARDS).await?;
        Ok(lost.iter().all(|k| now.get(k).is_some_and(|h| *h != dead)).then(|| now.clone()))
    })
    .await?;
    let took = killed.elapsed();
    println!("shards {lost:?} of {dead} held again {took:?} after the kill (lease {LEASE} s): {after:?}");
    assert!(took <= Duration::from_secs(LEASE + 2), "taken over {took:?} after the kill: more than the lease + 2 s");

    // The new holder serves the shard: a new agent in it is issued its token, and its unrecorded
    // write (reaching the audit replica) contains at the first one.
    let newcomer = agent_in(&home, "late", k);
    let bot = ready_agent(&scene, &newcomer, &delete).await?;
    contained_at_the_first(&scene, &newcomer, &bot, "second").await?;
    // Meanwhile the two left settle on their own assignment (not the one over three: a shard may
    // move between them, unheld for a third of a lease while it is handed over).
    let live: Vec<&str> = names.iter().filter(|n| **n != dead).map(String::as_str).collect();
    let two: BTreeMap<usize, String> =
        (0..SHARDS).map(|k| (k, preferred(k, SHARDS, live.iter().copied()).unwrap().to_string())).collect();
    wait_for("each shard held by its preferred live replica", T, || async {
        Ok((shard_holders(&admin, SHARDS).await? == two).then_some(()))
    })
    .await?;
    println!("each shard held by its preferred live replica {:?} after the kill: {two:?}", killed.elapsed());

    // The agents of the other shards stayed Ready, also one whose shard moved between the two.
    for (j, a) in agents.iter().enumerate().filter(|(j, _)| *j != k) {
        let got = Api::<SocAgent>::namespaced(admin.clone(), &home).get(a).await?;
        assert!(ready(&got), "{a} (shard {j}) still Ready: {:?}", got.status);
    }

    // A replica stopped (SIGTERM, as a rollout stops a pod) frees its shards as it goes: the
    // others hold them well within a lease, and its membership Lease is gone.
    let now = shard_holders(&admin, SHARDS).await?;
    let holding = |i: usize| now.values().any(|h| *h == names[i]);
    let leaving = (0..3).filter(|i| *i != holder && holding(*i)).min_by_key(|i| *i == 2).expect("a live holder");
    let gone = names[leaving].clone();
    let freed: Vec<usize> = now.iter().filter(|(_, h)| **h == gone).map(|(k, _)| *k).collect();
    assert!(!freed.is_empty());
    replicas[leaving].signal("TERM")?;
    let stopped = Instant::now();
    wait_for(&format!("{gone}'s shards {freed:?} held by the others"), T, || async {
        let h = shard_holders(&admin, SHARDS).await?;
        Ok(freed.iter().all(|k| h.get(k).is_some_and(|p| *p != gone)).then_some(()))
    })
    .await?;
    let took = stopped.elapsed();
    println!("{gone} stopped: shards {freed:?} held by the others {took:?} later");
    // Freed, not run out: within half a lease (measured 0.9 s; a Lease left to run out takes the
    // rest of the lease, up to 6 s, plus the attempt after it).
    assert!(took < Duration::from_secs(LEASE / 2), "handed over in {took:?}: not freed as it stopped");
    let member = leases.get_opt(&soc_warden::shard::member_name(&gone)).await?;
    assert!(member.is_none(), "{gone}'s membership Lease removed: {member:?}");
    Ok(())
}
