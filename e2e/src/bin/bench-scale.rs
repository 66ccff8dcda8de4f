//! Scale benchmark: the operator's memory and its `/metrics` endpoint as the number of agents grows
//! (1,000 then 10,000 by default). At each step, once every agent is Ready and the operator is idle:
//! its RSS (and peak), and `/metrics` scraped 50 times: response size, series count, and time next
//! to the floor measured in the same run, a `/healthz` request on the same server (same listener,
//! same connection handling, no body).
//!
//!   bench-scale [--steps 1000,10000] [--concurrency 32] [--step-timeout 1200 (seconds)]
//!
//! Run with `e2e/bench` (release build, local control plane or KUBECONFIG).

use anyhow::{Context as _, Result};
use kube::api::{Api, ListParams};
use soc_warden_e2e::*;
use socwarden_api::{Risk, SocAction, SocAgent, Tier, Verb};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `n` sequential GETs of `url`: (sorted latencies, last body).
async fn timed_gets(url: &str, n: usize) -> Result<(Vec<Duration>, String)> {
    let mut times = Vec::with_capacity(n);
    let mut body = String::new();
    for _ in 0..n {
        let t = Instant::now();
        let (code, b) = http_get(url).await?;
        times.push(t.elapsed());
        anyhow::ensure!(code == 200, "{url}: {code}");
        body = b;
    }
    times.sort();
    Ok((times, body))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let steps: Vec<usize> = arg("--steps")
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--steps: comma-separated agent counts")?;
    let conc: usize = arg("--concurrency").map(|c| c.parse()).transpose()?.unwrap_or(32);
    let step_timeout = Duration::from_secs(arg("--step-timeout").map(|c| c.parse()).transpose()?.unwrap_or(1200));
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-scale"]).await?;
    let home = ns.get(0).to_string();
    let read = unique("bench-read");
    apply(&Api::<SocAction>::all(client.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start_with(&["--concurrency", &conc.to_string()]).await?;
    let pid = op.pid().expect("operator pid");
    let run = unique("scale");
    let label = format!("bench-run={run}");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &home);
    let base = format!("http://127.0.0.1:{}", op.metrics_port);
    println!("operator RSS with no agents: {:.1} MiB", rss_mib(pid).unwrap_or(f64::NAN));

    let mut have = 0;
    for target in steps {
        let start = Instant::now();
        create_agents(&agents, &run, have..target, conc, |i| {
            agent(&format!("agent-{i:05}"), &home, Tier::Supervised, &[&read], &[&home])
        })
        .await
        .context("creating agents")?;
        // On a small machine the control plane (etcd above all) may not keep up with the largest
        // step: measure whatever was reached, and say so.
        let reached = match wait_all_agents(&client, &label, target, ready, step_timeout).await {
            Ok(_) => format!("all Ready {:.1}s after the step's first create", start.elapsed().as_secs_f64()),
            Err(e) => {
                let all = agents.list(&ListParams::default().labels(&label)).await?;
                let n = all.items.iter().filter(|a| ready(a)).count();
                format!("NOT converged: {e}; {n} of {target} Ready after {:.0}s", start.elapsed().as_secs_f64())
            }
        };
        have = target;
        // Let the work queue drain and the allocator settle before reading the resident size.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rss = rss_mib(pid).unwrap_or(f64::NAN);
        let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);

        let (floor, _) = timed_gets(&format!("{base}/healthz"), 50).await?;
        let (scrape, body) = timed_gets(&format!("{base}/metrics"), 50).await?;
        let series = body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
        let per_agent = body.lines().filter(|l| l.contains("agent=\"agent-")).count();
        let (p50, p99, floor50) = (percentile(&scrape, 0.5), percentile(&scrape, 0.99), percentile(&floor, 0.5));
        println!("== {target} agents ({reached})");
        println!(
            "  operator RSS: {rss:.1} MiB steady, {peak:.1} MiB peak  (target <= {} MiB)",
            if target <= 1000 { 64 } else { 256 }
        );
        println!(
            "  /metrics: {:.1} KiB, {series} series ({per_agent} per-agent, {:.1} per agent)  (target < 1 MiB at 1000)",
            body.len() as f64 / 1024.0,
            per_agent as f64 / target as f64
        );
        println!(
            "  /metrics scrape: p50 {:.2} ms, p99 {:.2} ms  (target < 50 ms at 1000); floor /healthz p50 {:.2} ms; ratio p50 {:.1}",
            ms(p50),
            ms(p99),
            ms(floor50),
            ms(p50) / ms(floor50)
        );
    }
    Ok(())
}
