//! Whether an agent is paused, and why. Pure.

use crate::api::PauseStatus;
use crate::conditions::reason;
use jiff::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// `spec.paused: true` on the agent.
    Manual,
    /// `killSwitch: true` on an AutonomyPolicy.
    KillSwitch,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Manual => reason::MANUAL,
            PauseReason::KillSwitch => reason::KILL_SWITCH,
        }
    }
}

/// Why the agent must be paused now, if it must. The kill switch wins over a manual pause, so that
/// lifting one while the other holds keeps the agent contained with the right explanation.
pub fn decide(spec_paused: bool, kill_switch: Option<&str>) -> Option<PauseReason> {
    match (kill_switch, spec_paused) {
        (Some(_), _) => Some(PauseReason::KillSwitch),
        (None, true) => Some(PauseReason::Manual),
        (None, false) => None,
    }
}

/// The pause record for the status: a pause that continues keeps its start time and id.
pub fn record(reason: PauseReason, previous: Option<&PauseStatus>, now: Timestamp) -> PauseStatus {
    match previous {
        Some(p) => PauseStatus { reason: reason.as_str().to_string(), since: p.since.clone(), id: p.id.clone() },
        None => PauseStatus {
            reason: reason.as_str().to_string(),
            since: now.to_string(),
            id: format!("pause-{}", now.as_second()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        assert_eq!(decide(false, None), None);
        assert_eq!(decide(true, None), Some(PauseReason::Manual));
        assert_eq!(decide(false, Some("default")), Some(PauseReason::KillSwitch));
        assert_eq!(decide(true, Some("default")), Some(PauseReason::KillSwitch));
    }

    #[test]
    fn a_continuing_pause_keeps_its_start_and_id() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let first = record(PauseReason::Manual, None, t0);
        assert_eq!(first.id, "pause-1767225600");
        let later = record(PauseReason::KillSwitch, Some(&first), t1);
        assert_eq!((later.since.as_str(), later.id.as_str()), (first.since.as_str(), first.id.as_str()));
        assert_eq!(later.reason, "KillSwitch");
    }
}
