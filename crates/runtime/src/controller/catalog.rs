//! The catalog reconcilers: write the status of SocActions and AutonomyPolicies, as decided by
//! `socwarden_core::catalog` (whether each can be used, and if not, exactly why) and, for a
//! manifest execution, `socwarden_core::envelope` over the kinds it writes.

use crate::context::{Context, MANAGER};
use crate::controller::agent::Error;
use crate::execute;
use crate::watch::malformed;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use socwarden_api::{AutonomyPolicy, Notifier, SocAction};
use socwarden_core::{catalog, envelope};
use std::sync::Arc;
use std::time::Duration;

pub async fn reconcile_action(action: Arc<SocAction>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leads_cluster() {
        // The status is shard 0's to write; the pending requests of this replica's shards are
        // its own to wake (again when that status lands: it is a change of the action too).
        wake_waiting(&action, &ctx);
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["socaction"]).start_timer();
    let broken = malformed(action.as_ref());
    let mut unexecutable = match action.spec.execution.as_ref().and_then(|e| e.manifest.as_ref()) {
        Some(tpl) if broken.is_none() => {
            let mut problems = envelope::placeholder_problems(tpl, &action.spec.parameters);
            let (reversible, delegable) = (action.spec.reversible, &ctx.delegable);
            problems.extend(
                execute::template_outside_envelope(&ctx.client, &ctx.discovery, tpl, reversible, delegable).await?,
            );
            problems
        }
        _ => vec![],
    };
    if let Some(http) = action.spec.execution.as_ref().and_then(|e| e.http.as_ref()).filter(|_| broken.is_none()) {
        unexecutable.extend(envelope::secret_problem("execution.http.secretRef", &http.secret_ref.name));
    }
    let status = catalog::action_status(&action, broken, &ctx.delegable, &unexecutable, Timestamp::now());
    apply_status(&ctx, action.as_ref(), action.status.as_ref(), &status).await?;
    wake_waiting(&action, &ctx);
    if unexecutable.is_empty() {
        Ok(Action::await_change())
    } else {
        // A kind not served yet may be installed later (a CRD): look again now and then.
        Ok(Action::requeue(Duration::from_secs(60)))
    }
}

pub async fn reconcile_policy(p: Arc<AutonomyPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leads_cluster() {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["autonomypolicy"]).start_timer();
    ctx.metrics.kill_switch.set(i64::from(ctx.stores.kill_switch().is_some()));
    let status = catalog::policy_status(&p, malformed(p.as_ref()), Timestamp::now());
    if apply_status(&ctx, p.as_ref(), p.status.as_ref(), &status).await? {
        // Told once the status records it, so a failed write is retried, not told twice.
        if let Some(e) = catalog::kill_switch_entry(&p.name_any(), p.status.as_ref(), &status) {
            ctx.decisions.record(&e);
        }
    }
    Ok(Action::await_change())
}

/// A Notifier's status: whether it can deliver, and what to fix.
pub async fn reconcile_notifier(n: Arc<Notifier>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leads_cluster() {
        return Ok(Action::await_change());
    }
    let status = catalog::notifier_status(&n, malformed(n.as_ref()), Timestamp::now());
    apply_status(&ctx, n.as_ref(), n.status.as_ref(), &status).await?;
    Ok(Action::await_change())
}

/// Writes the status of a cluster-scoped catalog object by server-side apply, unless it already
/// shows `status`; true when it wrote.
async fn apply_status<K, S>(ctx: &Context, obj: &K, shown: Option<&S>, status: &S) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: PartialEq + serde::Serialize,
{
    if shown == Some(status) {
        return Ok(false);
    }
    let api: Api<K> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(true)
}

pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.with_label_values(&[&K::kind(&()).to_lowercase(), err.category()]).inc();
    tracing::warn!(name = %obj.meta().name.clone().unwrap_or_default(), error = %err, "status update failed");
    Action::requeue(Duration::from_secs(5))
}

/// Wakes the requests waiting for approval on `action` that were looked at under other content:
/// their status (ActionChanged, the effect shown to approvers) follows an edit at once, not at
/// their next event.
fn wake_waiting(action: &SocAction, ctx: &Context) {
    let (name, hash) = (action.name_any(), socwarden_core::admission::signature::action_hash(&action.spec));
    let ours = |r: &socwarden_api::ActionRequest| ctx.owns(&r.namespace().unwrap_or_default(), &r.spec.agent);
    for r in ctx.stores.requests.state().into_iter().filter(|r| ours(r)) {
        let s = r.status.as_ref();
        let waiting = s.and_then(|s| s.decision) == Some(socwarden_api::Decision::Pending);
        if r.spec.action == name && waiting && s.and_then(|s| s.action_hash.as_deref()) != Some(hash.as_str()) {
            ctx.performed.wake(kube::runtime::reflector::ObjectRef::from_obj(r.as_ref()));
        }
    }
}
