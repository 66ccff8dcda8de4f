//! The audit sink under a flood, with a release-built client (the fault test's client is a debug
//! build and tops out below the rate asked of it): batches of 500 audit events for 20 agents,
//! offered at 50,000 events/s (100 batches/s) for 20 s over kept-alive TLS connections to the
//! sink, while an agent deletes pods without a record through the real API server. Prints the
//! rate the sink took in, how long it took to answer a batch, what it kept and dropped, the
//! operator's peak RSS and how long the rogue agent's containment took.
//!
//! Run with `e2e/bench` (local control plane only: it needs the audit port and token).

use anyhow::{Context as _, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rate = arg("--rate", 50_000) as u64;
    let secs = arg("--seconds", 20) as u64;
    let senders = arg("--senders", 16) as u64;
    const AGENTS: usize = 20;
    const PER_BATCH: usize = 500;
    let Some(port) = audit_port() else { bail!("the flood benchmark needs the local control plane (e2e/cluster up)") };
    let s = Scene::audited().await?;
    let (home, scope) = (s.home().to_string(), s.scope().to_string());
    let delete = unique("delete-pod");
    apply_yaml(
        &s.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {delete}}}\nspec:\n  risk: low\n  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [get, list, delete]}}]\n"
        ),
    )
    .await?;
    let op = Operator::start().await?;
    let agents = Api::<SocAgent>::namespaced(s.admin.clone(), &home);
    let run = unique("flood");
    for i in 0..=AGENTS {
        let (name, actions): (String, Vec<&str>) =
            if i < AGENTS { (format!("noisy-{i}"), vec![]) } else { ("rogue".into(), vec![delete.as_str()]) };
        let mut a = agent(&name, &home, Tier::Supervised, &actions, &[&scope]);
        a.metadata.labels = Some([("bench-run".to_string(), run.clone())].into());
        apply(&agents, &a).await?;
    }
    wait_all_agents(&s.admin, &format!("bench-run={run}"), AGENTS + 1, ready, Duration::from_secs(60)).await?;
    let rogue = with_token(&agent_token(&s.admin, &home, "rogue").await?.context("rogue token")?).await?;
    let pods = Api::<Pod>::namespaced(s.admin.clone(), &scope);
    for i in 0..20 {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("victim-{i}")}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}
        }))?;
        pods.create(&PostParams::default(), &p).await?;
    }

    // Kept-alive TLS connections to the sink, as the API server's audit backend keeps them.
    let ca = https::webhook_ca(&s.admin).await?;
    let tls = {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c?)?;
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth()
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let token = std::fs::read_to_string(cluster_dir().join("audit-token"))?.trim().to_string();
    let url = format!("https://127.0.0.1:{port}/audit");
    let body = Bytes::from(flood_batch(&home, &scope, AGENTS, PER_BATCH));
    let count =
        |text: &str, result: &str| metric(text, "socwarden_audit_events_total", &[("result", result)]).unwrap_or(0.0);
    let before = op.metrics().await?;

    let posted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let answers: Arc<std::sync::Mutex<Vec<f64>>> = Default::default();
    let flood = Duration::from_secs(secs);
    let started = Instant::now();
    let batches_per_s = rate / PER_BATCH as u64;
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (http, url, token, body) = (http.clone(), url.clone(), token.clone(), body.clone());
            let (posted, refused, answers) = (posted.clone(), refused.clone(), answers.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs_f64(senders as f64 / batches_per_s as f64));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while started.elapsed() < flood {
                    every.tick().await;
                    let req = hyper::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(body.clone()))
                        .expect("request");
                    let t = Instant::now();
                    let ok = match http.request(req).await {
                        Ok(r) => {
                            let code = r.status();
                            let _ = r.into_body().collect().await;
                            code.is_success()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        posted.fetch_add(PER_BATCH as u64, Ordering::Relaxed);
                        answers.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let pid = op.pid().context("running")?;
    let sampler = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while started.elapsed() < flood + Duration::from_secs(2) {
            peak = peak.max(rss_mib(pid).unwrap_or(0.0));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        peak
    });

    // Mid-flood, the rogue agent deletes pods without a record.
    tokio::time::sleep(flood / 2).await;
    let first = Instant::now();
    let api = Api::<Pod>::namespaced(rogue, &scope);
    let mut through = 0;
    for i in 0..20 {
        if api.delete(&format!("victim-{i}"), &DeleteParams::default()).await.is_err() {
            break;
        }
        through += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let contained = wait_agent(&s.admin, &home, "rogue", "contained", Duration::from_secs(30), |a| {
        condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
    })
    .await
    .map(|_| first.elapsed().as_secs_f64());
    let during = started.elapsed() < flood;
    for t in tasks {
        t.await?;
    }
    let peak = sampler.await?;
    let took = started.elapsed().as_secs_f64().min(flood.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = op.metrics().await?;
    let (kept, dropped) =
        (count(&after, "kept") - count(&before, "kept"), count(&after, "dropped") - count(&before, "dropped"));
    let posted = posted.load(Ordering::Relaxed) as f64;
    println!(
        "offered {rate} events/s for {secs} s from {senders} kept-alive connections: taken in {:.0} events/s ({:.0}% of the offer), {} batches refused or failed",
        posted / took,
        100.0 * posted / took / rate as f64,
        refused.load(Ordering::Relaxed)
    );
    report("  sink answer per batch of 500 events", answers.lock().unwrap().clone(), f64::NAN);
    println!("  kept {kept}, dropped {dropped} (of {posted} posted); operator RSS peak {peak:.1} MiB (target < 256)");
    match contained {
        Ok(t) => println!(
            "  rogue agent contained {t:.2} s after its first delete ({through} deletes got through), during the flood: {during} (target <= 5 s)"
        ),
        Err(e) => println!("  rogue agent NOT contained within 30 s: {e}"),
    }
    Ok(())
}
