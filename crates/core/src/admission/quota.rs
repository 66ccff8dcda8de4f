//! How many requests an agent may file, and how long their records are kept
//! (`AutonomyPolicy.spec.requests`): a cap on the requests waiting for a decision and on the filing
//! rate, so that a prompt-injected agent cannot flood the approvers' queue or the operator (checked
//! by the admission webhook), and a retention period after which decided requests are deleted
//! (the decision log stays the durable record). Pure.

use jiff::{SignedDuration, Timestamp};
use socwarden_api::{ActionRequestStatus, Decision, ExecutionState, RequestQuota};

/// What an agent has filed: requests not decided yet, requests filed in the last minute, and every
/// request of it still kept (decided ones until retention deletes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filing {
    pub undecided: usize,
    pub last_minute: usize,
    pub kept: usize,
}

/// Whether agent `agent` (under policy `policy`) may file one more request.
pub fn check(agent: &str, policy: &str, quota: &RequestQuota, f: Filing) -> Result<(), String> {
    if f.undecided >= quota.max_pending as usize {
        return Err(format!(
            "SocAgent {agent} has {} requests waiting for a decision; AutonomyPolicy {policy} allows {} (spec.requests.maxPending): wait for decisions before filing more",
            f.undecided, quota.max_pending
        ));
    }
    if f.kept >= quota.max_kept as usize {
        return Err(format!(
            "SocAgent {agent} keeps {} requests, decided ones included; AutonomyPolicy {policy} allows {} (spec.requests.maxKept): decided requests are deleted {} after their decision (spec.requests.retention), file again then",
            f.kept, quota.max_kept, quota.retention
        ));
    }
    if f.last_minute >= quota.max_per_minute as usize {
        return Err(format!(
            "SocAgent {agent} filed {} requests in the last minute; AutonomyPolicy {policy} allows {} per minute (spec.requests.maxPerMinute): retry later",
            f.last_minute, quota.max_per_minute
        ));
    }
    Ok(())
}

/// What becomes of a request's record under the retention period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Undecided or still executing: not a matter of retention yet.
    Open,
    /// Its reversible execution is still in effect: deleting the request would roll it back, so it
    /// stays until a person deletes it.
    InEffect,
    /// Kept until then.
    Until(Timestamp),
    /// Past the retention period: delete it (and its approvals).
    Delete,
}

/// The retention of a request showing `status`. `in_effect`: it carries the rollback finalizer.
pub fn retention(status: &ActionRequestStatus, in_effect: bool, period: SignedDuration, now: Timestamp) -> Retention {
    let decided = status.decision.is_some_and(|d| d != Decision::Pending);
    let running = status.execution.as_ref().and_then(|e| e.state) == Some(ExecutionState::Running);
    let Some(at) =
        status.decided_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).filter(|_| decided && !running)
    else {
        return Retention::Open;
    };
    if in_effect {
        return Retention::InEffect;
    }
    let until = due_at(status.decision.unwrap_or(Decision::Pending), at, period);
    if now >= until { Retention::Delete } else { Retention::Until(until) }
}

/// The retention period of `quota` (its default when unreadable).
pub fn period(quota: &RequestQuota) -> SignedDuration {
    socwarden_api::duration::parse(&quota.retention)
        .and_then(|d| SignedDuration::try_from(d).ok())
        .unwrap_or(SignedDuration::from_hours(168))
}

/// The window the execution budgets look back over (`maxExecutionsPerHour`, `maxTargetsPerHour`).
pub const BUDGET_WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// When a request decided `decision` at `at` is past the retention `period`. A request that ran
/// is kept for the budgets' hour at least, so that no retention setting lets an agent exceed them.
pub fn due_at(decision: Decision, at: Timestamp, period: SignedDuration) -> Timestamp {
    let keep = if decision.runs() { period.max(BUDGET_WINDOW) } else { period };
    at.checked_add(keep).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_for_the_period_unless_their_execution_is_in_effect() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let day = SignedDuration::from_hours(24);
        let mut s = ActionRequestStatus {
            decision: Some(Decision::Denied),
            decided_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(retention(&s, false, day, at("2026-01-01T12:00:00Z")), Retention::Until(at("2026-01-02T00:00:00Z")));
        assert_eq!(retention(&s, false, day, at("2026-01-02T00:00:00Z")), Retention::Delete);
        assert_eq!(retention(&s, true, day, at("2026-01-09T00:00:00Z")), Retention::InEffect);
        s.execution =
            Some(socwarden_api::ExecutionStatus { state: Some(ExecutionState::Running), ..Default::default() });
        assert_eq!(retention(&s, false, day, at("2026-01-09T00:00:00Z")), Retention::Open, "never mid-execution");
        let pending = ActionRequestStatus { decision: Some(Decision::Pending), ..Default::default() };
        assert_eq!(retention(&pending, false, day, at("2026-01-09T00:00:00Z")), Retention::Open);
    }

    #[test]
    fn a_request_that_ran_is_kept_for_the_budgets_hour_whatever_the_period() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let short = SignedDuration::from_secs(3);
        let ran = ActionRequestStatus {
            decision: Some(Decision::AutoApproved),
            decided_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(
            retention(&ran, false, short, at("2026-01-01T00:30:00Z")),
            Retention::Until(at("2026-01-01T01:00:00Z"))
        );
        assert_eq!(retention(&ran, false, short, at("2026-01-01T01:00:00Z")), Retention::Delete);
        let denied = ActionRequestStatus { decision: Some(Decision::Denied), ..ran.clone() };
        assert_eq!(retention(&denied, false, short, at("2026-01-01T00:00:03Z")), Retention::Delete);
        assert_eq!(due_at(Decision::Denied, at("2026-01-01T00:00:00Z"), SignedDuration::MAX), Timestamp::MAX);
    }

    #[test]
    fn the_queue_and_the_rate_are_capped_with_the_reason() {
        let q = RequestQuota { max_pending: 2, max_per_minute: 5, max_kept: 10, ..Default::default() };
        assert_eq!(check("bot", "default", &q, Filing { undecided: 1, last_minute: 4, kept: 9 }), Ok(()));
        let e = check("bot", "default", &q, Filing { undecided: 2, last_minute: 0, kept: 2 }).unwrap_err();
        assert!(e.contains("has 2 requests waiting") && e.contains("maxPending"), "{e}");
        let e = check("bot", "default", &q, Filing { undecided: 0, last_minute: 5, kept: 5 }).unwrap_err();
        assert!(e.contains("filed 5 requests in the last minute") && e.contains("maxPerMinute"), "{e}");
        let e = check("bot", "default", &q, Filing { undecided: 0, last_minute: 0, kept: 10 }).unwrap_err();
        assert!(e.contains("keeps 10 requests, decided ones included") && e.contains("maxKept"), "{e}");
        let d = RequestQuota::default();
        assert_eq!((d.max_pending, d.max_per_minute, d.max_kept), (20, 60, 5000));
    }
}
