//! Stopping and restarting the workload that runs an agent. The decisions are pure; `fetch`, the
//! scale patch and the deletion of a paused agent's pods (`stop_pods`) are the only calls.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use socwarden_api::{WorkloadKind, WorkloadRef};

/// Annotation on the workload holding its replica count from before the pause.
pub const PAUSED_REPLICAS: &str = "socwarden.io/paused-replicas";

/// What the operator reads of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub replicas: i32,
    pub paused_replicas: Option<i32>,
    /// Its pods' label selector, as a query (`selector`).
    pub selector: Option<String>,
}

impl Observed {
    pub fn from_object(o: &DynamicObject) -> Self {
        let replicas = o.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1) as i32;
        let paused_replicas =
            o.metadata.annotations.as_ref().and_then(|a| a.get(PAUSED_REPLICAS)).and_then(|v| v.parse().ok());
        Self { replicas, paused_replicas, selector: o.data.pointer("/spec/selector").and_then(selector) }
    }
}

/// A workload's `spec.selector` (matchLabels and matchExpressions) as a label-selector query, or
/// `None` when it selects nothing that can be written as one (empty, or an unknown operator):
/// then no pod is deleted rather than the wrong ones.
pub fn selector(s: &Value) -> Option<String> {
    let mut terms = Vec::new();
    for (k, v) in s.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        terms.push(format!("{k}={}", v.as_str()?));
    }
    for e in s.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key")?.as_str()?;
        let values: Option<Vec<&str>> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().map(Value::as_str).collect();
        let values = values?.join(",");
        terms.push(match e.get("operator")?.as_str()? {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    (!terms.is_empty()).then(|| terms.join(","))
}

/// The merge patch that brings the workload where it should be, if any. Pausing keeps the
/// original count in an annotation (written once, so a second pause cannot overwrite it with 0);
/// resuming restores it and removes the annotation.
pub fn patch(observed: &Observed, paused: bool) -> Option<Value> {
    match (paused, observed.paused_replicas) {
        (true, None) => Some(json!({
            "metadata": {"annotations": {PAUSED_REPLICAS: observed.replicas.to_string()}},
            "spec": {"replicas": 0}
        })),
        // Someone scaled it up while paused (a GitOps sync, a human): hold it at zero.
        (true, Some(_)) if observed.replicas != 0 => Some(json!({"spec": {"replicas": 0}})),
        (true, Some(_)) => None,
        (false, Some(n)) => Some(json!({
            "metadata": {"annotations": {PAUSED_REPLICAS: null}},
            "spec": {"replicas": n}
        })),
        (false, None) => None,
    }
}

fn api(client: Client, namespace: &str, kind: WorkloadKind) -> Api<DynamicObject> {
    let ar = match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
    };
    Api::namespaced_with(client, namespace, &ar)
}

pub async fn fetch(client: Client, namespace: &str, w: &WorkloadRef) -> kube::Result<Option<Observed>> {
    let o = api(client, namespace, w.kind).get_opt(&w.name).await?;
    Ok(o.as_ref().map(Observed::from_object))
}

/// Deletes the pods of a paused agent's workload with `grace` seconds to stop
/// (`pause::grace_seconds`): the scale-down alone gives them their own grace period (30 s by
/// default) to go on running after the agent's credentials died.
pub async fn stop_pods(client: Client, namespace: &str, observed: &Observed, grace: u32) -> kube::Result<()> {
    let Some(selector) = &observed.selector else {
        return Ok(());
    };
    let dp = DeleteParams { grace_period_seconds: Some(grace), ..Default::default() };
    Api::<Pod>::namespaced(client, namespace).delete_collection(&dp, &ListParams::default().labels(selector)).await?;
    Ok(())
}

/// Applies `patch(observed, paused)`; returns whether anything was written.
pub async fn converge(
    client: Client,
    namespace: &str,
    w: &WorkloadRef,
    observed: &Observed,
    paused: bool,
) -> kube::Result<bool> {
    let Some(p) = patch(observed, paused) else {
        return Ok(false);
    };
    api(client, namespace, w.kind).patch(&w.name, &PatchParams::default(), &Patch::Merge(&p)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(replicas: i32, paused: Option<i32>) -> Observed {
        Observed { replicas, paused_replicas: paused, selector: None }
    }

    #[test]
    fn the_pods_selector_is_the_workloads_or_none() {
        let cases = [
            (json!({"matchLabels": {"app": "bot"}}), Some("app=bot")),
            (
                json!({"matchLabels": {"app": "bot"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "canary", "operator": "DoesNotExist"}]}),
                Some("app=bot,tier in (a,b),!canary"),
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["y"]}, {"key": "z", "operator": "Exists"}]}),
                Some("x notin (y),z"),
            ),
            (json!({}), None),
            (json!({"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]}), None),
            (json!({"matchLabels": {"app": 3}}), None),
        ];
        for (s, want) in cases {
            assert_eq!(selector(&s).as_deref(), want, "{s}");
        }
    }

    #[test]
    fn pause_and_resume_table() {
        assert_eq!(patch(&obs(3, None), true).unwrap()["metadata"]["annotations"][PAUSED_REPLICAS], "3");
        assert_eq!(patch(&obs(3, None), true).unwrap()["spec"]["replicas"], 0);
        assert_eq!(patch(&obs(0, Some(3)), true), None, "already paused: nothing to do");
        let held = patch(&obs(2, Some(3)), true).unwrap();
        assert_eq!(held, json!({"spec": {"replicas": 0}}), "scaled up while paused: back to 0, count kept");
        let resume = patch(&obs(0, Some(3)), false).unwrap();
        assert_eq!(resume["spec"]["replicas"], 3);
        assert!(resume["metadata"]["annotations"][PAUSED_REPLICAS].is_null());
        assert_eq!(patch(&obs(3, None), false), None);
        // A workload at 0 before the pause comes back at 0.
        assert_eq!(patch(&obs(0, None), true).unwrap()["metadata"]["annotations"][PAUSED_REPLICAS], "0");
    }

    #[test]
    fn reads_replicas_and_annotation() {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "annotations": {PAUSED_REPLICAS: "4"}},
            "spec": {"replicas": 0}
        }))
        .unwrap();
        assert_eq!(Observed::from_object(&o), obs(0, Some(4)));
    }
}
