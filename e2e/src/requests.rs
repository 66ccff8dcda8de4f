//! Filing and deciding requests as the people and agents of the tests: an ActionRequest or an
//! Approval body, creating it with someone's client, reading the refusal the API server (or the
//! admission webhook behind it) answers, and waiting for the operator's decision.

use crate::cluster::as_user;
use crate::waiting::wait_for;
use anyhow::Result;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use socwarden_api::{ActionRequest, Approval, Decision};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// An ActionRequest `name` of `agent` for `action` against Pod `target_ns/target`.
pub fn request(name: &str, agent: &str, action: &str, params: Value, target_ns: &str, target: &str) -> ActionRequest {
    serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "ActionRequest",
        "metadata": {"name": name},
        "spec": {"agent": agent, "action": action, "parameters": params,
                 "target": {"kind": "Pod", "name": target, "namespace": target_ns},
                 "justification": "alert SOC-1 shows beaconing"}
    }))
    .expect("a valid ActionRequest")
}

/// Creates `r` in `ns` with client `c` (an agent's token or a person's identity).
pub async fn file(c: &Client, ns: &str, r: &ActionRequest) -> kube::Result<ActionRequest> {
    Api::<ActionRequest>::namespaced(c.clone(), ns).create(&PostParams::default(), r).await
}

/// An Approval `name` deciding `request` (`approve` or `deny`).
pub fn approval(name: &str, request: &str, decision: &str) -> Approval {
    serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "Approval",
        "metadata": {"name": name},
        "spec": {"actionRequest": request, "decision": decision, "comment": "checked the alert"}
    }))
    .expect("a valid Approval")
}

/// Creates `a` in `ns` as test identity `who`.
pub async fn approve(who: &str, ns: &str, a: &Approval) -> kube::Result<Approval> {
    let c = as_user(who).await.expect("identity");
    Api::<Approval>::namespaced(c, ns).create(&PostParams::default(), a).await
}

/// The message of a refusal, or `not refused: …` when the call succeeded or failed otherwise.
pub fn refusal(r: kube::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(kube::Error::Api(s)) => s.message,
        other => format!("not refused: {other:?}"),
    }
}

/// Runs `kubectl warden` (the plugin built next to the operator) as test identity `identity`;
/// (success, stdout + stderr).
pub fn kubectl_warden(identity: &str, args: &[&str]) -> Result<(bool, String)> {
    let bin = crate::operator::warden_bin().with_file_name("kubectl-warden");
    if !bin.exists() {
        anyhow::bail!("{} not found: cargo build --bins", bin.display());
    }
    let kubeconfig = crate::cluster::cluster_dir().join(format!("{identity}.kubeconfig"));
    let out = std::process::Command::new(bin).args(args).env("KUBECONFIG", kubeconfig).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Waits until request `name` has a decision other than Pending.
pub async fn decided(admin: &Client, ns: &str, name: &str) -> Result<ActionRequest> {
    let api: Api<ActionRequest> = Api::namespaced(admin.clone(), ns);
    wait_for(&format!("request {name} decided"), T, || async {
        let r = api.get(name).await?;
        let d = r.status.as_ref().and_then(|s| s.decision);
        Ok(d.filter(|d| *d != Decision::Pending).map(|_| r))
    })
    .await
}

/// The decision request `name` shows now.
pub async fn decision_of(admin: &Client, ns: &str, name: &str) -> Result<Option<Decision>> {
    let r = Api::<ActionRequest>::namespaced(admin.clone(), ns).get(name).await?;
    Ok(r.status.and_then(|s| s.decision))
}
