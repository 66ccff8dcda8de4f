//! SOC Warden as pods on a real node (`e2e/cluster up --node`: a kubelet with containerd and runc,
//! see e2e/node.sh). The Helm chart is installed by Helm (v4, `e2e/install-chart`) with the image
//! built from the release binary, upgraded while an agent files requests, tested (`helm test`),
//! rolled back and uninstalled; an agent runs the reference agent image and uses the token the
//! operator issued it from the mounted Secret. Every test here is named `on_the_node_…`: e2e/test
//! runs them on their own freshly started node cluster, after the rest of the suite.

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use soc_warden_e2e::node::*;
use soc_warden_e2e::walkthrough::{Up, walk_through};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, Risk, SocAction, SocAgent, Tier, Verb, WorkloadKind, WorkloadRef};
use socwarden_core::agent::credentials;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn on_the_node_the_chart_runs_the_operator_as_two_locked_down_ready_pods() -> Result<()> {
    let admin = admin().await?;
    let pods = install(&admin).await?;
    let env = node_env()?;
    let (node, image) = (&env["NODE_NAME"], &env["OPERATOR_IMAGE"]);
    let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_ref(), Some(node), "{} runs on the node", p.name_any());
        assert_eq!(restarts(p), 0, "{} never restarted", p.name_any());
        assert_eq!(spec.containers[0].image.as_ref(), Some(image));
    }
    // One of them leads; the webhook is registered through the chart's Service.
    leader_among(&admin, &names).await?;
    let hooks = Api::<ValidatingWebhookConfiguration>::all(admin.clone()).list(&ListParams::default()).await?;
    let services: Vec<String> = hooks
        .items
        .iter()
        .flat_map(|h| h.webhooks.iter().flatten())
        .filter_map(|w| w.client_config.service.as_ref())
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    assert!(!services.is_empty(), "the webhooks are reached through a Service");
    assert!(services.iter().all(|s| s == &format!("{OPERATOR_NAMESPACE}/{DEPLOYMENT}")), "{services:?}");

    // What the processes really are: non-root, no capabilities, a read-only image, and writable
    // only where the chart mounts something writable.
    let running = running_in(OPERATOR_NAMESPACE)?;
    assert_eq!(running.iter().filter(|r| r.container == "warden").count(), 2, "{running:?}");
    for r in running.iter().filter(|r| r.container == "warden") {
        let status = std::fs::read_to_string(format!("/proc/{}/status", r.pid))?;
        let field = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or_default().to_string();
        assert!(field("Uid:").split_whitespace().skip(1).all(|u| u == "65532"), "{}: {}", r.pod, field("Uid:"));
        assert_eq!(field("CapEff:").split_whitespace().nth(1), Some("0000000000000000"), "{}", r.pod);
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", r.pid))?;
        let mut writable = BTreeSet::new();
        for m in mounts.lines() {
            let f: Vec<&str> = m.split_whitespace().collect();
            let (point, opts) = (f[4], f[5]);
            if point == "/" {
                assert!(opts.split(',').any(|o| o == "ro"), "{}: the root filesystem is read-only ({opts})", r.pod);
            }
            let kernel = ["/proc", "/sys", "/dev"].iter().any(|k| point == *k || point.starts_with(&format!("{k}/")));
            if opts.split(',').any(|o| o == "rw") && !kernel {
                writable.insert(point.to_string());
            }
        }
        let allowed: BTreeSet<String> = ["/var/log/soc-warden", "/etc/hosts"].into_iter().map(String::from).collect();
        assert!(writable.is_subset(&allowed), "{}: writable mounts {writable:?}, allowed {allowed:?}", r.pod);
    }
    Ok(())
}

/// The reference agent as a Deployment: one round every 2 s, the token from the mounted Secret.
fn agent_deployment(name: &str, agent: &str, action: &str, scope: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 2,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                    "containers": [{
                        "name": "agent",
                        "image": node_env()?["AGENT_IMAGE"],
                        "imagePullPolicy": "Never",
                        "env": [
                            {"name": "AGENT", "value": agent},
                            {"name": "ACTION", "value": action},
                            {"name": "TARGET_KIND", "value": "Pod"},
                            {"name": "TARGET_NAME", "value": "web-frontend"},
                            {"name": "TARGET_NAMESPACE", "value": scope},
                            {"name": "INTERVAL", "value": "2"}
                        ],
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [
                            {"name": "token", "mountPath": "/var/run/soc-warden", "readOnly": true},
                            {"name": "cluster-ca", "mountPath": "/var/run/kube-root-ca", "readOnly": true}
                        ]
                    }],
                    "volumes": [
                        {"name": "token", "secret": {"secretName": credentials::secret_name(agent), "optional": true}},
                        {"name": "cluster-ca", "configMap": {"name": "kube-root-ca.crt"}}
                    ]
                }
            }
        }
    }))?)
}

/// The fingerprint the reference agent prints and puts in its requests (first 12 hex of SHA-256).
fn fingerprint(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Waits for a request filed by the agent's pod with `token`, stamped as the agent's
/// ServiceAccount by the admission webhook and decided by the operator.
async fn filed_with(admin: &Client, ns: &str, agent: &str, token: &str) -> Result<ActionRequest> {
    let fp = fingerprint(token);
    let requests: Api<ActionRequest> = Api::namespaced(admin.clone(), ns);
    let requester =
        format!("system:serviceaccount:{ns}:{}", socwarden_core::admission::identity::service_account_name(agent));
    wait_for(&format!("a request filed with token {fp}, decided"), T, || async {
        let found = requests.list(&ListParams::default()).await?.items.into_iter().find(|r| {
            r.spec.justification.contains(&fp)
                && r.spec.requester == requester
                && r.status.as_ref().and_then(|s| s.decision) == Some(Decision::AutoApproved)
        });
        Ok(found)
    })
    .await
}

async fn agent_pod(admin: &Client, ns: &str, app: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    wait_for("the agent's pod Ready", T, || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await?.items;
        Ok(list.into_iter().find(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)))
    })
    .await
}

#[tokio::test]
async fn on_the_node_an_agent_pod_uses_its_mounted_token_follows_rotation_and_stops_when_paused() -> Result<()> {
    let admin = admin().await?;
    install(&admin).await?;
    let ns = Namespaces::create(&admin, &["agents", "scope"]).await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    apply(&Api::<Deployment>::namespaced(admin.clone(), home), &agent_deployment("bot", "bot", &read, scope)?).await?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let mut a = agent("bot", home, Tier::Supervised, &[&read], &[scope]);
    a.spec.workload_ref =
        Some(WorkloadRef { kind: WorkloadKind::Deployment, name: "bot".into(), grace_period_seconds: None });
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "Ready", T, ready).await?;

    // The pod reads the issued token from its volume and files with it: the in-cluster webhook
    // stamps the agent's identity, the in-cluster leader decides.
    let first = agent_token(&admin, home, "bot").await?.unwrap();
    filed_with(&admin, home, "bot", &first).await?;
    let pod = agent_pod(&admin, home, "bot").await?;
    let uid = pod.uid().unwrap();

    // Rotation: the operator replaces the token (made due by moving its issue time back); the
    // kubelet refreshes the mounted Secret and the same process uses the new token.
    let iat = credentials::jwt_claims(&first).and_then(|c| c["iat"].as_i64()).expect("iat");
    wait_for("the second after the token's iat", T, || async {
        Ok((jiff::Timestamp::now().as_second() > iat).then_some(()))
    })
    .await?;
    let now = jiff::Timestamp::now();
    let patch = json!({"metadata": {"annotations": {
        credentials::ISSUED_AT: (now - jiff::SignedDuration::from_secs(3060)).to_string(),
        credentials::EXPIRES_AT: (now + jiff::SignedDuration::from_secs(540)).to_string(),
    }}});
    Api::<Secret>::namespaced(admin.clone(), home)
        .patch(&credentials::secret_name("bot"), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let rotated = wait_for("a rotated token", T, || async {
        Ok(agent_token(&admin, home, "bot").await?.filter(|t| *t != first))
    })
    .await?;
    let started = Instant::now();
    filed_with(&admin, home, "bot", &rotated).await?;
    eprintln!("the pod used the rotated token {:?} after the rotation", started.elapsed());
    let same = agent_pod(&admin, home, "bot").await?;
    assert_eq!(same.uid().unwrap(), uid, "the same pod, not a new one");
    assert_eq!(restarts(&same), 0, "without a restart");

    // Pause: replicas 0 and the process gone from the node, not only from the API.
    a.spec.paused = true;
    apply(&agents, &a).await?;
    let paused_at = Instant::now();
    // The operator acts once it leads (a replica that just started waits for the lease): measured
    // from its scale-down, which comes right after it deleted the pods with the agent's grace.
    wait_for("the workload scaled to zero", T, || async {
        let d = Api::<Deployment>::namespaced(admin.clone(), home).get("bot").await?;
        Ok((d.spec.and_then(|s| s.replicas) == Some(0)).then_some(()))
    })
    .await?;
    let acted = paused_at.elapsed();
    let grace = Api::<Pod>::namespaced(admin.clone(), home)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|p| p.metadata.deletion_grace_period_seconds)
        .collect::<Vec<_>>();
    wait_for("the agent's container gone from the node", T, || async {
        Ok(running_in(home)?.is_empty().then_some(()))
    })
    .await?;
    let gone = paused_at.elapsed();
    wait_for("the agent's pod gone from the API", T, || async {
        let pods = Api::<Pod>::namespaced(admin.clone(), home).list(&ListParams::default()).await?.items;
        Ok(pods.is_empty().then_some(()))
    })
    .await?;
    eprintln!(
        "paused: the operator acted {acted:?} after the pause (pods deleted with grace {grace:?} s); container gone {gone:?}, pod object {:?} after it",
        paused_at.elapsed()
    );
    // The process stops within the agent's grace period (2 s by default), not the pod's 30 s; the
    // rest is the kubelet's sync. (The pod object's removal is the kubelet's bookkeeping after.)
    let after = gone.saturating_sub(acted);
    assert!(after < Duration::from_secs(2 + 6), "the process outlived the operator's action by {after:?}");

    // Resume: a new pod starts and files with a fresh, working token.
    a.spec.paused = false;
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "bot", "Ready again", T, ready).await?;
    let fresh = agent_token(&admin, home, "bot").await?.unwrap();
    assert!(fresh != first && fresh != rotated, "resuming issues a fresh token");
    filed_with(&admin, home, "bot", &fresh).await?;
    let back = agent_pod(&admin, home, "bot").await?;
    assert_ne!(back.uid().unwrap(), uid, "a new pod after the resume");
    assert_eq!(running_in(home)?.len(), 1, "one agent container runs again");
    Ok(())
}

#[tokio::test]
async fn on_the_node_killing_the_leader_pod_hands_the_lease_over_within_the_lease_plus_2s() -> Result<()> {
    let admin = admin().await?;
    let pods = install(&admin).await?;
    let old = leader_among(&admin, &pods.iter().map(|p| p.name_any()).collect()).await?;
    let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get(soc_warden::leader::LEASE).await?;
    let lease_secs = lease.spec.as_ref().and_then(|s| s.lease_duration_seconds).unwrap_or(15) as u64;
    assert!(pods.iter().any(|p| p.name_any() == old));
    let pid = operator_pid(&old)?;

    // A crash, not a shutdown (see `crash`).
    let killed = Instant::now();
    crash(&admin, &old, pid).await?;
    let new = wait_for("another pod holds the lease", Duration::from_secs(lease_secs + 30), || async {
        Ok(leader(&admin).await.ok().filter(|h| *h != old))
    })
    .await?;
    let took = killed.elapsed();
    eprintln!("{new} took over from {old} {took:?} after the kill (lease {lease_secs}s)");
    assert!(took <= Duration::from_secs(lease_secs + 2), "took over after {took:?}, lease {lease_secs}s + 2s");
    // And it leads for real: it decides a request.
    let ns = Namespaces::create(&admin, &["failover"]).await?;
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    apply(
        &Api::<SocAgent>::namespaced(admin.clone(), ns.get(0)),
        &agent("bot", ns.get(0), Tier::Supervised, &[&read], &[ns.get(0)]),
    )
    .await?;
    wait_agent(&admin, ns.get(0), "bot", "Ready under the new leader", T, ready).await?;
    operator_pods(&admin, 2).await?;
    Ok(())
}

#[tokio::test]
async fn on_the_node_the_readme_walk_through_runs_against_the_in_cluster_operator() -> Result<()> {
    let admin = admin().await?;
    node_env()?;
    // `e2e/up --node` against the running node cluster (KUBECONFIG set, so it starts nothing):
    // the chart, the examples, the gateway forwarded to 127.0.0.1:9444.
    std::fs::create_dir_all(repo().join("target/e2e-logs"))?;
    let log = std::fs::File::create(repo().join("target/e2e-logs/e2e-up-node.log"))?;
    let _up = Up(Command::new(repo().join("e2e/up"))
        .arg("--node")
        .env("KUBECONFIG", admin_kubeconfig())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting e2e/up --node")?);
    operator_pods(&admin, 2).await?;
    wait_for("the gateway forwarded to 127.0.0.1:9444", T, || async {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", 9444)).await.ok().map(|_| ()))
    })
    .await?;
    // The examples' agents run the reference agent: each pod files with the token SOC Warden
    // issued it, and says what it may do (its log, read through the API server and the kubelet).
    let token = wait_for("the example triage-bot's token", T, || async {
        agent_token(&admin, "soc-agents", "triage-bot").await
    })
    .await?;
    filed_with(&admin, "soc-agents", "triage-bot", &token).await?;
    wait_for("a triage-bot pod saying what it may do", T, || async {
        let pod = agent_pod(&admin, "soc-agents", "triage-bot").await?.name_any();
        let said = admin_kubectl(&["-n", "soc-agents", "logs", &pod])?;
        Ok((said.contains("\"event\":\"may\"") && said.contains("actionrequests")).then_some(()))
    })
    .await?;
    walk_through(&admin).await?;

    // It was the pods that decided: the leader's decision log, read through its process's root,
    // holds the isolation and its approval.
    let pods = operator_pods(&admin, 2).await?;
    let holder = leader_among(&admin, &pods.iter().map(|p| p.name_any()).collect()).await?;
    let pid = operator_pid(&holder)?;
    let log = std::fs::read_to_string(format!("/proc/{pid}/root/var/log/soc-warden/decisions.jsonl"))?;
    let isolation: Vec<&str> = log.lines().filter(|l| l.contains("isolate-web-frontend")).collect();
    assert!(!isolation.is_empty(), "the leader's decision log records the isolation:\n{log}");
    Ok(())
}

/// An AutonomyPolicy of one test, deleted when dropped.
struct TestPolicy(String);

impl Drop for TestPolicy {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        blocking_cleanup(move |client| async move {
            let _ = Api::<socwarden_api::AutonomyPolicy>::all(client).delete(&name, &DeleteParams::default()).await;
        });
    }
}

/// Evicts an operator pod as `kubectl drain` does (a policy/v1 Eviction, which its
/// PodDisruptionBudget may refuse): whether it was evicted, and what the API server said. With
/// kubectl: kube's client retries a 429 until the budget allows the eviction.
fn evict(name: &str) -> Result<(bool, String)> {
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE}});
    let path = format!("/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{name}/eviction");
    kubectl_with(&admin_kubeconfig(), &["create", "--raw", &path, "-f", "-"], &eviction.to_string())
}

/// Issue 29: `helm upgrade` with a changed value while an agent keeps filing requests (ten a
/// second, its policy allowing it): the rolling update replaces both pods, every request filed
/// meanwhile is admitted, stamped as the agent and decided (admission never goes dark), the Ready
/// operator pods never drop below the PodDisruptionBudget's minAvailable, and afterwards the budget
/// refuses the eviction that would leave no operator, while the agent still files.
#[tokio::test]
async fn on_the_node_helm_upgrade_rolls_the_pods_while_an_agent_files_and_admission_never_goes_dark() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    let admin = admin().await?;
    let before: BTreeSet<String> = install(&admin).await?.iter().map(|p| p.name_any()).collect();
    let (revision, _) = release()?;
    let args = operator_args(&admin).await?;
    let concurrency = if args.contains(&"--concurrency=16".to_string()) { "24" } else { "16" };

    let policy = TestPolicy(unique("filing"));
    apply_yaml(
        &admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {}}}\n\
             spec: {{requests: {{maxPerMinute: 1200, maxPending: 500}}}}\n",
            policy.0
        ),
    )
    .await?;
    let ns = Namespaces::create(&admin, &["filer", "scope"]).await?;
    let (home, scope) = (ns.get(0).to_string(), ns.get(1).to_string());
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    let mut a = agent("filer", &home, Tier::Supervised, &[&read], &[&scope]);
    a.spec.policy_ref = policy.0.clone();
    apply(&Api::<SocAgent>::namespaced(admin.clone(), &home), &a).await?;
    wait_agent(&admin, &home, "filer", "Ready", T, ready).await?;
    let token = agent_token(&admin, &home, "filer").await?.ok_or_else(|| anyhow!("no token"))?;
    let as_agent = with_token(&token).await?;

    // The agent files every 100 ms until told to stop; each create's outcome is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let filer = tokio::spawn({
        let (stop, count, home, scope, read) = (stop.clone(), count.clone(), home.clone(), scope.clone(), read.clone());
        async move {
            let mut filed: Vec<(String, Result<(), String>)> = vec![];
            while !stop.load(Relaxed) {
                count.fetch_add(1, Relaxed);
                let name = format!("during-{:05}", filed.len());
                let r = request(&name, "filer", &read, json!({}), &scope, "web-frontend");
                let outcome = file(&as_agent, &home, &r).await.map(|_| ()).map_err(|e| e.to_string());
                filed.push((name, outcome));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            filed
        }
    });
    // The fewest Ready operator pods seen, every 100 ms.
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = tokio::spawn({
        let (stop, fewest, admin) = (stop.clone(), fewest.clone(), admin.clone());
        async move {
            let pods: Api<Pod> = Api::namespaced(admin, OPERATOR_NAMESPACE);
            let selector = "app.kubernetes.io/name=soc-warden,app.kubernetes.io/instance=soc-warden";
            while !stop.load(Relaxed) {
                if let Ok(list) = pods.list(&ListParams::default().labels(selector)).await {
                    let n =
                        list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p)).count();
                    fewest.fetch_min(n, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (started, filed_before) = (Instant::now(), count.load(Relaxed));
    let set = format!("concurrency={concurrency}");
    let after = install_with(&admin, &["--set", &set]).await;
    let (took, during) = (started.elapsed(), count.load(Relaxed) - filed_before);
    let fewest_in_rollout = fewest.load(Relaxed);
    let after: BTreeSet<String> = after?.iter().map(|p| p.name_any()).collect();
    assert!(before.is_disjoint(&after), "both pods replaced: {before:?} -> {after:?}");
    assert!(operator_args(&admin).await?.contains(&format!("--concurrency={concurrency}")), "the changed value");
    assert_eq!(release()?, (revision + 1, "deployed".to_string()), "one more revision, deployed");

    // The budget, as upgraded: one pod may be evicted, not the second (while the agent files on).
    let pdb = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get(DEPLOYMENT)
        .await?;
    let min_available = match pdb.spec.and_then(|s| s.min_available) {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => n as usize,
        other => bail!("the PodDisruptionBudget's minAvailable: {other:?}"),
    };
    wait_for("the budget allows one disruption", T, || async {
        let pdb =
            Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
                .get(DEPLOYMENT)
                .await?;
        Ok((pdb.status.map(|s| s.disruptions_allowed) == Some(1)).then_some(()))
    })
    .await?;
    let mut names = after.iter();
    let (first, second) = (names.next().unwrap(), names.next().unwrap());
    let (evicted, said) = evict(first)?;
    assert!(evicted, "the first eviction, within the budget: {said}");
    let (evicted, said) = evict(second)?;
    assert!(
        !evicted && said.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "the eviction of the last Ready operator pod is refused by the budget: {said}"
    );
    operator_pods(&admin, 2).await?;
    // The agent files on until every replaced or evicted pod has ended (each serves 5 s more
    // after it is deleted, then stops): the whole of their going is covered.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let selector = "app.kubernetes.io/name=soc-warden,app.kubernetes.io/instance=soc-warden";
    wait_for("only the two current operator pods left", T, || async {
        let all = pods.list(&ListParams::default().labels(selector)).await?.items;
        Ok((all.len() == 2 && all.iter().all(|p| p.metadata.deletion_timestamp.is_none())).then_some(()))
    })
    .await?;
    stop.store(true, Relaxed);
    let filed = filer.await?;
    sampler.await?;

    let refused: Vec<&(String, Result<(), String>)> = filed.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        refused.is_empty(),
        "{} of {} requests refused during the upgrade: {refused:?}",
        refused.len(),
        filed.len()
    );
    let requester =
        format!("system:serviceaccount:{home}:{}", socwarden_core::admission::identity::service_account_name("filer"));
    let requests: Api<ActionRequest> = Api::namespaced(admin.clone(), &home);
    wait_for("every request filed during the upgrade stamped and decided", T, || async {
        let list = requests.list(&ListParams::default()).await?.items;
        let decided: BTreeSet<String> = list
            .iter()
            .filter(|r| {
                r.spec.requester == requester
                    && r.status.as_ref().and_then(|s| s.decision) == Some(Decision::AutoApproved)
            })
            .map(|r| r.name_any())
            .collect();
        Ok(filed.iter().all(|(n, _)| decided.contains(n)).then_some(()))
    })
    .await?;
    eprintln!(
        "helm upgrade took {took:?}, {during} requests filed meanwhile ({} in all, the evictions' included), every one stamped and decided; at least {fewest_in_rollout} operator pods Ready during the rolling update, {} with the evictions (minAvailable {min_available})",
        filed.len(),
        fewest.load(Relaxed)
    );
    assert!(during >= 10, "the agent filed throughout the upgrade ({during} requests in {took:?})");
    for (when, n) in [("during the rolling update", fewest_in_rollout), ("with the evictions", fewest.load(Relaxed))] {
        assert!(n >= min_available, "{n} Ready operator pods at one point {when}, below minAvailable {min_available}");
    }
    Ok(())
}

/// `helm test` passes against the pods (the webhook's TLS for the Service's name and its refusal of
/// a caller without the API server's certificate, /metrics) and fails when nothing serves; `helm
/// rollback` to the revision before an upgrade brings its values back.
#[tokio::test]
async fn on_the_node_helm_test_passes_fails_without_the_operator_and_rollback_restores_a_revision() -> Result<()> {
    let admin = admin().await?;
    install(&admin).await?;
    let (revision, status) = release()?;
    assert_eq!(status, "deployed");
    let test = ["test", RELEASE, "-n", OPERATOR_NAMESPACE, "--logs", "--timeout", "120s"];
    let out = helm_admin(&test)?;
    assert!(out.contains("Succeeded"), "{out}");
    assert!(
        out.contains(":443/helm-test: 401 as expected"),
        "the webhook refuses a caller without a client certificate: {out}"
    );
    assert!(out.contains(":8080/metrics: 200 as expected"), "/metrics serves: {out}");

    // Nothing serving: the test fails, saying why.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    deployments.patch_scale(DEPLOYMENT, &PatchParams::default(), &Patch::Merge(&scale(0))).await?;
    wait_for("no operator container on the node", T, || async {
        Ok(running_in(OPERATOR_NAMESPACE)?.iter().all(|r| r.container != "warden").then_some(()))
    })
    .await?;
    let (ok, failed) = helm_with(Some(&admin_kubeconfig()), &test)?;
    deployments.patch_scale(DEPLOYMENT, &PatchParams::default(), &Patch::Merge(&scale(2))).await?;
    assert!(!ok, "helm test passed with no operator running: {failed}");
    assert!(failed.contains("probing https://") && failed.contains("probing http://"), "each probe says why: {failed}");
    operator_pods(&admin, 2).await?;

    // An upgrade changes a value; the rollback to the revision before brings it back.
    let json_logs = "--log-format=json".to_string();
    assert!(operator_args(&admin).await?.contains(&json_logs));
    install_with(&admin, &["--set", "logFormat=text"]).await?;
    assert!(operator_args(&admin).await?.contains(&"--log-format=text".to_string()));
    assert_eq!(release()?.0, revision + 1);
    let rev = revision.to_string();
    helm_admin(&["rollback", RELEASE, &rev, "-n", OPERATOR_NAMESPACE, "--wait", "--timeout", "180s"])?;
    assert_eq!(release()?, (revision + 2, "deployed".to_string()), "the rollback is a new revision");
    assert!(operator_args(&admin).await?.contains(&json_logs), "the rolled back value");
    operator_pods(&admin, 2).await?;
    let out = helm_admin(&test)?;
    assert!(out.contains("Succeeded"), "helm test after the rollback: {out}");
    Ok(())
}

/// The commands of the Helm page's "Uninstall and clean up", as written there.
fn readme_cleanup() -> Result<String> {
    let readme = std::fs::read_to_string(repo().join("docs/getting-started/helm.md"))?;
    let section = readme.split_once("## Uninstall and clean up").ok_or_else(|| anyhow!("no cleanup section"))?.1;
    let block = section.split_once("```sh\n").ok_or_else(|| anyhow!("no commands in the cleanup section"))?.1;
    Ok(block.split_once("```").ok_or_else(|| anyhow!("an unclosed block"))?.0.to_string())
}

/// Whether an object's metadata ties it to SOC Warden: its group, a `socwarden.io/` label,
/// annotation or finalizer, the chart's labels, or a name of ours.
fn ours(item: &Value) -> bool {
    let m = &item["metadata"];
    let keys = |f: &str| m[f].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let name = m["name"].as_str().unwrap_or_default();
    item["apiVersion"].as_str().is_some_and(|v| v.starts_with("socwarden.io/"))
        || keys("labels").iter().chain(&keys("annotations")).any(|k| k.starts_with("socwarden.io/"))
        || m["labels"]["app.kubernetes.io/part-of"] == "soc-warden"
        || m["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f.as_str().is_some_and(|f| f.starts_with("socwarden.io/"))))
        || name.starts_with("socwarden")
        || name.starts_with("soc-warden")
        || name.ends_with(".socwarden.io")
        || m["namespace"] == OPERATOR_NAMESPACE
}

/// Every object of SOC Warden (`ours`) of every kind the API server lists, Events aside, as
/// "kind namespace/name".
fn of_soc_warden() -> Result<Vec<String>> {
    let kinds = admin_kubectl(&["api-resources", "--verbs=list", "-o", "name"])?;
    let mut found = vec![];
    for kind in kinds.lines().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with("events")) {
        // stdout only: kubectl warns of deprecated kinds on stderr.
        let out = Command::new(kubectl())
            .args(["get", kind, "-A", "-o", "json"])
            .env("KUBECONFIG", admin_kubeconfig())
            .output()?;
        if !out.status.success() {
            bail!("kubectl get {kind}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let list: Value = serde_json::from_slice(&out.stdout)?;
        for item in list["items"].as_array().into_iter().flatten().filter(|i| ours(i)) {
            let m = &item["metadata"];
            found.push(format!(
                "{kind} {}/{}",
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(found)
}

/// Issue 29: `helm uninstall` followed by the README's cleanup leaves nothing of SOC Warden in the
/// cluster: no object of any kind the API server lists carries its group, labels, annotations,
/// finalizers or names (Events excepted: the API server expires them, after an hour), no release,
/// and no container of it on the node.
#[tokio::test]
async fn on_the_node_helm_uninstall_and_the_readme_cleanup_leave_nothing_of_soc_warden() -> Result<()> {
    let admin = admin().await?;
    install(&admin).await?;
    // Something for the cleanup to remove: an agent with its credentials, Role and RoleBinding in
    // two namespaces, and its decided request.
    let ns = Namespaces::create(&admin, &["agents", "scope"]).await?;
    let (home, scope) = (ns.get(0), ns.get(1));
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;
    apply(&Api::<SocAgent>::namespaced(admin.clone(), home), &agent("bot", home, Tier::Supervised, &[&read], &[scope]))
        .await?;
    wait_agent(&admin, home, "bot", "Ready", T, ready).await?;
    let token = agent_token(&admin, home, "bot").await?.ok_or_else(|| anyhow!("no token"))?;
    file(&with_token(&token).await?, home, &request("before-uninstall", "bot", &read, json!({}), scope, "web")).await?;
    decided(&admin, home, "before-uninstall").await?;
    helm_admin(&["test", RELEASE, "-n", OPERATOR_NAMESPACE])?;
    // The sweep below sees SOC Warden where it is: the chart's objects, the operator's, the agent's.
    let installed = of_soc_warden()?;
    for expected in [
        "customresourcedefinitions.apiextensions.k8s.io /socagents.socwarden.io".to_string(),
        format!("deployments.apps {OPERATOR_NAMESPACE}/{DEPLOYMENT}"),
        "validatingwebhookconfigurations.admissionregistration.k8s.io /socwarden.io".into(),
        format!("secrets {home}/{}", credentials::secret_name("bot")),
        format!("socagents.socwarden.io {home}/bot"),
        "clusterroles.rbac.authorization.k8s.io /socwarden-approver".into(),
    ] {
        assert!(installed.contains(&expected), "the sweep finds {expected}: {installed:#?}");
    }

    // The README's commands, with this cluster's kubectl and helm.
    let bin = repo().join(format!("target/e2e-logs/cleanup-bin-{}", std::process::id()));
    std::fs::create_dir_all(&bin)?;
    for (name, path) in [("kubectl", std::path::PathBuf::from(kubectl())), ("helm", helm()?)] {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link)?;
    }
    let commands = readme_cleanup()?;
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &commands])
        .current_dir(repo())
        .env("PATH", path)
        .env("KUBECONFIG", admin_kubeconfig())
        .output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the README's cleanup failed:\n{commands}\n{said}");
    eprintln!("the README's cleanup took {:?}:\n{said}", started.elapsed());
    std::fs::remove_dir_all(&bin)?;

    let (_, releases) = helm_with(Some(&admin_kubeconfig()), &["list", "-A", "-a", "-q"])?;
    assert!(!releases.lines().any(|l| l.trim() == RELEASE), "the release is gone: {releases}");
    assert!(running_in(OPERATOR_NAMESPACE)?.is_empty(), "no container of the operator's namespace runs on the node");
    let left = of_soc_warden()?;
    assert_eq!(left, Vec::<String>::new(), "left of SOC Warden after the README's cleanup");
    Ok(())
}
