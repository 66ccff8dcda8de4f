//! Status of the catalog (SocActions) and of the AutonomyPolicies: whether each can be used, and
//! if not, exactly why. The decisions are pure (`action_status`, `policy_status`).

use crate::context::{Context, MANAGER};
use crate::controller::agent::Error;
use crate::watch::malformed;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use socwarden_api::conditions::{self, reason};
use socwarden_api::{AutonomyPolicy, AutonomyPolicyStatus, Condition, SocAction, SocActionStatus};
use socwarden_core::agent::policy;
use socwarden_core::agent::rbac::{self, Rule};
use std::sync::Arc;
use std::time::Duration;

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: conditions::status_str(ok).into(),
        reason: reason.into(),
        message,
        last_transition_time: now.to_string(),
        observed_generation: generation,
    }
}

pub fn action_status(action: &SocAction, delegable: &[Rule], now: Timestamp) -> SocActionStatus {
    let generation = action.meta().generation;
    let mut conds = action.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let undelegable: Vec<String> = match malformed(action) {
        Some(_) => Vec::new(),
        None => action.spec.grants.iter().flat_map(|g| rbac::undelegable(delegable, g)).collect(),
    };
    let c = match malformed(action) {
        Some(why) => condition(
            conditions::DELEGABLE,
            false,
            reason::MALFORMED,
            format!("the stored spec could not be read ({why}); agents listing this action fail closed"),
            generation,
            now,
        ),
        None if undelegable.is_empty() => condition(
            conditions::DELEGABLE,
            true,
            reason::WITHIN_DELEGATION,
            "every grant is within what SOC Warden may delegate".into(),
            generation,
            now,
        ),
        None => condition(
            conditions::DELEGABLE,
            false,
            reason::UNDELEGABLE_GRANT,
            format!(
                "SOC Warden may not delegate: {}. Agents listing this action fail closed until the grants are narrowed or the operator's delegable rules are extended",
                undelegable.join(", ")
            ),
            generation,
            now,
        ),
    };
    conditions::set(&mut conds, c);
    SocActionStatus { conditions: conds, undelegable, observed_generation: generation }
}

pub fn policy_status(p: &AutonomyPolicy, now: Timestamp) -> AutonomyPolicyStatus {
    let generation = p.meta().generation;
    let mut conds = p.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let c = match (malformed(p), policy::validate(&p.spec)) {
        (Some(why), _) => condition(
            conditions::VALID,
            false,
            reason::MALFORMED,
            format!("the stored spec could not be read ({why}); agents using this policy fail closed"),
            generation,
            now,
        ),
        (None, Ok(())) => {
            condition(conditions::VALID, true, reason::VALID, "the policy can be used".into(), generation, now)
        }
        (None, Err(e)) => condition(
            conditions::VALID,
            false,
            reason::CEILINGS_DECREASE,
            format!("{e}; agents using this policy fail closed"),
            generation,
            now,
        ),
    };
    conditions::set(&mut conds, c);
    AutonomyPolicyStatus { conditions: conds, observed_generation: generation }
}

pub async fn reconcile_action(action: Arc<SocAction>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leading() {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["socaction"]).start_timer();
    let status = action_status(&action, &ctx.delegable, Timestamp::now());
    if action.status.as_ref() != Some(&status) {
        let api: Api<SocAction> = Api::all(ctx.client.clone());
        let patch = json!({"apiVersion": SocAction::api_version(&()), "kind": "SocAction", "status": status});
        api.patch_status(&action.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    }
    Ok(Action::await_change())
}

pub async fn reconcile_policy(p: Arc<AutonomyPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leading() {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["autonomypolicy"]).start_timer();
    ctx.metrics.kill_switch.set(i64::from(ctx.stores.kill_switch().is_some()));
    let status = policy_status(&p, Timestamp::now());
    if p.status.as_ref() != Some(&status) {
        let api: Api<AutonomyPolicy> = Api::all(ctx.client.clone());
        let patch = json!({"apiVersion": AutonomyPolicy::api_version(&()), "kind": "AutonomyPolicy", "status": status});
        api.patch_status(&p.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    }
    Ok(Action::await_change())
}

pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.with_label_values(&[&K::kind(&()).to_lowercase(), err.category()]).inc();
    tracing::warn!(name = %obj.meta().name.clone().unwrap_or_default(), error = %err, "status update failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::{Grant, Risk, SocActionSpec, Verb};

    fn action(resource: &str) -> SocAction {
        let mut a = SocAction::new(
            "a",
            SocActionSpec {
                risk: Risk::Low,
                reversible: false,
                description: String::new(),
                grants: vec![Grant {
                    api_groups: vec!["".into()],
                    resources: vec![resource.into()],
                    verbs: vec![Verb::Get, Verb::List],
                    resource_names: vec![],
                }],
                ..Default::default()
            },
        );
        a.metadata.generation = Some(3);
        a
    }

    #[test]
    fn action_status_reports_undelegable_grants() {
        let d = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let now = Timestamp::UNIX_EPOCH;
        let ok = action_status(&action("pods"), &d, now);
        assert!(conditions::is_true(&ok.conditions, conditions::DELEGABLE));
        assert!(ok.undelegable.is_empty());
        let bad = action_status(&action("secrets"), &d, now);
        assert!(!conditions::is_true(&bad.conditions, conditions::DELEGABLE));
        assert_eq!(bad.undelegable, vec!["get secrets", "list secrets"]);
        assert_eq!(bad.observed_generation, Some(3));
    }

    #[test]
    fn policy_status_explains_invalid_ceilings() {
        let mut p = AutonomyPolicy::new("default", Default::default());
        let now = Timestamp::UNIX_EPOCH;
        assert!(conditions::is_true(&policy_status(&p, now).conditions, conditions::VALID));
        p.spec.autonomy.assist = socwarden_api::Ceiling::High;
        let s = policy_status(&p, now);
        let c = conditions::find(&s.conditions, conditions::VALID).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::CEILINGS_DECREASE));
    }
}
