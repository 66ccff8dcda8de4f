//! Condition types and reasons, in one place, and the one function that updates a condition list.

use crate::Condition;

pub const READY: &str = "Ready";
pub const CREDENTIALS_ISSUED: &str = "CredentialsIssued";
pub const PAUSED: &str = "Paused";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const PROMOTION_PENDING: &str = "PromotionPending";
pub const DRIFTED: &str = "Drifted";
/// On SocAction: every grant is within what the operator may delegate.
pub const DELEGABLE: &str = "Delegable";
/// On SocAction: every object its manifest writes is within the safe envelope of executions.
pub const EXECUTABLE: &str = "Executable";
/// On ActionRequest: its SocAction changed while it waited (approvals given before stopped counting).
pub const ACTION_CHANGED: &str = "ActionChanged";
/// On AutonomyPolicy.
pub const VALID: &str = "Valid";
/// On an AutonomyPolicy: whether its kill switch holds every agent paused.
pub const KILL_SWITCH: &str = "KillSwitch";

pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const ISSUED: &str = "Issued";
    pub const REVOKED: &str = "Revoked";
    pub const NOT_PAUSED: &str = "NotPaused";
    pub const MANUAL: &str = "Manual";
    pub const KILL_SWITCH: &str = "KillSwitch";
    pub const SWITCHED_ON: &str = "SwitchedOn";
    pub const SWITCHED_OFF: &str = "SwitchedOff";
    pub const DRIFT: &str = "Drift";
    pub const LEARNING: &str = "Learning";
    pub const INCONCLUSIVE: &str = "Inconclusive";
    pub const WITHIN_BASELINE: &str = "WithinBaseline";
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const UNKNOWN_ACTION: &str = "UnknownAction";
    pub const UNDELEGABLE_GRANT: &str = "UndelegableGrant";
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    pub const POLICY_INVALID: &str = "PolicyInvalid";
    pub const WORKLOAD_NOT_FOUND: &str = "WorkloadNotFound";
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    pub const INVALID_NAME: &str = "InvalidName";
    pub const UNOBSERVED_NAMESPACE: &str = "UnobservedNamespace";
    pub const MALFORMED: &str = "Malformed";
    pub const AWAITING_EVIDENCE: &str = "AwaitingEvidence";
    pub const NONE_PENDING: &str = "NonePending";
    pub const WITHIN_DELEGATION: &str = "WithinDelegation";
    pub const CEILINGS_DECREASE: &str = "CeilingsDecrease";
    pub const WITHIN_ENVELOPE: &str = "WithinEnvelope";
    pub const OUTSIDE_ENVELOPE: &str = "OutsideEnvelope";
}

pub fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Sets `new` in `conditions`, keyed by type. `lastTransitionTime` is kept when the status does not
/// change, so a reconcile that finds nothing new writes nothing new.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, reason: &str, at: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: at.into(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut cs = vec![cond("True", "A", "t1")];
        set(&mut cs, cond("True", "B", "t2"));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, "t1");
        assert_eq!(cs[0].reason, "B");
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut cs = vec![cond("True", "A", "t1")];
        set(&mut cs, cond("False", "A", "t2"));
        assert_eq!(cs[0].last_transition_time, "t2");
        assert!(!is_true(&cs, READY));
    }
}
