//! Whether an agent is paused, and why. Pure.

use crate::admission::approvals::{self, Subject};
use jiff::Timestamp;
use socwarden_api::PauseStatus;
use socwarden_api::conditions::reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// `spec.paused: true` on the agent.
    Manual,
    /// `killSwitch: true` on an AutonomyPolicy.
    KillSwitch,
    /// The behaviour drifted from the baseline (onDrift: Pause); lifted only by an approver.
    Drift,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Manual => reason::MANUAL,
            PauseReason::KillSwitch => reason::KILL_SWITCH,
            PauseReason::Drift => reason::DRIFT,
        }
    }
}

/// Why the agent must be paused now, if it must. Drift wins (only an approver's resume lifts it,
/// and its record, whose id the resume names, must outlive the other pauses: with the kill switch
/// first, flipping it on and off dropped the record and left the pause to the monitor's memory),
/// then the kill switch, then a manual pause.
pub fn decide(spec_paused: bool, kill_switch: Option<&str>, drift: bool) -> Option<PauseReason> {
    match (drift, kill_switch, spec_paused) {
        (true, _, _) => Some(PauseReason::Drift),
        (false, Some(_), _) => Some(PauseReason::KillSwitch),
        (false, None, true) => Some(PauseReason::Manual),
        (false, None, false) => None,
    }
}

/// Whether a drift pause holds: one is recorded and not lifted by a valid resume approval, or the
/// monitor has just decided to contain.
pub fn drift_holds(previous: Option<&PauseStatus>, new_trigger: bool, resumed: bool) -> bool {
    let recorded = previous.is_some_and(|p| p.reason == reason::DRIFT);
    (recorded && !resumed) || (!recorded && new_trigger)
}

/// The pause record for the status: a pause that continues keeps its start time and id; a drift
/// pause always has an id of its own (a resume approval names it).
pub fn record(reason: PauseReason, previous: Option<&PauseStatus>, now: Timestamp) -> PauseStatus {
    let fresh = || PauseStatus {
        reason: reason.as_str().to_string(),
        since: now.to_string(),
        id: format!("{}-{}", reason.as_str().to_lowercase(), now.as_millisecond()),
    };
    match previous {
        Some(p) if (reason == PauseReason::Drift) != (p.reason == reason::DRIFT) => fresh(),
        Some(p) => PauseStatus { reason: reason.as_str().to_string(), since: p.since.clone(), id: p.id.clone() },
        None => fresh(),
    }
}

/// The pause recorded for the agent: its status's, unless that shows no drift pause while its
/// DriftReport keeps one (`kept`) that was not lifted (`lifted`: the status's `lastDriftPause`,
/// the start of the drift pause an approver last resumed). A SocAgent deleted and created again
/// starts without a status: its drift pause, kept where deleting the agent does not reach, holds
/// again under the same id until an approver resumes it.
pub fn recorded<'a>(
    status: Option<&'a PauseStatus>,
    lifted: Option<&str>,
    kept: Option<&'a PauseStatus>,
) -> Option<&'a PauseStatus> {
    let drift = |p: &&PauseStatus| p.reason == reason::DRIFT;
    let kept = kept.filter(drift).filter(|k| lifted != Some(k.since.as_str()));
    status.filter(drift).or(kept).or(status)
}

/// What the DriftReport keeps after a reconcile: the drift pause while it holds, nothing once an
/// approver lifted it. Manual and kill-switch pauses follow the spec and the policies by
/// themselves.
pub fn kept(pause: Option<&PauseStatus>) -> Option<PauseStatus> {
    pause.filter(|p| p.reason == reason::DRIFT).cloned()
}

/// Seconds a paused agent's pods get to stop when they are deleted (by default 2, not the pods'
/// own 30: the agent's process must not outlive its credentials by long).
pub const DEFAULT_GRACE_SECONDS: u32 = 2;
/// The most `workloadRef.gracePeriodSeconds` may give (the schema says so too).
pub const MAX_GRACE_SECONDS: u32 = 30;

pub fn grace_seconds(w: &socwarden_api::WorkloadRef) -> u32 {
    w.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS).min(MAX_GRACE_SECONDS)
}

/// The approver whose valid approval lifts the drift pause `pause`, if any (a deny lifts nothing).
pub fn resume_approver(
    agent: &socwarden_api::SocAgent,
    pause: &PauseStatus,
    approvals: &[&socwarden_api::Approval],
    key: &crate::admission::signature::Key,
    now: Timestamp,
) -> Option<String> {
    let subject = Subject::Resume { pause_id: &pause.id };
    approvals::tally(approvals, agent, &subject, key, now).approved.into_iter().next().map(|r| r.approver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        assert_eq!(decide(false, None, false), None);
        assert_eq!(decide(true, None, false), Some(PauseReason::Manual));
        assert_eq!(decide(false, Some("default"), false), Some(PauseReason::KillSwitch));
        assert_eq!(decide(true, Some("default"), false), Some(PauseReason::KillSwitch));
        assert_eq!(decide(true, Some("default"), true), Some(PauseReason::Drift), "a drift pause outlives the others");
        assert_eq!(decide(true, None, true), Some(PauseReason::Drift));
    }

    #[test]
    fn drift_holds_until_resumed() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let drift = record(PauseReason::Drift, None, t0);
        let manual = record(PauseReason::Manual, None, t0);
        assert!(drift_holds(None, true, false));
        assert!(!drift_holds(None, false, false));
        assert!(drift_holds(Some(&drift), false, false));
        assert!(!drift_holds(Some(&drift), false, true));
        assert!(drift_holds(Some(&manual), true, false));
    }

    #[test]
    fn a_drift_pause_kept_in_the_report_outlives_the_agents_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let drift = record(PauseReason::Drift, None, t0);
        let manual = record(PauseReason::Manual, None, t0);
        let since = drift.since.clone();
        type Case<'a> =
            (Option<&'a PauseStatus>, Option<&'a str>, Option<&'a PauseStatus>, Option<&'a PauseStatus>, &'a str);
        let cases: [Case; 7] = [
            (None, None, None, None, "nothing recorded anywhere"),
            (None, None, Some(&drift), Some(&drift), "re-created: the report's drift pause holds again"),
            (Some(&manual), None, Some(&drift), Some(&drift), "re-created with spec.paused: drift still wins"),
            (Some(&drift), None, None, Some(&drift), "the status's own"),
            (None, Some(since.as_str()), Some(&drift), None, "an approver lifted it (the report was not cleared yet)"),
            (Some(&manual), None, Some(&manual), Some(&manual), "only drift pauses are carried"),
            (None, None, Some(&manual), None, "a manual pause is not kept"),
        ];
        for (status, lifted, kept_, want, why) in cases {
            assert_eq!(recorded(status, lifted, kept_), want, "{why}");
        }
        assert_eq!(kept(Some(&drift)), Some(drift.clone()));
        assert_eq!(kept(Some(&manual)), None);
        assert_eq!(kept(None), None);
    }

    #[test]
    fn pods_get_a_short_grace_period() {
        use socwarden_api::{WorkloadKind, WorkloadRef};
        let w = |g: Option<u32>| WorkloadRef {
            kind: WorkloadKind::Deployment,
            name: "bot".into(),
            grace_period_seconds: g,
        };
        assert_eq!(grace_seconds(&w(None)), 2, "default: 2 s, not the pod's 30");
        assert_eq!(grace_seconds(&w(Some(0))), 0);
        assert_eq!(grace_seconds(&w(Some(10))), 10);
        assert_eq!(grace_seconds(&w(Some(3600))), 30, "bounded even if the schema was bypassed");
    }

    #[test]
    fn a_continuing_pause_keeps_its_start_and_id() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let first = record(PauseReason::Manual, None, t0);
        assert_eq!(first.id, "manual-1767225600000");
        let later = record(PauseReason::KillSwitch, Some(&first), t1);
        assert_eq!((later.since.as_str(), later.id.as_str()), (first.since.as_str(), first.id.as_str()));
        assert_eq!(later.reason, "KillSwitch");
        // Drift starts a pause of its own, with its own id.
        let drift = record(PauseReason::Drift, Some(&later), t1);
        assert_eq!(drift.id, "drift-1767229200000");
    }
}
