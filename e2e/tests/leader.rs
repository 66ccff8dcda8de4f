//! Two replicas with leader election: only the leader acts; killing it hands over within the lease
//! duration plus 2 s, and nothing it executed is executed again.

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, ExecutionState, SocAgent, Tier};
use std::time::{Duration, Instant};

const LEASE: u64 = 6;

fn replica(name: &str) -> Vec<String> {
    ["--leader-elect", "--identity", name, "--lease-duration", &format!("{LEASE}s"), "--webhook-repair-interval", "1s"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

async fn holder(admin: &kube::Client) -> Result<Option<String>> {
    let l = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get_opt(soc_warden::leader::LEASE).await?;
    Ok(l.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

async fn executed(admin: &kube::Client, ns: &str, name: &str) -> Result<ActionRequest> {
    let api: Api<ActionRequest> = Api::namespaced(admin.clone(), ns);
    wait_for(&format!("{name} executed"), Duration::from_secs(30), || async {
        let r = api.get(name).await?;
        let done = r.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.state)
            == Some(ExecutionState::Succeeded);
        Ok(done.then_some(r))
    })
    .await
}

/// Two replicas with leader election: `a` leads, `b` stands by; an agent `bot` (supervised) that
/// may run a low-risk action writing NetworkPolicy `note-<n>` in its home.
struct Pair {
    admin: kube::Client,
    _ns: Namespaces,
    home: String,
    a: Operator,
    b: Operator,
    /// The agent's own client for its requests, and its token.
    requests: Api<ActionRequest>,
    token: Option<String>,
    action: String,
}

impl Pair {
    async fn start(a: &str, b: &str) -> Result<Self> {
        let admin = admin().await?;
        install_crds(&admin).await?;
        default_policy(&admin).await?;
        ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
        // A lease left by an earlier run must not delay this one.
        let _ = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
            .delete(soc_warden::leader::LEASE, &Default::default())
            .await;
        let ns = Namespaces::create(&admin, &["home"]).await?;
        let home = ns.get(0).to_string();
        let action = unique("note");
        apply_yaml(
            &admin,
            &format!(
                "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {action}}}\nspec:\n  risk: low\n  parameters: [{{name: n, type: string, required: true, pattern: \"[0-9]+\"}}]\n  execution:\n    manifest: |\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata: {{name: \"note-${{n}}\", annotations: {{request: \"${{request.name}}\"}}}}\n      spec: {{podSelector: {{matchLabels: {{note: \"${{n}}\"}}}}, policyTypes: [Ingress]}}\n"
            ),
        )
        .await?;
        let a_args = replica(a);
        let a_op = Operator::start_opts(&a_args.iter().map(String::as_str).collect::<Vec<_>>(), true).await?;
        wait_for(&format!("{a} leads"), Duration::from_secs(30), || async {
            Ok(holder(&admin).await?.filter(|h| h == a))
        })
        .await?;
        let b_args = replica(b);
        let b_op = Operator::start_opts(&b_args.iter().map(String::as_str).collect::<Vec<_>>(), false).await?;
        let agents: Api<SocAgent> = Api::namespaced(admin.clone(), &home);
        apply(&agents, &agent("bot", &home, Tier::Supervised, &[&action], &[&home])).await?;
        wait_agent(&admin, &home, "bot", "Ready", Duration::from_secs(30), ready).await?;
        let token = agent_token(&admin, &home, "bot").await?;
        // The agent files its own requests (what someone else files waits for approval).
        let bot = with_token(token.as_deref().expect("a token")).await?;
        let requests = Api::namespaced(bot, &home);
        Ok(Self { admin, _ns: ns, home, a: a_op, b: b_op, requests, token, action })
    }

    fn request(&self, name: &str, n: &str) -> ActionRequest {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"agent": "bot", "action": self.action, "parameters": {"n": n}, "target": {"kind": "NetworkPolicy", "name": format!("note-{n}"), "namespace": self.home}}}))
        .unwrap()
    }

    /// The decision log's `Executed` lines for requests of this pair's namespace.
    fn executions(&self) -> Result<Vec<Value>> {
        Ok(std::fs::read_to_string(decision_log())?
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["namespace"] == self.home.as_str() && v["decision"] == "Executed")
            .collect())
    }
}

#[tokio::test]
async fn the_standby_takes_over_within_the_lease_and_nothing_runs_twice() -> Result<()> {
    let mut p = Pair::start("replica-a", "replica-b").await?;
    let (admin, home) = (p.admin.clone(), p.home.clone());
    p.requests.create(&PostParams::default(), &p.request("r1", "1")).await?;
    assert_eq!(executed(&admin, &home, "r1").await?.status.unwrap().decision, Some(Decision::AutoApproved));
    // The leader writes the decision line just after the status: let it, before it dies (a leader
    // killed in between loses that line; the status has it).
    wait_for("r1's Executed line", Duration::from_secs(10), || async {
        Ok((p.executions()?.iter().filter(|v| v["request"] == "r1").count() == 1).then_some(()))
    })
    .await?;
    let standby_log = std::fs::read_to_string(&p.b.log)?;
    assert!(
        standby_log.contains("standing by for the leader lease") && !standby_log.contains("execution finished"),
        "the standby did not act"
    );

    // The leader dies without a word.
    p.a.kill();
    let t0 = Instant::now();
    wait_for("replica-b leads", Duration::from_secs(LEASE + 10), || async {
        Ok(holder(&admin).await?.filter(|h| h == "replica-b"))
    })
    .await?;
    let took = t0.elapsed();
    eprintln!("takeover after {took:?} (lease {LEASE}s)");
    assert!(took <= Duration::from_secs(LEASE + 2), "takeover took {took:?}, more than the lease duration plus 2 s");

    // The new leader acts …
    p.requests.create(&PostParams::default(), &p.request("r2", "2")).await?;
    executed(&admin, &home, "r2").await?;
    // … and repeats nothing: r1 executed once, its NetworkPolicy written once, the token kept.
    let lines: Vec<Value> = p.executions()?.into_iter().filter(|v| v["request"] == "r1").collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let np = Api::<NetworkPolicy>::namespaced(admin.clone(), &home).get("note-1").await?;
    assert_eq!(np.metadata.managed_fields.map(|m| m.len()), Some(1));
    assert_eq!(agent_token(&admin, &home, "bot").await?, p.token);
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/readyz", p.b.metrics_port)).await?;
    assert_eq!(code, 200);
    Ok(())
}

/// A leader whose process is stopped (SIGSTOP) while it decides and executes, then resumed after
/// its lease expired and the standby took over: it does nothing more — it executes nothing a
/// second time and writes no decision over the new leader's — and it stands by (it does not exit).
#[tokio::test]
async fn a_leader_stopped_past_its_lease_acts_no_more_when_it_wakes() -> Result<()> {
    let mut p = Pair::start("stalled-a", "standby-b").await?;
    let (admin, home) = (p.admin.clone(), p.home.clone());
    // A burst, and the leader frozen in the middle of it.
    let burst = 12;
    futures::future::try_join_all((0..burst).map(|n| {
        let (requests, r) = (p.requests.clone(), p.request(&format!("s{n}"), &n.to_string()));
        async move { requests.create(&PostParams::default(), &r).await }
    }))
    .await?;
    p.a.signal("STOP")?;
    wait_for("standby-b leads", Duration::from_secs(LEASE + 10), || async {
        Ok(holder(&admin).await?.filter(|h| h == "standby-b"))
    })
    .await?;
    for n in 0..burst {
        executed(&admin, &home, &format!("s{n}")).await?;
    }
    // Woken after the lease expired: it must do nothing more, and stand by (not exit: a lease lost
    // to an unreachable API server would otherwise crash-loop every replica at once).
    p.a.signal("CONT")?;
    let log = &p.a.log;
    wait_for("the stalled leader stands by", Duration::from_secs(LEASE + 5), || async move {
        let text = std::fs::read_to_string(log)?;
        Ok(text.contains("lost the leader lease: no longer acting").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!p.a.exited(), "the stalled leader stands by; it does not exit");
    assert_eq!(holder(&admin).await?.as_deref(), Some("standby-b"), "the lease stays with standby-b");
    let executions = p.executions()?;
    for n in 0..burst {
        let name = format!("s{n}");
        let times = executions.iter().filter(|v| v["request"] == name.as_str()).count();
        assert_eq!(times, 1, "{name} executed {times} times: {executions:?}");
    }
    Ok(())
}
