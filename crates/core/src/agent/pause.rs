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
