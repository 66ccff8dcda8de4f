//! Convergence benchmark: N SocAgents applied at once → time until every one is Ready, next to the
//! write floor measured in the same run: a plain client doing the same API writes per agent
//! (ServiceAccount, Role, RoleBinding, Secret, TokenRequest, Secret update) at the same concurrency:
//! creates, then a merge patch for the update, as the operator does — once as the admin and once
//! authenticated as the operator's own ServiceAccount (the ratio's floor: RBAC authorizes every
//! request of a ServiceAccount, while the API server skips it for system:masters, and on this
//! control plane that alone doubles the cost of the same writes).
//! Also prints the operator's peak RSS.
//!
//! Agents are scoped to their own namespace so that each needs exactly one Role and RoleBinding,
//! like the floor. Run with `e2e/bench` (release build, local control plane or KUBECONFIG).

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{Risk, SocAction, SocAgent, Tier, Verb};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The six writes of one agent, done by hand.
async fn floor_one(client: &Client, ns: &str, i: usize) -> Result<()> {
    let name = format!("floor-{i:05}");
    let meta =
        |n: &str| ObjectMeta { name: Some(n.to_string()), namespace: Some(ns.to_string()), ..Default::default() };
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &ServiceAccount { metadata: meta(&name), ..Default::default() })
        .await?;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["socwarden.io"], "resources": ["actionrequests"], "verbs": ["create", "get", "list", "watch"]},
                  {"apiGroups": ["socwarden.io"], "resources": ["socagents"], "verbs": ["get"], "resourceNames": [name]}]
    }))?;
    Api::<Role>::namespaced(client.clone(), ns).create(&pp, &role).await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    }))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns).create(&pp, &rb).await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let secret = secrets
        .create(
            &pp,
            &Secret { metadata: meta(&name), type_: Some("socwarden.io/agent-token".into()), ..Default::default() },
        )
        .await?;
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some(name.clone()),
                uid: secret.uid(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Api::<ServiceAccount>::namespaced(client.clone(), ns).create_token_request(&name, &pp, &tr).await?;
    let token = t.status.and_then(|s| s.token).unwrap_or_default();
    let data = [("token".to_string(), ByteString(token.into_bytes()))];
    let patch = json!({"data": std::collections::BTreeMap::from(data)});
    secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// CPU seconds (user + system) used so far by a process.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of the local control plane's processes (etcd, kube-apiserver, kube-controller-manager).
fn control_plane_cpu() -> Vec<f64> {
    let pids = std::fs::read_to_string(cluster_dir().join("pids")).unwrap_or_default();
    pids.lines().filter_map(|l| l.trim().parse().ok()).map(cpu_secs).collect()
}

fn cpu_report(label: &str, before: &[f64], after: &[f64], wall: Duration) {
    if before.len() != 3 || after.len() != 3 {
        return;
    }
    let d: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    println!(
        "  {label} CPU: etcd {:.1}s, kube-apiserver {:.1}s, kube-controller-manager {:.1}s over {:.1}s wall",
        d[0],
        d[1],
        d[2],
        wall.as_secs_f64()
    );
}

/// The API server's request counters by verb, resource and subresource (JSON and protobuf summed).
async fn api_requests(client: &Client) -> std::collections::BTreeMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((series, v)) = l.rsplit_once(' ') else { continue };
        let label = |k: &str| {
            series.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string()
        };
        let key = format!(
            "{} {}{}{} {}",
            label("verb"),
            label("resource"),
            if label("subresource").is_empty() { "" } else { "/" },
            label("subresource"),
            label("code")
        );
        *out.entry(key).or_default() += v.parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn request_report(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    n: usize,
) {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= n as f64 / 20.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (k, v) in d {
        println!("    {:>6.2}/agent  {k}", v / n as f64);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = arg("--agents", 1000);
    let conc = arg("--concurrency", 32);
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;
    let ns = Namespaces::create(&client, &["bench-floor", "bench-agents", "bench-floor-sa"]).await?;
    let agents_ns = ns.get(1).to_string();

    // 1. The write floor: the same writes by a plain client, as the admin (system:masters: the API
    // server skips RBAC for it) and as the operator's own ServiceAccount (authorized by RBAC, as
    // the operator is) — the second is the floor the operator's ratio is taken against.
    let as_operator = operator_client().await?;
    let mut floors = Vec::new();
    for (who, c, ns) in [("the admin", &client, ns.get(0)), ("the operator's ServiceAccount", &as_operator, ns.get(2))]
    {
        let cp0 = control_plane_cpu();
        let r0 = api_requests(&client).await;
        let start = Instant::now();
        stream::iter(0..n)
            .map(|i| {
                let (c, ns) = (c.clone(), ns.to_string());
                async move { floor_one(&c, &ns, i).await }
            })
            .buffer_unordered(conc)
            .try_collect::<Vec<()>>()
            .await
            .with_context(|| format!("floor writes as {who}"))?;
        let floor = start.elapsed();
        println!(
            "floor: {n} agents' writes (6 each) by a plain client as {who} at concurrency {conc}: {:.2}s ({:.0} agents/s)",
            floor.as_secs_f64(),
            n as f64 / floor.as_secs_f64()
        );
        cpu_report("floor", &cp0, &control_plane_cpu(), floor);
        request_report(&r0, &api_requests(&client).await, n);
        floors.push(floor);
    }
    let (floor_admin, floor) = (floors[0], floors[1]);

    // 1b. What the SocAgent objects alone cost the API server (created, no operator running).
    let ns_cr = Namespaces::create(&client, &["bench-crs"]).await?;
    let crs: Api<SocAgent> = Api::namespaced(client.clone(), ns_cr.get(0));
    let (cpc, rc) = (control_plane_cpu(), api_requests(&client).await);
    let start = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (crs, ns) = (crs.clone(), ns_cr.get(0).to_string());
            async move {
                crs.create(&PostParams::default(), &agent(&format!("cr-{i:05}"), &ns, Tier::Supervised, &["x"], &[&ns]))
                    .await
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await?;
    let cr_time = start.elapsed();
    println!("reference: {n} SocAgents created with no operator running: {:.2}s", cr_time.as_secs_f64());
    cpu_report("reference", &cpc, &control_plane_cpu(), cr_time);
    request_report(&rc, &api_requests(&client).await, n);
    crs.delete_collection(&Default::default(), &ListParams::default()).await?;

    // 2. The operator.
    let read = unique("bench-read");
    apply(&Api::<SocAction>::all(client.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start_with(&["--concurrency", &conc.to_string()]).await?;
    let pid = op.pid().expect("operator pid");
    let rss_idle = rss_mib(pid).unwrap_or(0.0);
    let run = unique("bench");
    let label = format!("bench-run={run}");
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), &agents_ns);
    let cp1 = control_plane_cpu();
    let r1 = api_requests(&client).await;
    let op_cpu0 = cpu_secs(pid);
    let start = Instant::now();
    let watcher = {
        let client = client.clone();
        let label = label.clone();
        tokio::spawn(async move {
            wait_all_agents(&client, &label, n, ready, Duration::from_secs(600.max(n as u64 / 5))).await
        })
    };
    create_agents(&agents, &run, 0..n, conc, |i| {
        agent(&format!("agent-{i:05}"), &agents_ns, Tier::Supervised, &[&read], &[&agents_ns])
    })
    .await
    .context("creating agents")?;
    let applied = start.elapsed();
    watcher.await??;
    let converged = start.elapsed();
    let op_cpu = cpu_secs(pid) - op_cpu0;
    let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let cp2 = control_plane_cpu();
    let r2 = api_requests(&client).await;
    println!(
        "operator: {n} SocAgents applied in {:.2}s, all Ready after {:.2}s ({:.0} agents/s)",
        applied.as_secs_f64(),
        converged.as_secs_f64(),
        n as f64 / converged.as_secs_f64()
    );
    cpu_report("operator run", &cp1, &cp2, converged);
    println!("  operator CPU: {op_cpu:.1}s");
    request_report(&r1, &r2, n);
    println!(
        "ratio (operator / floor as the operator's ServiceAccount): {:.2}  (target <= 1.5); against the admin floor: {:.2}",
        converged.as_secs_f64() / floor.as_secs_f64(),
        converged.as_secs_f64() / floor_admin.as_secs_f64()
    );
    println!("operator RSS: idle {rss_idle:.1} MiB, peak {peak:.1} MiB at {n} agents  (target <= 64 MiB at 1000)");
    let m = op.metrics().await?;
    let errors: f64 = m
        .lines()
        .filter(|l| l.starts_with("socwarden_reconcile_errors_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0;
    println!("reconcile errors during the run: {errors}");
    let per_agent = m.lines().filter(|l| l.contains("agent=\"agent-")).count();
    println!(
        "/metrics at {n} agents: {:.1} KiB, {per_agent} per-agent series  (target < 1 MiB at 10000)",
        m.len() as f64 / 1024.0
    );
    // Delete the agents while the operator runs, so their finalizers are released.
    agents.delete_collection(&Default::default(), &ListParams::default().labels(&label)).await?;
    wait_for("bench agents deleted", Duration::from_secs(300), || async {
        Ok(agents.list(&ListParams::default().labels(&label)).await?.items.is_empty().then_some(()))
    })
    .await?;
    drop(op);
    Ok(())
}
