//! Filing and deciding requests as the people and agents of the tests: an ActionRequest or an
//! Approval body, creating it with someone's client, reading the refusal the API server (or the
//! admission webhook behind it) answers, and waiting for the operator's decision.

use crate::cluster::as_user;
use crate::waiting::wait_for;
use anyhow::Result;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use socwarden_api::{ActionRequest, Approval, ApprovalDecision, Decision, SocAction};
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

/// The content hash of request `ns/request` with its SocAction, as client `c` reads them now:
/// what a person reviewing it is shown (and what the console and `kubectl warden` compute).
pub async fn shown(c: &Client, ns: &str, request: &str) -> Result<String> {
    let r = Api::<ActionRequest>::namespaced(c.clone(), ns).get(request).await?;
    let a = Api::<SocAction>::all(c.clone()).get(&r.spec.action).await?;
    Ok(socwarden_core::admission::signature::request_content(&r.spec, &a.spec))
}

/// Creates `a` in `ns` as test identity `who`. An approval of a request that names no content is
/// given on the content `who` reads now, as a person approves what they just reviewed.
pub async fn approve(who: &str, ns: &str, a: &Approval) -> kube::Result<Approval> {
    let c = as_user(who).await.expect("identity");
    let mut a = a.clone();
    if a.spec.decision == ApprovalDecision::Approve
        && a.spec.seen.is_none()
        && let Some(r) = a.spec.action_request.clone()
    {
        // Unreadable: left without one, so the webhook says what else is wrong.
        a.spec.seen = shown(&c, ns, &r).await.ok();
    }
    Api::<Approval>::namespaced(c, ns).create(&PostParams::default(), &a).await
}

/// The second object of attack 10: the catalog editor adds to an isolation a NetworkPolicy that
/// opens the target's pods to everyone — what the approver never saw.
pub const OPEN_TOO: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: \"isolate-${app}\"\nspec:\n  podSelector: {matchLabels: {app: \"${app}\"}}\n  policyTypes: [Ingress, Egress]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: \"open-till-${app}\"\nspec:\n  podSelector: {}\n  ingress: [{}]\n  policyTypes: [Ingress]\n";

/// The catalog editor (the `gitops` identity) replaces the manifest of SocAction `action`, and
/// waits until the operator — whose caches the admission webhook reads — has seen the edit.
pub async fn edit_manifest(admin: &Client, action: &str, manifest: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let edit = json!({"spec": {"execution": {"manifest": manifest}}});
    let gitops = as_user("gitops").await?;
    let edited = Api::<SocAction>::all(gitops).patch(action, &PatchParams::default(), &Patch::Merge(&edit)).await?;
    let actions = Api::<SocAction>::all(admin.clone());
    wait_for("the operator sees the edit", T, || async {
        let a = actions.get(action).await?;
        Ok((a.status.and_then(|s| s.observed_generation) == edited.metadata.generation).then_some(()))
    })
    .await
}

/// The content hash in the `--seen <hash>` that `kubectl warden pending` or `approve` printed
/// for request `request`.
pub fn seen_in(out: &str, request: &str) -> Option<String> {
    let command = format!("kubectl warden approve {request} ");
    out.lines().filter(|l| l.contains(&command)).find_map(|l| {
        let hash = l.split("--seen ").nth(1)?.split_whitespace().next()?;
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
    })
}

/// `kubectl warden approve` as a lead uses it: first without `--seen` (it shows what runs and its
/// content, and approves nothing), then with the content shown. (success, output of the last run)
pub fn plugin_approve(identity: &str, request: &str, ns: &str, comment: &str) -> Result<(bool, String)> {
    let (ok, shown) = kubectl_warden(identity, &["approve", request, "-n", ns])?;
    if ok {
        anyhow::bail!("approve without --seen must approve nothing and say so:\n{shown}");
    }
    let Some(seen) = seen_in(&shown, request) else { return Ok((false, shown)) };
    kubectl_warden(identity, &["approve", request, "-n", ns, "--seen", &seen, "--comment", comment])
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
