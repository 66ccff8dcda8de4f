//! Helm itself (v4, built from its Go module by `e2e/cluster helm-path`) on the chart
//! `charts/soc-warden`: `helm template` for the tests that read what the chart renders, and `helm`
//! with any arguments for the ones that lint, install, upgrade, test and uninstall it.

use crate::cluster::repo;
use crate::operator::OPERATOR_NAMESPACE;
use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The release name every test and script installs the chart as.
pub const RELEASE: &str = "soc-warden";

pub fn chart_dir() -> PathBuf {
    repo().join("charts/soc-warden")
}

/// The helm binary: `$HELM` (e2e/test sets it), else `e2e/cluster helm-path`, which builds it from
/// its Go module the first time and caches it outside the clone.
pub fn helm() -> Result<PathBuf> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(p) = std::env::var_os("HELM") {
            return Ok(PathBuf::from(p));
        }
        let out = Command::new(repo().join("e2e/cluster"))
            .arg("helm-path")
            .output()
            .map_err(|e| format!("running e2e/cluster helm-path: {e}"))?;
        if !out.status.success() {
            return Err(format!("e2e/cluster helm-path: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Runs helm with `args` (and `KUBECONFIG` when given); returns whether it succeeded and its
/// stdout and stderr together.
pub fn helm_with(kubeconfig: Option<&Path>, args: &[&str]) -> Result<(bool, String)> {
    let mut cmd = Command::new(helm()?);
    cmd.args(args);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

/// The Kubernetes version the tests run on: the one the wrapper module of e2e/cluster names
/// (`e2e/k8s/$SOC_WARDEN_K8S/go.mod`, v1.35 by default), without its `v`.
pub fn tested_kube_version() -> Result<String> {
    let line = std::env::var("SOC_WARDEN_K8S").unwrap_or_else(|_| "v1.35".into());
    let go_mod = std::fs::read_to_string(repo().join(format!("e2e/k8s/{line}/go.mod")))?;
    // `require k8s.io/kubernetes vX` or, inside a require block, `k8s.io/kubernetes vX`.
    go_mod
        .lines()
        .map(|l| l.trim().trim_start_matches("require").split_whitespace().collect::<Vec<_>>())
        .find_map(|w| (w.len() >= 2 && w[0] == "k8s.io/kubernetes").then(|| w[1].trim_start_matches('v').to_string()))
        .ok_or_else(|| anyhow!("e2e/k8s/{line}/go.mod requires no k8s.io/kubernetes"))
}

/// `helm template` of the chart with the given values files (release `soc-warden` in the
/// operator's namespace) for the tested Kubernetes version, the chart's CRDs first unless
/// `skip_crds`. The error is helm's message.
pub fn render_chart(values: &[PathBuf], skip_crds: bool) -> Result<String> {
    render_chart_for(values, skip_crds, &tested_kube_version()?)
}

/// `render_chart` for a given Kubernetes version (a cluster's, as `helm install` reads it).
pub fn render_chart_for(values: &[PathBuf], skip_crds: bool, kube_version: &str) -> Result<String> {
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "template".into(),
        RELEASE.into(),
        chart.display().to_string(),
        "--namespace".into(),
        OPERATOR_NAMESPACE.into(),
        "--kube-version".into(),
        kube_version.into(),
    ];
    for v in values {
        args.extend(["--values".into(), v.display().to_string()]);
    }
    if !skip_crds {
        args.push("--include-crds".into());
    }
    let out = Command::new(helm()?).args(&args).output()?;
    if !out.status.success() {
        bail!("helm template: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
