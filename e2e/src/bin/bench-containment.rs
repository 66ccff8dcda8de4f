//! Containment latency with 1,000 agents sending audit traffic: every agent's ServiceAccount
//! "calls" the API steadily (audit EventLists posted to the operator's sink, as the API server
//! does); after a short learning period, agents start probing (a batch of 403s) one after another,
//! then others write without any record (one in-grant delete each); the time from the audit batch
//! reaching the sink to the agent's RoleBindings and token Secret being deleted is read from the
//! operator (its `contained` log lines). Prints p50/p99 for each trigger.
//! Then the same probing again while 1,000 new agents are being created and issued credentials
//! (issue 12, "pauses first"): containment during convergence next to containment idle.

use anyhow::{Context as _, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::api::Api;
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn event(ns: &str, agent: &str, verb: &str, resource: &str, code: u16) -> serde_json::Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": "ResponseComplete",
        "verb": verb, "user": {"username": format!("system:serviceaccount:{ns}:warden-{agent}"), "groups": ["system:serviceaccounts"]},
        "objectRef": {"resource": resource, "namespace": ns, "apiVersion": "v1"},
        "responseStatus": {"code": code}, "stageTimestamp": jiff::Timestamp::now().to_string()
    })
}

/// p50, p99 and max of the `contained` log lines of drift pauses, by trigger.
fn latencies(log: &str, unrecorded: bool) -> Vec<f64> {
    let mut ms: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("contained:") && (l.contains("reason=\"Drift\"") || l.contains("reason=Drift")))
        .filter(|l| l.contains(&format!("unrecorded={unrecorded}")))
        .filter_map(|l| l.split("latency_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = arg("--agents", 1000);
    let probes = arg("--probes", 100);
    anyhow::ensure!(n >= 3 * probes, "--agents must be at least 3 × --probes");
    let port = audit_port().context("needs the local control plane (e2e/cluster up): its audit port")?;
    let token = std::fs::read_to_string(cluster_dir().join("audit-token"))?.trim().to_string();
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-drift"]).await?;
    let home = ns.get(0).to_string();
    let op = Operator::start_with(&["--concurrency", "32"]).await?;

    let run = unique("drift");
    let label = format!("bench-run={run}");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &home);
    create_agents(&agents, &run, 0..n, 32, |i| {
        let mut a = agent(&format!("agent-{i:05}"), &home, Tier::Supervised, &[], &[&home]);
        a.spec.baseline.learning_period = "20s".into();
        a
    })
    .await?;
    wait_all_agents(&client, &label, n, ready, Duration::from_secs(600)).await?;
    println!("{n} agents Ready");

    // The sink speaks TLS with the operator's own certificate; the API server's audit kubeconfig
    // skips verification on the local control plane, and so does this load generator.
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify))
            .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let url = format!("https://127.0.0.1:{port}/audit");
    let post = move |items: Vec<serde_json::Value>| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let body =
                serde_json::to_vec(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}))?;
            let req = hyper::Request::post(url)
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::from(body)))?;
            let resp = http.request(req).await?;
            let code = resp.status();
            let _ = resp.into_body().collect().await;
            anyhow::ensure!(code.is_success(), "sink answered {code}");
            Ok::<(), anyhow::Error>(())
        }
    };

    // Background traffic: every agent lists pods twice a second, in batches of 200 agents every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, home, post) = (stop.clone(), home.clone(), post.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut round = 0usize;
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let items: Vec<_> = (0..200)
                    .map(|j| event(&home, &format!("agent-{:05}", (round * 200 + j) % n), "list", "pods", 200))
                    .collect();
                sent += items.len();
                let _ = post(items).await;
                round += 1;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(25)).await; // learning period of 20 s, plus margin
    let t0 = Instant::now();
    // Probing: agents `range` each try to read Secrets, refused (10 × 403 in one batch), 200 ms apart.
    let probe = |range: std::ops::Range<usize>| {
        let (post, home) = (post.clone(), home.clone());
        async move {
            for i in range {
                let agent = format!("agent-{i:05}");
                post((0..10).map(|_| event(&home, &agent, "get", "secrets", 403)).collect()).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    probe(0..probes).await?;
    // Writes with no record: one delete each, in a namespace of the agent's scope, 200 ms apart.
    for i in probes..2 * probes {
        let agent = format!("agent-{i:05}");
        let mut write = event(&home, &agent, "delete", "pods", 200);
        write["objectRef"]["name"] = json!(format!("victim-{i}"));
        post(vec![write]).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Wait until every probing and writing agent is paused.
    let all_paused = |names: Vec<String>| {
        let agents = agents.clone();
        async move {
            wait_for("every probing agent paused", Duration::from_secs(120), || async {
                let mut all = true;
                for name in &names {
                    let a = agents.get(name).await?;
                    all &= condition(&a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift");
                }
                Ok(all.then_some(()))
            })
            .await
        }
    };
    all_paused((0..2 * probes).map(|i| format!("agent-{i:05}")).collect()).await?;
    let log = std::fs::read_to_string(&op.log)?;
    let idle_log_end = log.len();
    for (unrecorded, what, target) in [(false, "probing (10 × 403)", 1000.0), (true, "unrecorded write", 250.0)] {
        let what = format!("containment after {what} (audit batch received -> RoleBindings and token Secret deleted)");
        report(&what, latencies(&log, unrecorded), target);
    }

    // Pauses first: the same probing of other (Ready, learned) agents while `n` new agents are
    // being created and issued credentials.
    let run2 = unique("converging");
    let label2 = format!("bench-run={run2}");
    let started = Instant::now();
    let creating = {
        let (agents, home) = (agents.clone(), home.clone());
        tokio::spawn(async move {
            create_agents(&agents, &run2, 0..n, 32, |i| {
                agent(&format!("new-{i:05}"), &home, Tier::Supervised, &[], &[&home])
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    probe(2 * probes..3 * probes).await?;
    let new_ready = |l: kube::api::ObjectList<SocAgent>| l.items.iter().filter(|a| ready(a)).count();
    let ready_at_last_probe = new_ready(agents.list(&kube::api::ListParams::default().labels(&label2)).await?);
    all_paused((2 * probes..3 * probes).map(|i| format!("agent-{i:05}")).collect()).await?;
    creating.await??;
    wait_all_agents(&client, &label2, n, ready, Duration::from_secs(600)).await?;
    println!(
        "{n} new agents all Ready {:.1}s after the first create; {ready_at_last_probe} of them Ready when the last probe was sent",
        started.elapsed().as_secs_f64()
    );
    let log = std::fs::read_to_string(&op.log)?;
    let what = format!("containment after probing DURING CONVERGENCE of {n} new agents");
    report(&what, latencies(&log[idle_log_end..], false), 1000.0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await?;
    println!(
        "audit traffic: {sent} events from {n} agents over {:.0}s, plus {} probing bursts and {probes} unrecorded writes",
        t0.elapsed().as_secs_f64() + 25.0,
        2 * probes
    );

    let paused = |l: kube::api::ObjectList<SocAgent>| {
        l.items.iter().filter(|a| condition(a, "Paused").is_some_and(|c| c.status == "True")).count()
    };
    let paused_others = paused(agents.list(&kube::api::ListParams::default().labels(&label)).await?) - 3 * probes
        + paused(agents.list(&kube::api::ListParams::default().labels(&label2)).await?);
    println!("agents paused without probing or writing (false positives): {paused_others}");
    Ok(())
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
