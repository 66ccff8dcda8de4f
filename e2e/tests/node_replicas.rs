//! Two replicas, one truth, in the topology the chart ships (issue 30 §3): the chart's pods on the
//! node, the API server's audit webhook reaching them through the chart's audit Service (a node
//! port kube-proxy balances at random over the pods, e2e/node-values.yaml), a real Prometheus on
//! the host scraping both pods, and replicas killed as a crash kills them. Every test here is named
//! `on_the_node_…`: e2e/test runs them on the node cluster.

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use soc_warden_e2e::node::*;
use soc_warden_e2e::prometheus::Prometheus;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, SocAgent, Tier};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

/// An operator pod's /metrics, read from the host (which routes the pods' subnet to the node).
async fn pod_metrics(p: &Pod) -> Result<String> {
    let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).ok_or_else(|| anyhow!("{} has no IP", p.name_any()))?;
    let (code, body) = http_get(&format!("http://{ip}:8080/metrics")).await?;
    anyhow::ensure!(code == 200, "{}: /metrics answered {code}", p.name_any());
    Ok(body)
}

/// Forgets the node's connection tracking for the audit node port: the API server's next batch
/// is balanced anew, as a new connection would be (its keep-alive connection would otherwise
/// send every batch to the one pod it first reached).
fn rebalance_audit() -> Result<()> {
    let env = node_env()?;
    // The port `e2e/cluster up --node` pointed the audit webhook at (the chart's audit node port).
    let url: http::Uri = env["AUDIT_URL"].parse()?;
    let port = url.port_u16().ok_or_else(|| anyhow!("no port in AUDIT_URL {url}"))?.to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &env["NODE_NETNS"], "conntrack", "-D", "-p", "tcp", "--orig-port-dst", &port])
        .output()?;
    // conntrack exits 1 when no entry matched (no batch since the last time): nothing to forget.
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("0 flow entries") {
        bail!("conntrack: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The operator pods Prometheus scrapes successfully now (`up == 1`), by the `pod` label.
async fn scraped(prom: &Prometheus) -> Result<BTreeSet<String>> {
    let up = prom.query("up{job=\"soc-warden\"} == 1").await?;
    Ok(up.iter().filter_map(|s| s["metric"]["pod"].as_str().map(String::from)).collect())
}

/// Aborts a background task when dropped (a test that fails stops it too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What each pod counted: calls the API server sent it (`kept`) and calls it sent the leader.
async fn counts(pods: &[Pod]) -> Result<BTreeMap<String, (f64, f64)>> {
    let mut out = BTreeMap::new();
    for p in pods {
        let m = pod_metrics(p).await?;
        let kept = metric(&m, "socwarden_audit_events_total", &[("result", "kept")]).unwrap_or(0.0);
        let sent = metric(&m, "socwarden_peer_calls_total", &[("result", "forwarded")]).unwrap_or(0.0);
        out.insert(p.name_any(), (kept, sent));
    }
    Ok(out)
}

/// The API server's audit webhook posts to the chart's audit Service; whichever pod a batch
/// reaches, an agent's unrecorded write contains it at the first one. Rounds go on (each a new
/// agent, the balancing redrawn) until both the leader and the standby have received a round's
/// batch.
#[tokio::test]
async fn on_the_node_an_unrecorded_write_contains_at_the_first_one_whichever_pod_the_service_sent_it_to() -> Result<()>
{
    let admin = admin().await?;
    let pods = install(&admin).await?;
    let leader = leader_among(&admin, &pods.iter().map(|p| p.name_any()).collect()).await?;
    let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
    let (home, scope) = (ns.get(0).to_string(), ns.get(1).to_string());
    let delete = pod_action(&admin, "delete-pod", "get, list, delete", false).await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), &home);
    let mut received_by: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..10 {
        if received_by.len() == 2 {
            break;
        }
        let name = format!("rogue-{round}");
        let mut a = agent(&name, &home, Tier::Supervised, &[&delete], &[&scope]);
        a.spec.approvers.groups = vec!["soc-leads".into()];
        apply(&agents, &a).await?;
        wait_agent(&admin, &home, &name, "Ready", T, ready).await?;
        let bot = with_token(&agent_token(&admin, &home, &name).await?.expect("a token")).await?;
        let victims: Vec<String> = (0..10).map(|i| format!("v{round}-{i}")).collect();
        victim_pods(&admin, &scope, &victims).await?;

        // A new draw of the Service's balancing, settled by a harmless call of the agent's own
        // (audited, a read in its grant) before the writes.
        rebalance_audit()?;
        let settled = counts(&pods).await?;
        Api::<Pod>::namespaced(bot.clone(), &scope).list(&ListParams::default()).await?;
        wait_for("the agent's read reaching a pod", T, || async {
            let now = counts(&pods).await?;
            Ok((now != settled).then_some(()))
        })
        .await?;
        let before = counts(&pods).await?;

        // In its grant, allowed by RBAC, never recorded.
        let through = delete_until_refused(&bot, &scope, &victims).await;
        let paused = wait_agent(&admin, &home, &name, "paused for drift", T, paused_for_drift).await?;
        let msg = condition(&paused, "Paused").unwrap().message;
        assert!(
            msg.contains("unrecorded") && msg.contains(&format!("delete pods {scope}/v{round}-0")),
            "round {round}: contained on the first delete: {msg}"
        );
        let after = counts(&pods).await?;
        let standby = pods.iter().map(|p| p.name_any()).find(|p| *p != leader).unwrap();
        let forwarded = after[&standby].1 - before[&standby].1;
        let got = if forwarded > 0.0 {
            standby.clone()
        } else if after[&leader].0 > before[&leader].0 {
            leader.clone()
        } else {
            bail!("round {round}: no pod counted the agent's deletes: before {before:?}, after {after:?}")
        };
        println!(
            "round {round}: the Service sent the batch to the {} ({got}); {through} of {} deletes got through before containment",
            if got == leader { "leader" } else { "standby" },
            victims.len()
        );
        assert!(through < victims.len(), "round {round}: contained before the end ({through} got through)");
        *received_by.entry(got).or_default() += 1;
    }
    assert_eq!(received_by.len(), 2, "both pods received a round's batch through the Service: {received_by:?}");
    Ok(())
}

/// Debian's Prometheus on the host, scraping both of the operator's pods as they are found through
/// the API server: SocWardenAgentPaused fires once
/// for a paused agent, and stays firing, once, across the leader's crash and the takeover.
#[tokio::test]
async fn on_the_node_prometheus_scrapes_both_pods_and_the_paused_alert_fires_once_across_a_leader_kill() -> Result<()> {
    let admin = admin().await?;
    let pods = install(&admin).await?;
    let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let old = leader_among(&admin, &names).await?;
    // Debian builds Prometheus without its Kubernetes discovery: the test discovers the operator's
    // pods as it would (their IPs, from the API server, every 500 ms) into a file_sd targets file.
    let targets = repo().join(format!("target/e2e-logs/{}.json", unique("operator-pods")));
    let discovery = {
        let (admin, targets) = (admin.clone(), targets.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = Api::<Pod>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
                    .list(&ListParams::default().labels("app.kubernetes.io/name=soc-warden"))
                    .await
                {
                    let groups: Vec<serde_json::Value> = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter_map(|p| {
                            let ip = p.status.as_ref()?.pod_ip.clone()?;
                            Some(json!({"targets": [format!("{ip}:8080")], "labels": {"pod": p.name_any()}}))
                        })
                        .collect();
                    let tmp = targets.with_extension("tmp");
                    if std::fs::write(&tmp, serde_json::to_vec(&groups).unwrap_or_default()).is_ok() {
                        let _ = std::fs::rename(&tmp, &targets);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let _discovery = AbortOnDrop(discovery);
    let prom = Prometheus::start_with(&format!(
        "file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]",
        targets.display()
    ))?;
    wait_for("prometheus scraping both operator pods", T, || async {
        Ok((scraped(&prom).await? == names).then_some(()))
    })
    .await?;

    let ns = Namespaces::create(&admin, &["watched"]).await?;
    let home = ns.get(0);
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let mut a = agent("watched", home, Tier::Supervised, &[], &[home]);
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "watched", "Ready", T, ready).await?;
    a.spec.paused = true;
    apply(&agents, &a).await?;
    let paused_alerts = |alerts: &[serde_json::Value]| -> Vec<serde_json::Value> {
        alerts
            .iter()
            .filter(|x| x["labels"]["alertname"] == "SocWardenAgentPaused" && x["labels"]["agent"] == "watched")
            .cloned()
            .collect()
    };
    let firing = wait_for("SocWardenAgentPaused firing", T, || async {
        let p = paused_alerts(&prom.alerts().await?);
        Ok((p.len() == 1 && p[0]["state"] == "firing").then_some(p))
    })
    .await?;
    let since = firing[0]["activeAt"].clone();
    // Both pods export the paused agent (a standby reads the same agents): still one alert. The
    // alert may fire on the first pod's scrape, before the second pod's next scrape carries it.
    wait_for("both pods exporting the paused agent", T, || async {
        let series = prom.query("socwarden_agent_paused{agent=\"watched\"}").await?;
        Ok((series.len() == 2).then_some(()))
    })
    .await?;
    let p = paused_alerts(&prom.alerts().await?);
    assert_eq!(p.len(), 1, "two pods export the paused agent, one alert fires: {p:?}");
    assert_eq!(p[0]["activeAt"], since, "the second pod's series did not start a new alert");

    // The leader crashes; the standby takes over. Every second meanwhile the alert is firing, once,
    // active since the same instant (an alert that resolved and fired again would start anew).
    crash(&admin, &old, operator_pid(&old)?).await?;
    let killed = Instant::now();
    let mut checks = 0;
    let mut took_over = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let p = paused_alerts(&prom.alerts().await?);
        assert_eq!(p.len(), 1, "{:?} after the kill: one alert, {p:?}", killed.elapsed());
        assert_eq!(p[0]["state"], "firing", "{:?} after the kill", killed.elapsed());
        assert_eq!(p[0]["activeAt"], since, "{:?} after the kill: the alert never resolved", killed.elapsed());
        checks += 1;
        if took_over.is_none() && leader(&admin).await.is_ok_and(|h| h != old) {
            took_over = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took_over = took_over.ok_or_else(|| anyhow!("no replica took over within 30 s"))?;
    println!(
        "SocWardenAgentPaused firing once at each of {checks} checks over 30 s; takeover {took_over:?} after the kill"
    );
    // A new pod replaced the dead one: Prometheus finds and scrapes it too.
    let now: BTreeSet<String> = operator_pods(&admin, 2).await?.iter().map(|p| p.name_any()).collect();
    wait_for("prometheus scraping the replacement pod", T, || async {
        Ok(now.is_subset(&scraped(&prom).await?).then_some(()))
    })
    .await?;
    let p = paused_alerts(&prom.alerts().await?);
    assert_eq!((p.len(), &p[0]["activeAt"]), (1, &since), "{p:?}");
    Ok(())
}

/// Three replicas; agents are being created and one of them files requests when the leader
/// crashes. Afterwards every agent holds exactly what it was granted (its token works in its scope,
/// one token Secret, no leftovers), and every request was decided once: one decision Event each,
/// and no decision rewritten.
#[tokio::test]
async fn on_the_node_killing_one_of_three_replicas_while_agents_are_issued_leaves_none_half_granted_and_decides_nothing_twice()
-> Result<()> {
    let admin = admin().await?;
    // Three replicas share nine shards (the chart's advice: several shards per replica).
    const SHARDS: usize = 9;
    let pods = install_n(&admin, 3, &["--set", "replicaCount=3", "--set", "leaderElection.shards=9"]).await?;
    let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    // Settled: each shard with the pod the assignment every replica computes gives it (three each).
    let assigned = soc_warden::shard::assignment(SHARDS, names.iter().map(String::as_str));
    let spread = wait_for("the nine shards held by the three pods, three each", T, || async {
        let h = shard_holders(&admin, SHARDS).await?;
        Ok((0..SHARDS).all(|k| h.get(&k).map(String::as_str) == assigned[k]).then_some(h))
    })
    .await?;
    let ns = Namespaces::create(&admin, &["fleet", "scope"]).await?;
    let (home, scope) = (ns.get(0).to_string(), ns.get(1).to_string());
    // The replica killed is the one that decides the filer's requests: the holder of its shard.
    let old = spread[&soc_warden::shard::shard_of(&home, "filer", SHARDS)].clone();
    let lost: Vec<usize> = spread.iter().filter(|(_, h)| **h == old).map(|(k, _)| *k).collect();
    let per: BTreeMap<&String, usize> = spread.values().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(h).or_default() += 1;
        m
    });
    println!("shards per replica: {per:?}; {old} holds {lost:?}");
    let read = unique("read-pods");
    apply(
        &Api::<socwarden_api::SocAction>::all(admin.clone()),
        &action(&read, socwarden_api::Risk::Low, "", "pods", &[socwarden_api::Verb::List]),
    )
    .await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), &home);
    apply(&agents, &agent("filer", &home, Tier::Supervised, &[&read], &[&scope])).await?;
    wait_agent(&admin, &home, "filer", "Ready", T, ready).await?;
    let filer = with_token(&agent_token(&admin, &home, "filer").await?.expect("a token")).await?;

    // The filer files a request every 100 ms throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let filing = {
        let (stop, filer, home, scope, read) = (stop.clone(), filer.clone(), home.clone(), scope.clone(), read.clone());
        tokio::spawn(async move {
            let mut filed = vec![];
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("r-{i}");
                if file(&filer, &home, &request(&name, "filer", &read, json!({}), &scope, "web")).await.is_ok() {
                    filed.push(name);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            filed
        })
    };
    // Agents created one after another (spread over the shards); the filer's holder is killed
    // after the fifth.
    let pid = operator_pid(&old)?;
    let fleet: Vec<String> = (0..20).map(|i| format!("agent-{i}")).collect();
    let mut killed = None;
    for (i, name) in fleet.iter().enumerate() {
        apply(&agents, &agent(name, &home, Tier::Supervised, &[&read], &[&scope])).await?;
        if i == 5 {
            crash(&admin, &old, pid).await?;
            killed = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = wait_for("the dead replica's shards held by the others", T, || async {
        let h = shard_holders(&admin, SHARDS).await?;
        Ok(lost.iter().all(|k| h.get(k).is_some_and(|p| *p != old)).then_some(h))
    })
    .await?;
    let took = killed.unwrap().elapsed();
    println!("shards {lost:?} held again {took:?} after the kill: {after:?}");
    // The chart's lease is 15 s; the replacement pod meanwhile may take some back (it is preferred
    // for them), which is a handover, not a gap.
    assert!(took <= Duration::from_secs(15 + 2), "taken over {took:?} after the kill: more than the lease + 2 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let filed = filing.await?;
    assert!(filed.len() >= 20, "the filer kept filing through the kill: {} requests", filed.len());

    // Every agent whole: Ready, its token lists pods in its scope, one token Secret.
    for name in &fleet {
        wait_agent(&admin, &home, name, "Ready after the takeover", T, ready).await?;
        let token = agent_token(&admin, &home, name).await?.ok_or_else(|| anyhow!("{name} has no token"))?;
        let bot = with_token(&token).await?;
        wait_code(&format!("{name}'s grant works"), 200, || list_pods(&bot, &scope)).await?;
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &home)
            .list(&ListParams::default().labels(&format!("socwarden.io/agent={name}")))
            .await?;
        assert_eq!(secrets.items.len(), 1, "{name}: one token Secret");
    }

    // Every request decided, once.
    let requests: Api<ActionRequest> = Api::namespaced(admin.clone(), &home);
    let mut first: BTreeMap<String, (Decision, Option<String>)> = BTreeMap::new();
    for name in &filed {
        let r = decided(&admin, &home, name).await?;
        let s = r.status.unwrap();
        first.insert(name.clone(), (s.decision.unwrap(), s.decided_at));
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), &home)
        .list(&ListParams::default())
        .await?;
    for name in &filed {
        let (decision, at) = &first[name];
        let about: Vec<_> = events
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
            .filter(|e| e.reason.as_deref() == Some(decision.as_str()))
            .collect();
        let count: i32 = about.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum();
        assert_eq!(count, 1, "{name}: one {} Event: {about:?}", decision.as_str());
        let again = requests.get(name).await?.status.unwrap();
        assert_eq!((&again.decision.unwrap(), &again.decided_at), (decision, at), "{name}");
    }
    let counts = filed.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, n| {
        *m.entry(first[n].0.as_str()).or_default() += 1;
        m
    });
    println!("{} requests filed through the kill, each decided once: {counts:?}", filed.len());
    // Back to the chart's two replicas for the tests after this one.
    install(&admin).await?;
    Ok(())
}

async fn wait_code(what: &str, want: u16, f: impl AsyncFn() -> u16) -> Result<()> {
    wait_for(what, T, || async { Ok((f().await == want).then_some(())) }).await
}

async fn list_pods(c: &Client, ns: &str) -> u16 {
    status_of(Api::<Pod>::namespaced(c.clone(), ns).list(&ListParams::default())).await
}

/// `kubectl port-forward` to one operator pod's port (killed when dropped): a client of that pod
/// alone, as the Service may send an agent to either.
struct Forward(std::process::Child, u16);

impl Forward {
    async fn to(pod: &str, port: u16) -> Result<Self> {
        let local = free_port();
        let child = Command::new(kubectl())
            .args(["--kubeconfig", &admin_kubeconfig().to_string_lossy(), "-n", OPERATOR_NAMESPACE, "port-forward"])
            .arg(format!("pod/{pod}"))
            .arg(format!("{local}:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let f = Forward(child, local);
        wait_for(&format!("port-forward to {pod}:{port}"), T, || async {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", local)).await.ok().map(|_| ()))
        })
        .await?;
        Ok(f)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An agent whose MCP client the Service sent to the standby pod: it learns its baseline there,
/// then probes beyond its scope; every refusal is the standby's, and the leader contains it.
#[tokio::test]
async fn on_the_node_a_probing_agent_the_standby_pod_serves_over_mcp_is_contained() -> Result<()> {
    let admin = admin().await?;
    let pods = install(&admin).await?;
    let leader = leader_among(&admin, &pods.iter().map(|p| p.name_any()).collect()).await?;
    let standby = pods.iter().find(|p| p.name_any() != leader).unwrap().clone();
    let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let read = pod_action(&admin, "read", "list", true).await?;
    let token = prober(&admin, home, scope, &read).await?;
    let gateway = Forward::to(&standby.name_any(), 9444).await?;
    let bot =
        McpAgent::new(&format!("https://127.0.0.1:{}/mcp", gateway.1), &token, &https::webhook_ca(&admin).await?)?;
    let normal =
        json!({"parameters": {"alertId": "SOC-1"}, "target": {"kind": "Pod", "name": "web-1", "namespace": scope}});
    wait_for("baseline learned through the standby's gateway", Duration::from_secs(90), || async {
        let r = bot.call(&read, &normal, &[]).await?;
        anyhow::ensure!(r.out["isError"] == false, "a normal call failed: {} {}", r.out, r.err);
        let report: Option<socwarden_api::DriftReport> = Api::namespaced(admin.clone(), home).get_opt("prober").await?;
        Ok(report.and_then(|r| r.status).and_then(|s| s.baseline).filter(|b| b.learned_at.is_some()))
    })
    .await?;
    let sent_before =
        metric(&pod_metrics(&standby).await?, "socwarden_peer_calls_total", &[("result", "forwarded")]).unwrap_or(0.0);
    let probe = json!({"parameters": {"alertId": "SOC-2"}, "target": {"kind": "Pod", "name": "etcd", "namespace": "kube-system"}});
    let started = Instant::now();
    let refused = probe_over_mcp(&bot, &read, &probe, 8).await?;
    let paused = wait_agent(&admin, home, "prober", "paused for drift", T, paused_for_drift).await?;
    let took = started.elapsed();
    println!("contained after {refused} refused probes at the standby pod, {took:?} after the first");
    assert!(condition(&paused, "Paused").unwrap().message.contains("outOfScope"));
    let sent =
        metric(&pod_metrics(&standby).await?, "socwarden_peer_calls_total", &[("result", "forwarded")]).unwrap_or(0.0);
    assert!(sent > sent_before, "the standby pod sent the refusals to the leader ({sent_before} -> {sent})");
    // kubectl port-forward gives up on a connection the pod reset: a fresh one to the same pod.
    drop(gateway);
    let gateway = Forward::to(&standby.name_any(), 9444).await?;
    let bot =
        McpAgent::new(&format!("https://127.0.0.1:{}/mcp", gateway.1), &token, &https::webhook_ca(&admin).await?)?;
    let r = bot.call(&read, &normal, &[]).await?;
    assert!(r.code == 2 || r.code == 3, "contained: refused at the gateway; {} {}", r.code, r.err);
    Ok(())
}

/// The leader pod is SIGKILLed in the middle of an agent's probing (reads of Secrets beyond its
/// grant, whose audit batches the Service balances over the pods); the agent goes on probing, as
/// an adversary does. The successor contains it within the lease + 2 s of the kill.
#[tokio::test]
async fn on_the_node_the_leader_killed_during_a_probing_burst_the_successor_contains_within_the_lease_plus_2s()
-> Result<()> {
    let admin = admin().await?;
    const LEASE: u64 = 8;
    let pods = install_with(&admin, &["--set", &format!("leaderElection.leaseDuration={LEASE}s")]).await?;
    let old = leader_among(&admin, &pods.iter().map(|p| p.name_any()).collect()).await?;
    let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
    let (home, scope) = (ns.get(0).to_string(), ns.get(1).to_string());
    // Its requests filed through the API server as a plain client (no parameters).
    let plain = pod_action(&admin, "read", "list", false).await?;
    let bot = with_token(&prober(&admin, &home, &scope, &plain).await?).await?;
    let normal = Normal::start(bot.clone(), home.clone(), scope.clone(), "prober".into(), plain.clone(), 5);
    wait_report(&admin, &home, "prober", "baseline learned", Duration::from_secs(90), |r| {
        r.baseline.as_ref().is_some_and(|b| b.learned_at.is_some())
    })
    .await?;
    let pid = operator_pid(&old)?;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(bot.clone(), &scope);
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), &home);
    let mut killed = None;
    let mut probes = 0;
    let contained = loop {
        let _ = secrets.get("db-credentials").await;
        probes += 1;
        if probes == 3 {
            killed = Some(Instant::now());
            crash(&admin, &old, pid).await?;
        }
        if paused_for_drift(&agents.get("prober").await?) {
            break killed.map(|k| k.elapsed());
        }
        if killed.is_some_and(|k| k.elapsed() > Duration::from_secs(LEASE + 20)) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    normal.stop().await;
    let took = contained.ok_or_else(|| anyhow!("not contained within the lease + 20 s of the kill"))?;
    let new = leader(&admin).await?;
    println!(
        "{new} contained the prober {took:?} after the leader {old} was killed (lease {LEASE} s, {probes} probes)"
    );
    assert_ne!(new, old);
    assert!(took <= Duration::from_secs(LEASE + 2), "contained {took:?} after the kill: more than the lease + 2 s");
    // Back to the chart's values for the tests after this one.
    install(&admin).await?;
    Ok(())
}
