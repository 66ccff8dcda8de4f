//! The MCP gateway, with 1,000 agents present:
//! 1. `tools/list`: latency of one listing (TokenReview, the agent's catalog as tools) at 50/s,
//!    round robin over the 1,000 agents' own tokens;
//! 2. `tools/call` of an autonomous action (a manifest the operator applies) → the result returned,
//!    at 50 calls/s over 100 agents, next to the floor: the same action filed as an ActionRequest
//!    through the API with the agent's token, created → executed as seen by a watch, at the same
//!    rate in the same run.
//!
//! The client speaks MCP's Streamable HTTP (2025-11-25) over kept-alive TLS connections. Prints
//! p50/p99 and the ratio against the floor. Run with `e2e/bench`.

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, ExecutionState, SocAgent, Tier};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Http = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn http_client(ca: &str) -> Result<Http> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// One JSON-RPC request to the gateway as `token`; the `result`, or why not.
async fn rpc(http: &Http, url: &str, token: &str, method: &str, params: Value, id: usize) -> Result<Value> {
    let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body)))?;
    let resp = http.request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{method}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let v: Value = serde_json::from_slice(&bytes).with_context(|| String::from_utf8_lossy(&bytes).to_string())?;
    if v.get("error").is_some() {
        bail!("{method}: {}", v["error"]);
    }
    Ok(v["result"].clone())
}

/// Runs `f(i)` for i in 0..total at a steady `rate` per second (each leaves on time, however long
/// the others take); the latencies in ms.
async fn steady<F, Fut>(total: usize, rate: usize, f: F) -> Result<Vec<f64>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    stream::iter(0..total)
        .map(|i| {
            let fut = f(i);
            async move {
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let t = Instant::now();
                fut.await?;
                Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(256)
        .try_collect()
        .await
}

#[tokio::main]
async fn main() -> Result<()> {
    let n_agents = arg("--agents", 1000);
    let callers = arg("--callers", 100).min(n_agents);
    let n_calls = arg("--calls", 500);
    let rate = arg("--rate", 50);
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-mcp"]).await?;
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
  description: Apply a NetworkPolicy
  parameters: [{{name: n, type: string, required: true, pattern: "[0-9a-z-]+"}}]
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
    let policy = unique("bench-mcp");
    apply_yaml(
        &client,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {policy}}}\nspec: {{requests: {{maxPending: 10000, maxPerMinute: 100000}}}}\n"
        ),
    )
    .await?;
    let op = Operator::start_with(&["--concurrency", "32"]).await?;
    let run = unique("mcp");
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
    let tokens: Vec<String> = stream::iter(0..n_agents)
        .map(|i| {
            let (client, home) = (client.clone(), home.clone());
            async move { agent_token(&client, &home, &format!("agent-{i:05}")).await?.context("agent token") }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let http = http_client(&https::webhook_ca(&client).await?)?;
    let url = op.mcp_url();
    // Connections up before the clock starts, as a running agent's are.
    for t in tokens.iter().take(callers) {
        rpc(&http, &url, t, "tools/list", json!({}), 0).await?;
    }

    // 1. tools/list at 50/s over every agent.
    let lists = n_calls.min(10 * rate);
    let ms = steady(lists, rate, |i| {
        let (http, url, token) = (http.clone(), url.clone(), tokens[i % n_agents].clone());
        async move {
            let r = rpc(&http, &url, &token, "tools/list", json!({}), i).await?;
            let n = r["tools"].as_array().map(Vec::len).unwrap_or(0);
            if n != 3 {
                bail!("agent {i} listed {n} tools, not its action and the two built-ins: {r}");
            }
            Ok(())
        }
    })
    .await?;
    report(&format!("MCP tools/list with {n_agents} agents ({rate}/s, each agent's own token)"), ms, 20.0);

    // 2a. The floor: the same action filed through the API with the agent's token, created →
    // executed (seen by a watch), at the same rate.
    let filers: Vec<Api<ActionRequest>> = stream::iter(0..callers)
        .map(|i| {
            let token = tokens[i].clone();
            let home = home.clone();
            async move {
                let filer = Api::<ActionRequest>::namespaced(with_token(&token).await?, &home);
                // (Its base Role may `get` a request by name, not list them: a miss warms the connection.)
                filer.get_opt("warm-up").await?;
                Ok::<_, anyhow::Error>(filer)
            }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let requests: Api<ActionRequest> = Api::namespaced(client.clone(), &home);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
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
                if ok && name.starts_with("floor-") && done.insert(name.clone()) {
                    if let Some(t0) = sent.lock().unwrap().get(&name) {
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    if done.len() >= n_calls {
                        break;
                    }
                }
            }
            Ok::<Vec<f64>, anyhow::Error>(lat)
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    for i in 0..n_calls {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let name = format!("floor-{i:05}");
        let r: ActionRequest = serde_json::from_value(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "ActionRequest", "metadata": {"name": name},
            "spec": {"agent": format!("agent-{:05}", i % callers), "action": action, "parameters": {"n": format!("floor-{i}")},
                     "target": {"kind": "NetworkPolicy", "name": format!("bench-floor-{i}"), "namespace": home}}
        }))?;
        sent.lock().unwrap().insert(name, Instant::now());
        let filer = filers[i % callers].clone();
        tokio::spawn(async move { filer.create(&PostParams::default(), &r).await });
    }
    let floor =
        tokio::time::timeout(Duration::from_secs(300), seen).await.context("floor requests not all executed")???;

    // 2b. The same through the gateway: tools/call → the executed result returned.
    let ms = steady(n_calls, rate, |i| {
        let (http, url, token, home, action) =
            (http.clone(), url.clone(), tokens[i % callers].clone(), home.clone(), action.clone());
        async move {
            let args = json!({"parameters": {"n": format!("mcp-{i}")}, "target": {"kind": "NetworkPolicy", "name": format!("bench-mcp-{i}"), "namespace": home}});
            let r = rpc(&http, &url, &token, "tools/call", json!({"name": action, "arguments": args}), i).await?;
            if r["isError"] != false || r["structuredContent"]["execution"]["state"] != "Succeeded" {
                bail!("call {i} did not return an executed result: {r}");
            }
            Ok(())
        }
    })
    .await?;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let floor_p99 = percentile(&sorted(floor.clone()), 0.99);
    report(
        &format!("floor: ActionRequest through the API, created -> executed ({rate}/s, {callers} agents)"),
        floor,
        f64::NAN,
    );
    let p99 = percentile(&sorted(ms.clone()), 0.99);
    report(
        &format!("MCP tools/call of an autonomous action -> executed result ({rate}/s, {callers} agents)"),
        ms,
        300.0,
    );
    println!("  ratio p99 MCP / p99 floor: {:.2} (target <= 1.3); p99 {p99:.1} ms (target <= 300 ms)", p99 / floor_p99);
    let m = op.metrics().await?;
    for line in m.lines().filter(|l| l.starts_with("socwarden_mcp_calls_total")) {
        println!("  {line}");
    }
    Ok(())
}
