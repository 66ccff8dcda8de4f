//! Requests benchmark: the operator's memory with 1,000 agents and 10,000 ActionRequests in its
//! caches (target <= 96 MiB), next to the floor measured in the same run — the same operator with
//! the same 1,000 agents and no requests — and a burst of 400 requests filed at once by one agent
//! under the default quota (how many are accepted, and whether the operator stays ready).
//!
//!   bench-requests [--agents 1000] [--requests 10000] [--burst 400] [--concurrency 32]
//!
//! The 10,000 requests are filed by a person on the agents' behalf, so they all wait for approval:
//! the worst case for the caches (nothing decided, nothing deleted by retention).
//! Run with `e2e/bench` (release build, local control plane or KUBECONFIG).

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, Risk, SocAction, SocAgent, Tier, Verb};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn request(name: &str, agent: &str, action: &str, ns: &str) -> Result<ActionRequest> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "ActionRequest", "metadata": {"name": name},
        "spec": {"agent": agent, "action": action, "target": {"kind": "Pod", "name": "web-1", "namespace": ns},
                 "justification": "alert SOC-1 shows beaconing"}
    }))?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let (n_agents, n_requests, burst, conc) =
        (arg("--agents", 1000), arg("--requests", 10000), arg("--burst", 400), arg("--concurrency", 32));
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    // The people's RBAC: lead-a files the requests.
    apply_yaml(&client, &std::fs::read_to_string(repo().join("examples/05-people.yaml"))?).await?;
    let ns = Namespaces::create(&client, &["bench-req"]).await?;
    let home = ns.get(0).to_string();
    let read = unique("bench-read");
    apply(&Api::<SocAction>::all(client.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start_with(&["--concurrency", &conc.to_string()]).await?;
    let pid = op.pid().context("operator pid")?;
    let run = unique("req");
    let label = format!("bench-run={run}");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &home);
    create_agents(&agents, &run, 0..n_agents, conc, |i| {
        let mut a = agent(&format!("agent-{i:05}"), &home, Tier::Supervised, &[&read], &[&home]);
        a.spec.approvers.groups = vec!["soc-leads".into()];
        a
    })
    .await?;
    let t = wait_all_agents(&client, &label, n_agents, ready, Duration::from_secs(900)).await?;
    println!("{n_agents} agents Ready in {:.1}s", t.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let floor = rss_mib(pid).context("RSS")?;
    println!("floor: operator RSS with {n_agents} agents and no requests: {floor:.1} MiB");

    // 10,000 requests, filed by a lead on the agents' behalf: every one waits for approval.
    let lead = as_user("lead-a").await?;
    let requests: Api<ActionRequest> = Api::namespaced(lead, &home);
    let start = Instant::now();
    stream::iter(0..n_requests)
        .map(|i| {
            let (requests, read, home) = (requests.clone(), read.clone(), home.clone());
            async move {
                let r = request(&format!("req-{i:05}"), &format!("agent-{:05}", i % n_agents), &read, &home)?;
                requests.create(&PostParams::default(), &r).await.map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await?;
    println!("{n_requests} requests filed in {:.1}s", start.elapsed().as_secs_f64());
    let all: Api<ActionRequest> = Api::namespaced(client.clone(), &home);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let list = all.list_metadata(&ListParams::default()).await?.items.len();
        let pending = all
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.decision) == Some(Decision::Pending))
            .count();
        if pending >= n_requests || Instant::now() > deadline {
            println!(
                "{pending} of {list} requests Pending {:.1}s after the first was filed",
                start.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = rss_mib(pid).context("RSS")?;
    let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "operator RSS with {n_agents} agents and {n_requests} requests: {rss:.1} MiB steady, {peak:.1} MiB peak (target <= 96 MiB); ratio to the floor {:.2}; {:.1} KiB per request",
        rss / floor,
        (rss - floor) * 1024.0 / n_requests as f64
    );

    // A burst from one agent, with its own token, under the default quota.
    let burster = "agent-00000";
    let token = agent_token(&client, &home, burster).await?.context("agent token")?;
    let filer: Api<ActionRequest> = Api::namespaced(with_token(&token).await?, &home);
    let start = Instant::now();
    let outcomes = futures::future::join_all((0..burst).map(|i| {
        let (filer, read, home) = (filer.clone(), read.clone(), home.clone());
        async move {
            filer
                .create(&PostParams::default(), &request(&format!("burst-{i:04}"), burster, &read, &home)?)
                .await
                .map_err(anyhow::Error::from)
        }
    }))
    .await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let quota = outcomes
        .iter()
        .filter(|o| o.as_ref().err().is_some_and(|e| format!("{e:#}").contains("spec.requests.max")))
        .count();
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/readyz", op.metrics_port)).await?;
    println!(
        "burst of {burst} requests from one agent in {:.1}s: {accepted} accepted, {quota} refused by the quota, {} other errors; operator /readyz {code}",
        start.elapsed().as_secs_f64(),
        burst - accepted - quota
    );
    Ok(())
}
