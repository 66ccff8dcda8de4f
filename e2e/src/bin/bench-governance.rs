//! Governance benchmarks, with 1,000 agents present:
//! 1. the admission webhook: latency of one review (an agent's ActionRequest, stamped and signed)
//!    sent straight to the operator over HTTPS at a steady 100 reviews/s;
//! 2. an autonomous action: ActionRequest created → executed (its manifest applied and the status
//!    saying so, as seen by a watch), at a steady request rate.
//!
//! Prints p50/p99 next to the targets. Run with `e2e/bench`.

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, ExecutionState, SocAgent, Tier};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// POSTs AdmissionReviews straight to the webhook at a steady rate over kept-alive TLS connections.
async fn webhook_latency(
    client: &kube::Client,
    ns: &str,
    agent: &str,
    action: &str,
    rate: usize,
    secs: usize,
) -> Result<Vec<f64>> {
    let secret = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE).get(soc_warden::tls::TLS_SECRET).await?;
    let ca = secret.data.and_then(|d| d.get("ca.crt").map(|b| b.0.clone())).context("webhook CA")?;
    let cfg = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(soc_warden::webhook_config::WEBHOOK_CONFIG)
        .await?;
    let url = cfg.webhooks.unwrap_or_default()[0].client_config.url.clone().context("webhook url")?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c?)?;
    }
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    // Client authentication on, as the API server does it: the webhook answers only holders of
    // its client certificate (the local control plane's; elsewhere the operator has no client CA).
    let tls = match webhook_client_ca() {
        Some(_) => {
            let (cert, key) = soc_warden_e2e::https::apiserver_client_cert()?;
            tls.with_client_auth_cert(
                rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?,
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?
        }
        None => tls.with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let http: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "socwarden.io", "version": "v1alpha1", "kind": "ActionRequest"},
            "resource": {"group": "socwarden.io", "version": "v1alpha1", "resource": "actionrequests"},
            "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": format!("system:serviceaccount:{ns}:warden-{agent}"), "groups": ["system:serviceaccounts"]},
            "object": {"apiVersion": "socwarden.io/v1alpha1", "kind": "ActionRequest", "metadata": {"name": "x", "namespace": ns},
                       "spec": {"agent": agent, "action": action, "parameters": {"n": "1"}, "target": {"kind": "NetworkPolicy", "name": "x", "namespace": ns}}},
            "dryRun": false
        }
    }))?;
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let results = stream::iter(0..total)
        .map(|i| {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            async move {
                // A steady rate: request i leaves at i/rate seconds, however long the others take.
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let t = Instant::now();
                let req = hyper::Request::post(format!("{url}/mutate").replace("/mutate/mutate", "/mutate"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let resp = http.request(req).await?;
                let bytes = resp.into_body().collect().await?.to_bytes();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let review: serde_json::Value = serde_json::from_slice(&bytes)?;
                if review["response"]["allowed"] != true {
                    bail!("review refused: {}", review["response"]["status"]);
                }
                Ok::<f64, anyhow::Error>(ms)
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<f64>>()
        .await?;
    Ok(results)
}

#[tokio::main]
async fn main() -> Result<()> {
    let n_agents = arg("--agents", 1000);
    let n_requests = arg("--requests", 300);
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-gov"]).await?;
    let home = ns.get(0).to_string();
    let action = unique("bench-np");
    apply_yaml(
        &client,
        &format!(
            r#"apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {action}}}
spec:
  risk: low
  parameters: [{{name: n, type: string, required: true, pattern: "[0-9]+"}}]
  execution:
    manifest: |
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {{name: "bench-${{n}}"}}
      spec: {{podSelector: {{matchLabels: {{request: "${{request.name}}"}}}}, policyTypes: [Ingress]}}
"#
        ),
    )
    .await?;
    // The agents file far more than the default quota allows (60 a minute each): a policy of its own.
    let policy = unique("bench-gov");
    apply_yaml(
        &client,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {policy}}}\nspec: {{requests: {{maxPending: 10000, maxPerMinute: 100000}}}}\n"
        ),
    )
    .await?;
    let op = Operator::start_with(&["--concurrency", "32"]).await?;

    // 1,000 agents, Ready.
    let run = unique("gov");
    let label = format!("bench-run={run}");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &home);
    create_agents(&agents, &run, 0..n_agents, 32, |i| {
        let mut a = agent(&format!("agent-{i:05}"), &home, Tier::Supervised, &[&action], &[&home]);
        a.spec.policy_ref = policy.clone();
        a
    })
    .await?;
    let t = wait_all_agents(&client, &label, n_agents, ready, Duration::from_secs(600)).await?;
    println!("{n_agents} agents Ready in {:.1}s", t.as_secs_f64());

    // 2. The webhook at 100 reviews/s for 10 s.
    let ms = webhook_latency(&client, &home, "agent-00001", &action, 100, 10).await?;
    let auth =
        if webhook_client_ca().is_some() { "caller authenticated by client certificate" } else { "no client CA" };
    report(&format!("webhook review (ActionRequest CREATE, stamped and signed; {auth}) at 100/s"), ms, 10.0);

    // 3. Autonomous actions: created → executed, 20 requests/s, each filed by its agent with its own
    // token (a request someone else files always waits for approval).
    let filers: Vec<Api<ActionRequest>> = stream::iter(0..n_requests.min(n_agents))
        .map(|i| {
            let (client, home) = (client.clone(), home.clone());
            async move {
                let token = agent_token(&client, &home, &format!("agent-{i:05}")).await?.context("agent token")?;
                let filer = Api::<ActionRequest>::namespaced(with_token(&token).await?, &home);
                // Connected before the clock starts, as a running agent's client is.
                // (Its base Role may `get` a request by name, not list them: a miss warms the connection.)
                filer.get_opt("warm-up").await?;
                Ok::<_, anyhow::Error>(filer)
            }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let requests: Api<ActionRequest> = Api::namespaced(client.clone(), &home);
    let sent: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let seen = {
        let (requests, sent) = (requests.clone(), sent.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut done = std::collections::HashSet::new();
            let mut s = std::pin::pin!(watcher(requests, watcher::Config::default()).applied_objects());
            while let Some(r) = s.try_next().await? {
                let ok = r.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.state)
                    == Some(ExecutionState::Succeeded);
                let name = r.metadata.name.clone().unwrap_or_default();
                if ok && done.insert(name.clone()) {
                    if let Some(t0) = sent.lock().unwrap().get(&name) {
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    if done.len() >= n_requests {
                        break;
                    }
                }
            }
            Ok::<Vec<f64>, anyhow::Error>(lat)
        })
    };
    let created: std::sync::Arc<std::sync::Mutex<Vec<f64>>> = Default::default();
    let start = Instant::now();
    for i in 0..n_requests {
        tokio::time::sleep_until((start + Duration::from_millis(50) * i as u32).into()).await;
        let name = format!("req-{i:05}");
        let r: ActionRequest = serde_json::from_value(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "ActionRequest", "metadata": {"name": name},
            "spec": {"agent": format!("agent-{:05}", i % n_agents), "action": action, "parameters": {"n": i.to_string()},
                     "target": {"kind": "NetworkPolicy", "name": format!("bench-{i}"), "namespace": home}}
        }))?;
        sent.lock().unwrap().insert(name, Instant::now());
        let (requests, created) = (filers[i % filers.len()].clone(), created.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = requests.create(&PostParams::default(), &r).await;
            created.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            r
        });
    }
    let lat = tokio::time::timeout(Duration::from_secs(300), seen).await.context("requests not all executed")???;
    report("autonomous action, ActionRequest created -> executed (20/s)", lat, 250.0);
    let c = created.lock().unwrap().clone();
    report("  of which the create call (API server and both webhook calls)", c, f64::NAN);
    let m = op.metrics().await?;
    for line in m.lines().filter(|l| l.starts_with("socwarden_webhook_duration_seconds_count")) {
        println!("  {line}");
    }
    Ok(())
}
