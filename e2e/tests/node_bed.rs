//! The test bed shares its machine: two checkouts may each run a node (`e2e/cluster up --node`)
//! at once, and `e2e/cluster down` stops exactly what its own `up` started and leaves nothing
//! behind. Run on the node cluster (`on_the_node_…`, see e2e/test): a second node cluster is
//! started beside it from another state directory, runs a pod, and is stopped.

use anyhow::{Context as _, Result, bail, ensure};
use soc_warden_e2e::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn env_of(state: &Path) -> Result<BTreeMap<String, String>> {
    let env =
        std::fs::read_to_string(state.join("env")).with_context(|| format!("no cluster in {}", state.display()))?;
    Ok(env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// `e2e/cluster ARGS` for the cluster whose state is in `state`.
fn cluster(state: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(repo().join("e2e/cluster"))
        .args(args)
        .env("SOC_WARDEN_CLUSTER_DIR", state)
        .env("SOC_WARDEN_NODE_IMAGES", "pause")
        .env_remove("KUBECONFIG")
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "e2e/cluster {args:?}: {text}");
    Ok(text)
}

fn kubectl_in(state: &Path, args: &[&str]) -> Result<String> {
    let (ok, out) = kubectl_with(&state.join("admin.kubeconfig"), args, "")?;
    ensure!(ok, "kubectl {args:?}: {out}");
    Ok(out)
}

fn node_ready(state: &Path) -> Result<bool> {
    let name = env_of(state)?["NODE_NAME"].clone();
    let status =
        kubectl_in(state, &["get", "node", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])?;
    Ok(status.trim() == "True")
}

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| !s.contains("State:\tZ"))
}

/// Processes whose command line names `dir` (the kubelet, containerd and its shims, etcd, …).
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || !alive(&pid) {
            continue;
        }
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

/// Stops the second cluster whatever the outcome.
struct Second(PathBuf);
impl Drop for Second {
    fn drop(&mut self) {
        let _ = cluster(&self.0, &["down"]);
    }
}

#[tokio::test]
async fn on_the_node_two_node_clusters_run_side_by_side_and_down_leaves_nothing() -> Result<()> {
    let first = cluster_dir();
    let first_env = env_of(&first)?;
    if !first_env.contains_key("NODE_NETNS") {
        bail!("the local control plane has no node: start it with `e2e/cluster up --node` (e2e/test does)");
    }
    ensure!(node_ready(&first)?, "the first node is Ready to begin with");
    let second = repo().join("target/e2e-logs").join(unique("second-node"));
    std::fs::create_dir_all(second.parent().context("a parent")?)?;
    let guard = Second(second.clone());
    cluster(&second, &["up", "--node"])?;
    let second_env = env_of(&second)?;

    // Two nodes, each in its own namespace with its own addresses, both Ready.
    ensure!(first_env["NODE_NETNS"] != second_env["NODE_NETNS"], "{first_env:?} vs {second_env:?}");
    ensure!(first_env["API_HOST"] != second_env["API_HOST"], "{first_env:?} vs {second_env:?}");
    ensure!(node_ready(&second)? && node_ready(&first)?, "both nodes Ready");

    // A pod runs on the second node (a container, a sandbox, a shim).
    kubectl_in(
        &second,
        &[
            "run",
            "sleeper",
            "--image=localhost/soc-warden/pause:1.0",
            "--image-pull-policy=Never",
            "--restart=Never",
            "--overrides={\"spec\":{\"automountServiceAccountToken\":false}}",
        ],
    )?;
    wait_for("the pod Running on the second node", Duration::from_secs(60), || async {
        let phase = kubectl_in(&second, &["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"])?;
        Ok((phase.trim() == "Running").then_some(()))
    })
    .await?;
    let sock = second_env["CONTAINERD_SOCK"].clone();
    let out = Command::new("ctr").args(["--address", &sock, "-n", "k8s.io", "tasks", "ls"]).output()?;
    let tasks: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect();
    ensure!(tasks.len() >= 2, "a sandbox and a container run: {tasks:?}");
    ensure!(!processes_naming(&second).is_empty(), "the second cluster's processes name its directory");

    // Down: nothing of the second is left, and the first is untouched.
    cluster(&second, &["down"])?;
    drop(guard);
    let left: Vec<&String> = tasks.iter().filter(|p| alive(p)).collect();
    ensure!(left.is_empty(), "container processes outlived down: {left:?}");
    let procs = processes_naming(&second);
    ensure!(procs.is_empty(), "processes outlived down: {procs:?}");
    let netns = second_env["NODE_NETNS"].clone();
    ensure!(!Path::new("/run/netns").join(&netns).exists(), "the namespace {netns} outlived down");
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    ensure!(!mounts.contains(&second.display().to_string()), "mounts under the second's directory outlived down");
    ensure!(Path::new("/run/netns").join(&first_env["NODE_NETNS"]).exists(), "the first node's namespace is kept");
    ensure!(node_ready(&first)?, "the first node is still Ready");
    kubectl_in(&first, &["get", "--raw", "/readyz"])?;
    Ok(())
}
