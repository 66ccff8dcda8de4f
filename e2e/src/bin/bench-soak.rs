//! Soak benchmark (issue 12): 1,000 agents under steady traffic for 20 minutes — agents listing pods
//! with their own tokens (audit events to the sink) and filing requests the gate decides — while the
//! operator's resident memory, open file descriptors and threads are sampled every 30 s. After the
//! warm-up, nothing should grow: RSS by less than 5%, descriptors and threads not at all (beyond
//! noise). Not in the default test run (`e2e/bench --soak` runs it).
//!
//!   bench-soak [--agents 1000] [--active 50] [--minutes 20] [--warmup 3 (minutes)]

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Risk, SocAction, SocAgent, Tier, Verb};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// One active agent: lists pods in scope every ~2 s, files a `read` request every ~60 s.
fn traffic(bot: kube::Client, home: String, agent: String, read: String, stop: Arc<AtomicBool>, calls: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut x = agent.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into())) | 1;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tokio::time::sleep(Duration::from_millis(1500 + x % 1000)).await;
            let _ = Api::<Pod>::namespaced(bot.clone(), &home).list(&ListParams::default()).await;
            calls.fetch_add(1, Ordering::Relaxed);
            i += 1;
            if i.is_multiple_of(30) {
                let r: ActionRequest = serde_json::from_value(json!({
                    "metadata": {"name": format!("soak-{agent}-{i}")},
                    "spec": {"agent": agent, "action": read, "target": {"kind": "Pod", "name": "web-1", "namespace": home}}
                }))
                .unwrap();
                let _ = Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await;
            }
        }
    });
}

#[tokio::main]
async fn main() -> Result<()> {
    let (n, active) = (arg("--agents", 1000) as usize, arg("--active", 50) as usize);
    let (minutes, warmup) = (arg("--minutes", 20), arg("--warmup", 3));
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-soak"]).await?;
    let home = ns.get(0).to_string();
    let read = unique("soak-read");
    apply(&Api::<SocAction>::all(client.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start().await?;
    let pid = op.pid().expect("operator pid");
    let run = unique("soak");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &home);
    create_agents(&agents, &run, 0..n, 32, |i| {
        agent(&format!("agent-{i:05}"), &home, Tier::Supervised, &[&read], &[&home])
    })
    .await
    .context("creating agents")?;
    wait_all_agents(&client, &format!("bench-run={run}"), n, ready, Duration::from_secs(600)).await?;
    println!("{n} agents Ready; {active} of them active (a list every ~2 s, a request every ~60 s each)");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    for i in 0..active {
        let name = format!("agent-{i:05}");
        let token = agent_token(&client, &home, &name).await?.context("a token")?;
        traffic(with_token(&token).await?, home.clone(), name, read.clone(), stop.clone(), calls.clone());
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let s = (started.elapsed().as_secs(), rss_mib(pid).unwrap_or(f64::NAN), open_fds(pid), threads(pid));
        println!(
            "  t={:>4}s RSS {:.1} MiB, fds {}, threads {}, agent calls {}",
            s.0,
            s.1,
            s.2,
            s.3,
            calls.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let after_warmup: Vec<_> = samples.iter().filter(|s| s.0 >= warmup * 60).collect();
    let (first, last) = (after_warmup.first().context("no sample after warm-up")?, samples.last().expect("samples"));
    let requests =
        Api::<ActionRequest>::namespaced(client.clone(), &home).list_metadata(&ListParams::default()).await?;
    println!(
        "RSS after warm-up {:.1} MiB -> end {:.1} MiB: growth {:+.1}%  (target < 5%); peak {:.1} MiB",
        first.1,
        last.1,
        (last.1 / first.1 - 1.0) * 100.0,
        peak_rss_mib(pid).unwrap_or(f64::NAN)
    );
    println!("open fds {} -> {}, threads {} -> {}  (target: no growth)", first.2, last.2, first.3, last.3);
    println!(
        "agent API calls {} ({:.0}/s), ActionRequests held at the end {}",
        calls.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        requests.items.len()
    );
    Ok(())
}
