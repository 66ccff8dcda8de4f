//! Convergence benchmark: N SocAgents applied at once → time until every one is Ready, next to the
//! write floor measured in the same run: a plain client doing the same API writes per agent
//! (ServiceAccount, Role, RoleBinding, Secret, TokenRequest, Secret update) at the same concurrency:
//! creates, then a merge patch for the update, as the operator does. The floor runs four times:
//! as the admin with bare objects; as the operator's own ServiceAccount with bare objects; as
//! that ServiceAccount writing the operator's own objects (see `Objects`); and the same again with
//! each agent's SocAgent created by the admin first — the operator's run with the operator
//! replaced by a plain client: the same inputs (the user's SocAgents, whose creates the operator
//! run's clock includes) and the same outputs. That last floor is the ratio's; the others are
//! printed beside it.
//! RBAC authorizes every request of a ServiceAccount, while the API server skips it for
//! system:masters, and checks every Role and RoleBinding it creates for escalation, which reads
//! every RoleBinding of the namespace.
//! Also prints the control plane's CPU and API requests per agent of each run, and the operator's
//! peak RSS and `/metrics` size.
//!
//!   bench-convergence [--agents 1000] [--concurrency 32] [--namespaces 1] [--replicas 1] [--shards 3R]
//!
//! With `--replicas R` (R > 1) the same agents are converged again by R operators sharing
//! `--shards` shards (default 3 per replica), after the one operator's run: convergence and peak
//! RSS per replica are printed as ratios to the one operator's.
//!
//! Agents are scoped to their own namespace so that each needs exactly one Role and RoleBinding,
//! like the floor; `--namespaces K` deals them over K namespaces, in every run alike. Run with
//! `e2e/bench` (release build, local control plane or KUBECONFIG).

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{Grant, Risk, SocAction, SocAgent, Tier, Verb};
use socwarden_core::agent::{credentials, rbac};
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a floor writes for each agent.
#[derive(Clone, Copy, PartialEq)]
enum Objects {
    /// The six writes with bare objects: short names, no labels, no owner, the base rules only.
    Bare,
    /// The six writes with the objects the operator writes: its names, its three labels, an owner
    /// reference (to one ConfigMap of the namespace, see `main`), the agent's
    /// rules, and the token Secret's annotations and two keys. Every create of a Role or
    /// RoleBinding by a ServiceAccount lists the namespace's RoleBindings from etcd (Kubernetes'
    /// escalation check), so their size is paid once per agent per existing agent: the bare
    /// objects, half the size, measure cheaper writes than the operator's.
    Operator,
}

const NOT_MANAGED: &str = "floor-only";
const _: () = assert!(NOT_MANAGED.len() == credentials::MANAGED_BY.len());

/// The six writes of one agent, done by hand.
async fn floor_one(client: &Client, ns: &str, i: usize, objects: Objects, owner: &OwnerReference) -> Result<()> {
    let (agent, sa_name, secret_name, rbac_name) = match objects {
        Objects::Bare => {
            let n = format!("floor-{i:05}");
            (n.clone(), n.clone(), n.clone(), n)
        }
        Objects::Operator => {
            let a = format!("agent-{i:05}");
            (
                a.clone(),
                credentials::service_account_name(&a),
                credentials::secret_name(&a),
                credentials::rbac_name(ns, &a),
            )
        }
    };
    let meta = |n: &str| {
        let mut m = ObjectMeta { name: Some(n.to_string()), namespace: Some(ns.to_string()), ..Default::default() };
        if objects == Objects::Operator {
            // The operator's labels, but for `managed-by`, whose value has the same length: the
            // operator, started next, must not take these objects for its own.
            let mut labels = credentials::labels(ns, &agent);
            labels.insert(credentials::MANAGED_BY_LABEL.into(), NOT_MANAGED.into());
            m.labels = Some(labels);
            m.owner_references = Some(vec![owner.clone()]);
        }
        m
    };
    let pp = PostParams::default();
    let sa = ServiceAccount {
        metadata: meta(&sa_name),
        automount_service_account_token: (objects == Objects::Operator).then_some(false),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&pp, &sa).await?;
    let rules = match objects {
        Objects::Bare => rbac::base_rules(&agent),
        Objects::Operator => {
            let read = Grant {
                api_groups: vec![String::new()],
                resources: vec!["pods".into()],
                verbs: vec![Verb::List],
                resource_names: vec![],
            };
            rbac::desired_roles(&agent, ns, &[ns.to_string()], &[read]).remove(ns).unwrap_or_default()
        }
    };
    let role = Role { metadata: meta(&rbac_name), rules: Some(rules.iter().map(rbac::Rule::to_policy_rule).collect()) };
    Api::<Role>::namespaced(client.clone(), ns).create(&pp, &role).await?;
    let rb: RoleBinding = RoleBinding {
        metadata: meta(&rbac_name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: rbac_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa_name.clone(),
            namespace: Some(ns.to_string()),
            api_group: None,
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns).create(&pp, &rb).await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let secret = secrets
        .create(
            &pp,
            &Secret {
                metadata: meta(&secret_name),
                type_: Some(credentials::SECRET_TYPE.into()),
                ..Default::default()
            },
        )
        .await?;
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some(secret_name.clone()),
                uid: secret.uid(),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let t = Api::<ServiceAccount>::namespaced(client.clone(), ns).create_token_request(&sa_name, &pp, &tr).await?;
    let status = t.status.context("a TokenRequest without a status")?;
    let (token, expires) = (status.token, status.expiration_timestamp);
    anyhow::ensure!(!token.is_empty(), "a TokenRequest without a token");
    let patch = match objects {
        Objects::Bare => json!({"data": {credentials::TOKEN_KEY: ByteString(token.into_bytes())}}),
        Objects::Operator => {
            let issued = credentials::IssuedToken {
                issued_at: jiff::Timestamp::now(),
                expires_at: expires.0,
                spec: credentials::token_spec(Duration::from_secs(3600), &[]),
                id: credentials::CredentialId::of_token(&token),
            };
            let header = format!("Bearer {token}");
            json!({
                "metadata": {"annotations": issued.annotations()},
                "data": {
                    credentials::TOKEN_KEY: ByteString(token.into_bytes()),
                    credentials::AUTHORIZATION_KEY: ByteString(header.into_bytes()),
                }
            })
        }
    };
    secrets.patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Agent `i` of a run, as the user applies it: scoped to its namespace, granted `read`.
fn bench_agent(i: usize, ns: &str, read: &str, run: &str) -> SocAgent {
    let mut a = agent(&format!("agent-{i:05}"), ns, Tier::Supervised, &[read], &[ns]);
    a.metadata.labels.get_or_insert_default().insert("bench-run".into(), run.to_string());
    a
}

/// The namespace of agent `i` among `namespaces`: agents are dealt round-robin.
fn home(namespaces: &[String], i: usize) -> &str {
    &namespaces[i % namespaces.len()]
}

/// `k` namespaces named `<prefix>-<run>-<j>`, deleted when dropped.
async fn namespaces(client: &Client, prefix: &str, k: usize) -> Result<Namespaces> {
    let base = unique(prefix);
    let names: Vec<String> = (0..k).map(|j| format!("{base}-{j:03}")).collect();
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for n in &names {
        api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": n}}))?).await?;
    }
    Ok(Namespaces { names })
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
    // Agents dealt over this many namespaces (each agent scoped to its own), in every phase alike.
    let k = arg("--namespaces", 1).max(1);
    let client = admin().await?;
    install_crds(&client).await?;
    default_policy(&client).await?;

    // 1. The write floor: the same writes by a plain client, as the admin (system:masters: the API
    // server skips RBAC for it) and as the operator's own ServiceAccount (authorized by RBAC, as
    // the operator is), with bare objects and with the operator's own objects, and last with the
    // SocAgents created first as in the operator's run — the floor the ratio is taken against.
    let as_operator = operator_client().await?;
    // No operator runs during the floors: a webhook configuration left behind would refuse their
    // SocAgent creates (reviewed, failing closed).
    forget_webhook(&client).await?;
    // The SocAction the agents are granted, named before the floor so that the floor's SocAgents
    // are the operator run's to the byte.
    let read = unique("bench-read");
    let mut floors = Vec::new();
    let floor_runs = [
        ("the admin, bare objects", &client, Objects::Bare, false, "bench-floor"),
        ("the operator's ServiceAccount, bare objects", &as_operator, Objects::Bare, false, "bench-floor-sa"),
        (
            "the operator's ServiceAccount, the operator's objects",
            &as_operator,
            Objects::Operator,
            false,
            "bench-floor-op",
        ),
        (
            "the operator's ServiceAccount, the operator's objects, each after the admin creates its SocAgent",
            &as_operator,
            Objects::Operator,
            true,
            "bench-floor-in",
        ),
    ];
    let mut floor_namespaces = Vec::new();
    for (who, c, objects, inputs, prefix) in floor_runs {
        let nss = namespaces(&client, prefix, k).await?;
        // One owner per namespace, as each agent's objects have their SocAgent. Not the SocAgent
        // itself: deleting it before the operator starts would have the garbage collector delete
        // its objects while the operator runs.
        let mut owners = std::collections::BTreeMap::new();
        for ns in &nss.names {
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some("owner".into()), ..Default::default() },
                ..Default::default()
            };
            let cm = Api::<ConfigMap>::namespaced(client.clone(), ns).create(&PostParams::default(), &cm).await?;
            let owner = OwnerReference {
                api_version: ConfigMap::api_version(&()).to_string(),
                kind: ConfigMap::kind(&()).to_string(),
                name: cm.name_any(),
                uid: cm.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            };
            owners.insert(ns.clone(), owner);
        }
        let run = unique("bench");
        let cp0 = control_plane_cpu();
        let r0 = api_requests(&client).await;
        let start = Instant::now();
        stream::iter(0..n)
            .map(|i| {
                let (c, admin) = (c.clone(), client.clone());
                let ns = home(&nss.names, i).to_string();
                let owner = owners[&ns].clone();
                let input = inputs.then(|| bench_agent(i, &ns, &read, &run));
                async move {
                    if let Some(a) = input {
                        Api::<SocAgent>::namespaced(admin, &ns).create(&PostParams::default(), &a).await?;
                    }
                    floor_one(&c, &ns, i, objects, &owner).await
                }
            })
            .buffer_unordered(conc)
            .try_collect::<Vec<()>>()
            .await
            .with_context(|| format!("floor writes as {who}"))?;
        let floor = start.elapsed();
        println!(
            "floor: {n} agents' writes ({} each) by a plain client as {who} at concurrency {conc}: {:.2}s ({:.0} agents/s)",
            if inputs { 7 } else { 6 },
            floor.as_secs_f64(),
            n as f64 / floor.as_secs_f64()
        );
        cpu_report("floor", &cp0, &control_plane_cpu(), floor);
        request_report(&r0, &api_requests(&client).await, n);
        if inputs {
            // The operator, started next, would take these SocAgents for its own. One
            // delete-collection call gives up after the API server's 60 s with 10,000 of them:
            // again until none is left, so that the operator's run starts on a quiet control plane.
            let all: Api<SocAgent> = Api::all(client.clone());
            let lp = ListParams::default().labels(&format!("bench-run={run}"));
            wait_for("the floor's SocAgents deleted", Duration::from_secs(600), || async {
                for ns in &nss.names {
                    let _ = Api::<SocAgent>::namespaced(client.clone(), ns)
                        .delete_collection(&Default::default(), &lp)
                        .await;
                }
                Ok(all.list(&lp.clone().limit(1)).await?.items.is_empty().then_some(()))
            })
            .await?;
        }
        floors.push(floor);
        floor_namespaces.push(nss);
    }
    let (floor_admin, floor_bare, floor_objects, floor) = (floors[0], floors[1], floors[2], floors[3]);
    let agent_nss = namespaces(&client, "bench-agents", k).await?;

    // 2. The operator.
    apply(&Api::<SocAction>::all(client.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let op = Operator::start_with(&["--concurrency", &conc.to_string()]).await?;
    let pid = op.pid().expect("operator pid");
    let rss_idle = rss_mib(pid).unwrap_or(0.0);
    let run = unique("bench");
    let label = format!("bench-run={run}");
    let cp1 = control_plane_cpu();
    let r1 = api_requests(&client).await;
    let op_cpu0 = cpu_secs(pid);
    let (applied, converged) = converge(&client, &agent_nss.names, &read, &run, n, conc).await?;
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
        "ratio (operator / floor as the operator's ServiceAccount with the operator's objects, SocAgents created first): \
         {:.2}  (target <= 1.5); against that floor without the SocAgents: {:.2}; with bare objects: {:.2}; \
         against the admin floor: {:.2}",
        converged.as_secs_f64() / floor.as_secs_f64(),
        converged.as_secs_f64() / floor_objects.as_secs_f64(),
        converged.as_secs_f64() / floor_bare.as_secs_f64(),
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
    // How often the agent controller ran per agent, and the time it spent (its own work and the
    // API round trips it waited on).
    let sample = |suffix: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(&format!("socwarden_reconcile_duration_seconds_{suffix}{{")))
            .filter(|l| l.contains("controller=\"socagent\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    println!(
        "agent reconciles: {:.2} per agent, {:.2} ms each on average",
        sample("count") / n as f64,
        1000.0 * sample("sum") / sample("count").max(1.0)
    );
    let per_agent = m.lines().filter(|l| l.contains("agent=\"agent-")).count();
    println!(
        "/metrics at {n} agents: {:.1} KiB, {per_agent} per-agent series  (target < 1 MiB at 10000)",
        m.len() as f64 / 1024.0
    );
    delete_agents(&client, &agent_nss.names, &label, n).await?;
    drop(op);
    let replicas = arg("--replicas", 1);
    if replicas > 1 {
        let shards = arg("--shards", 3 * replicas);
        // Fresh namespaces: the one operator's objects may still be being collected.
        let nss = namespaces(&client, "bench-sharded", k).await?;
        sharded(&client, &nss.names, &read, n, conc, replicas, shards, converged, peak).await?;
    }
    drop(floor_namespaces);
    Ok(())
}

/// The same agents converged by `replicas` operators sharing `shards` shards (one Lease each),
/// next to the one operator's run above: convergence time and peak RSS per replica, as ratios.
#[allow(clippy::too_many_arguments)]
async fn sharded(
    client: &Client,
    nss: &[String],
    read: &str,
    n: usize,
    conc: usize,
    replicas: usize,
    shards: usize,
    one: Duration,
    one_rss: f64,
) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases = Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for l in leases.list(&ListParams::default()).await? {
        let _ = leases.delete(&l.name_any(), &Default::default()).await;
    }
    // The one operator's agents are deleted; the garbage collector removes their objects after
    // them. Started before it is done, the replicas would cache those too (at 10,000 agents: idle
    // RSS 115 MiB against 21 MiB) and the comparison would not be like for like.
    let gc = Instant::now();
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let managed = ListParams::default().labels(credentials::MANAGED_SELECTOR).limit(1);
    let collected = wait_for("the one operator's objects collected", Duration::from_secs(900), || async {
        Ok(sas.list(&managed).await?.items.is_empty().then_some(()))
    })
    .await;
    match collected {
        Ok(()) => println!("the one operator's objects collected {:.1}s after its agents", gc.elapsed().as_secs_f64()),
        Err(e) => println!("sharded: starting with the one operator's objects not all collected: {e}"),
    }
    let conc_s = conc.to_string();
    let shards_s = shards.to_string();
    let mut ops = Vec::new();
    for r in 0..replicas {
        let (identity, peer) = (format!("bench-{r}"), format!("127.0.0.1:{}", free_port()));
        let args = [
            "--concurrency",
            &conc_s,
            "--leader-elect",
            "--identity",
            &identity,
            "--lease-duration",
            "6s",
            "--peer-addr",
            &peer,
            "--shards",
            &shards_s,
        ];
        ops.push(Operator::start_opts(&args, r == 0).await?);
    }
    let names: Vec<String> = (0..replicas).map(|r| format!("bench-{r}")).collect();
    let held = wait_for("every shard held", Duration::from_secs(120), || async {
        let holders = shard_holders(client, shards).await?;
        if holders.len() < shards || !holders.values().all(|h| names.contains(h)) {
            return Ok(None);
        }
        let mut per = std::collections::BTreeMap::<String, usize>::new();
        for h in holders.into_values() {
            *per.entry(h).or_default() += 1;
        }
        // Settled: each replica with its share (the assignment every replica computes).
        let want = soc_warden::shard::assignment(shards, names.iter().map(String::as_str));
        let mut wanted = std::collections::BTreeMap::<String, usize>::new();
        for h in want.into_iter().flatten() {
            *wanted.entry(h.to_string()).or_default() += 1;
        }
        Ok((per == wanted).then_some(per))
    })
    .await?;
    let pids: Vec<u32> = ops.iter().filter_map(|o| o.pid()).collect();
    let idle: Vec<f64> = pids.iter().map(|p| rss_mib(*p).unwrap_or(0.0)).collect();
    let run = unique("bench");
    let label = format!("bench-run={run}");
    let (_, converged) = converge(client, nss, read, &run, n, conc).await?;
    let peaks: Vec<f64> = pids.iter().map(|p| peak_rss_mib(*p).unwrap_or(f64::NAN)).collect();
    let worst = peaks.iter().copied().fold(0.0, f64::max);
    println!(
        "sharded: {replicas} replicas over {shards} shards (per replica {held:?}): {n} agents all Ready after {:.2}s \
         ({:.0} agents/s); ratio to one replica: {:.2}  (target <= 1.0)",
        converged.as_secs_f64(),
        n as f64 / converged.as_secs_f64(),
        converged.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "sharded RSS per replica: idle {idle:.1?} MiB, peak {peaks:.1?} MiB; the largest / one replica's peak \
         ({one_rss:.1} MiB): {:.2}  (target <= 0.45)",
        worst / one_rss
    );
    delete_agents(client, nss, &label, n).await
}

/// Creates the `n` agents of run `run` over `nss` at concurrency `conc` and waits until every one
/// is Ready: the time until they were all applied, and until all were Ready, from the first create.
async fn converge(
    client: &Client,
    nss: &[String],
    read: &str,
    run: &str,
    n: usize,
    conc: usize,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let watcher = {
        let (client, label) = (client.clone(), format!("bench-run={run}"));
        tokio::spawn(async move {
            wait_all_agents(&client, &label, n, ready, Duration::from_secs(600.max(n as u64 / 5))).await
        })
    };
    stream::iter(0..n)
        .map(|i| {
            let ns = home(nss, i);
            let a = bench_agent(i, ns, read, run);
            let api = Api::<SocAgent>::namespaced(client.clone(), ns);
            async move { api.create(&PostParams::default(), &a).await }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await
        .context("creating agents")?;
    let applied = start.elapsed();
    watcher.await??;
    Ok((applied, start.elapsed()))
}

/// Deletes the agents labelled `label` while an operator runs (so their finalizers are released)
/// and waits until they are gone.
async fn delete_agents(client: &Client, nss: &[String], label: &str, n: usize) -> Result<()> {
    let lp = ListParams::default().labels(label);
    for ns in nss {
        Api::<SocAgent>::namespaced(client.clone(), ns).delete_collection(&Default::default(), &lp).await?;
    }
    let all: Api<SocAgent> = Api::all(client.clone());
    wait_for("bench agents deleted", Duration::from_secs(300.max(n as u64 / 20)), || async {
        Ok(all.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await
}
