//! The local node (`e2e/cluster up --node`, see e2e/node.sh) as the node's tests see it: its env
//! file, the containers containerd really runs, the chart installed as `e2e/up --node` installs it
//! (`e2e/install-chart`), the operator's pods and which of them leads.

use crate::*;
use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(90);
pub const DEPLOYMENT: &str = "soc-warden";

/// What `e2e/cluster up --node` wrote into the cluster's env file.
pub fn node_env() -> Result<BTreeMap<String, String>> {
    let env = std::fs::read_to_string(cluster_dir().join("env"))
        .context("no local control plane: start it with `e2e/cluster up --node` (e2e/test does)")?;
    let vars: BTreeMap<String, String> =
        env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !vars.contains_key("CONTAINERD_SOCK") {
        bail!("the local control plane has no node: start it with `e2e/cluster up --node` (e2e/test does)");
    }
    Ok(vars)
}

/// `ctr` against the node's containerd, in the Kubernetes namespace.
pub fn ctr(sock: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ctr").args(["--address", sock, "-n", "k8s.io"]).args(args).output()?;
    if !out.status.success() {
        bail!("ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// A container the node runs (as containerd knows it, not as the API server says).
#[derive(Debug)]
pub struct Running {
    pub pod: String,
    pub container: String,
    pub pid: u32,
}

/// The containers with a live process in pods of `namespace`.
pub fn running_in(namespace: &str) -> Result<Vec<Running>> {
    let sock = node_env()?["CONTAINERD_SOCK"].clone();
    let mut pids = BTreeMap::new();
    for line in ctr(&sock, &["tasks", "ls"])?.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && f[2] == "RUNNING" {
            pids.insert(f[0].to_string(), f[1].parse::<u32>()?);
        }
    }
    let mut out = vec![];
    for (id, pid) in pids {
        let Ok(info) = ctr(&sock, &["containers", "info", &id]) else { continue };
        let info: Value = serde_json::from_str(&info)?;
        let label = |k: &str| info["Labels"][k].as_str().unwrap_or_default().to_string();
        if label("io.kubernetes.pod.namespace") == namespace && label("io.cri-containerd.kind") == "container" {
            out.push(Running {
                pod: label("io.kubernetes.pod.name"),
                container: label("io.kubernetes.container.name"),
                pid,
            });
        }
    }
    Ok(out)
}

pub fn admin_kubectl(args: &[&str]) -> Result<String> {
    let (ok, out) = kubectl_with(&admin_kubeconfig(), args, "")?;
    if !ok {
        bail!("kubectl {args:?}: {out}");
    }
    Ok(out)
}

/// Installs the chart as `e2e/up --node` does (`e2e/install-chart`: the CRDs, then `helm upgrade
/// --install --wait` with the node's values) and waits for both operator pods to be Ready.
pub async fn install(admin: &Client) -> Result<Vec<Pod>> {
    install_with(admin, &[]).await
}

/// `install` with more helm arguments (`--set …`): an upgrade when the release exists.
pub async fn install_with(admin: &Client, helm_args: &[&str]) -> Result<Vec<Pod>> {
    install_n(admin, 2, helm_args).await
}

/// `install_with`, waiting for `n` Ready pods (the arguments set `replicaCount=<n>`).
pub async fn install_n(admin: &Client, n: usize, helm_args: &[&str]) -> Result<Vec<Pod>> {
    node_env()?;
    // Awaited, not blocking: what the test runs meanwhile (an agent filing) goes on.
    let out = tokio::process::Command::new(repo().join("e2e/install-chart"))
        .args(helm_args)
        .env("KUBECONFIG", admin_kubeconfig())
        .env("HELM", helm()?)
        .output()
        .await?;
    if !out.status.success() {
        bail!("e2e/install-chart: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    operator_pods(admin, n).await
}

/// helm as the admin, failing with its output.
pub fn helm_admin(args: &[&str]) -> Result<String> {
    let (ok, out) = helm_with(Some(&admin_kubeconfig()), args)?;
    if !ok {
        bail!("helm {}: {out}", args.join(" "));
    }
    Ok(out)
}

/// The release's revision and status (`helm status`).
pub fn release() -> Result<(u64, String)> {
    let status: Value =
        serde_json::from_str(&helm_admin(&["status", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json"])?)?;
    let revision = status["version"].as_u64().ok_or_else(|| anyhow!("no revision in {status}"))?;
    Ok((revision, status["info"]["status"].as_str().unwrap_or_default().to_string()))
}

/// The operator container's arguments in the Deployment.
pub async fn operator_args(admin: &Client) -> Result<Vec<String>> {
    let d = Api::<Deployment>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get(DEPLOYMENT).await?;
    Ok(d.spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.args)
        .unwrap_or_default())
}

/// Waits until the operator's Deployment has `n` Ready pods on the node and returns them.
pub async fn operator_pods(admin: &Client, n: usize) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    wait_for(&format!("{n} Ready operator pods on the node"), T, || async {
        let d = Api::<Deployment>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get(DEPLOYMENT).await?;
        let selector = d.spec.and_then(|s| s.selector.match_labels).unwrap_or_default();
        let selector = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let ready: Vec<Pod> = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .collect();
        Ok((ready.len() == n).then_some(ready))
    })
    .await
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// The lease holder, once it is one of `pods`: after an install that replaced the pods (an upgrade,
/// or values set back), the lease of a pod that is gone runs out first.
pub async fn leader_among(admin: &Client, pods: &BTreeSet<String>) -> Result<String> {
    wait_for("a leader among the operator's pods", T, || async {
        Ok(leader(admin).await.ok().filter(|h| pods.contains(h)))
    })
    .await
}

pub async fn leader(admin: &Client) -> Result<String> {
    let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NAMESPACE).get(soc_warden::leader::LEASE).await?;
    lease.spec.and_then(|s| s.holder_identity).ok_or_else(|| anyhow!("the lease has no holder"))
}

/// The pid (on this machine) of the operator process of `pod`, as containerd runs it.
pub fn operator_pid(pod: &str) -> Result<u32> {
    running_in(OPERATOR_NAMESPACE)?
        .into_iter()
        .find(|r| r.pod == pod && r.container == "warden")
        .map(|r| r.pid)
        .ok_or_else(|| anyhow!("no running operator container in {pod}"))
}

/// A crash, not a shutdown: SIGKILL of the operator process `pid` (no lease release), then its
/// pod removed so that the kubelet does not restart it under the same identity.
pub async fn crash(admin: &Client, pod: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -KILL {pid}");
    Api::<Pod>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .delete(pod, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await?;
    Ok(())
}
