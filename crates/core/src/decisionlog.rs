//! What one line of the decision log says: one per decision (auto-approved, approved, denied,
//! expired, rejected, recommended, executed, rolled back, paused, resumed, promoted, demoted, a
//! token issued or rotated), each with the incident-response phase it belongs to (NIST SP
//! 800-61r3, which follows the CSF 2.0 functions: Govern, Protect, Detect, Respond, Recover). The
//! writer, which stamps the time, is the runtime's `decisionlog`.

use crate::admission::identity::CredentialId;
use serde::Serialize;
use socwarden_api::{Decision, NoticeKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Tier changes: who may act alone is a governance decision.
    Govern,
    /// Credentials issued and rotated (identity and access management, CSF PR.AA).
    Protect,
    /// Findings: recommendations of observing agents, drift detected.
    Detect,
    /// Actions decided and executed, containment.
    Respond,
    /// Rollbacks and resumptions.
    Recover,
}

/// What happened: one variant per kind of decision-log line. Each knows its NIST phase and the
/// notice it makes, so the decision-log line, the notice (and the evidence built on them) render
/// from the one value; it is written as its name (`"Approved"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Happened {
    // An ActionRequest's life.
    /// Waiting for approvals (a notice to the approvers, not a decision-log line). The default:
    /// a notice built field by field starts as a pending request's.
    #[default]
    Pending,
    /// A pending request used 80% of its time (a notice).
    Expiring,
    AutoApproved,
    Approved,
    Denied,
    Expired,
    Rejected,
    /// An observing agent's request, recorded as a recommendation.
    Recommended,
    /// The execution finished.
    Executed,
    ExecutionFailed,
    /// Deleting a reversible request removed what it applied.
    RolledBack,
    /// An action the agent performs itself: it acted under the request (approved vs done).
    ActedOn,
    /// It did not act under the request within its window.
    NotActedOn,
    // A SocAgent's.
    Paused,
    Resumed,
    Promoted,
    Demoted,
    /// A promotion waits for what it still needs (a notice to the approvers).
    PromotionPending,
    DriftDetected,
    DriftReported,
    CredentialsIssued,
    TokenRotated,
    // The cluster's.
    KillSwitchOn,
    KillSwitchOff,
}

impl Happened {
    pub fn as_str(self) -> &'static str {
        match self {
            Happened::Pending => "Pending",
            Happened::Expiring => "Expiring",
            Happened::AutoApproved => "AutoApproved",
            Happened::Approved => "Approved",
            Happened::Denied => "Denied",
            Happened::Expired => "Expired",
            Happened::Rejected => "Rejected",
            Happened::Recommended => "Recommended",
            Happened::Executed => "Executed",
            Happened::ExecutionFailed => "ExecutionFailed",
            Happened::RolledBack => "RolledBack",
            Happened::ActedOn => "ActedOn",
            Happened::NotActedOn => "NotActedOn",
            Happened::Paused => "Paused",
            Happened::Resumed => "Resumed",
            Happened::Promoted => "Promoted",
            Happened::Demoted => "Demoted",
            Happened::PromotionPending => "PromotionPending",
            Happened::DriftDetected => "DriftDetected",
            Happened::DriftReported => "DriftReported",
            Happened::CredentialsIssued => "CredentialsIssued",
            Happened::TokenRotated => "TokenRotated",
            Happened::KillSwitchOn => "KillSwitchOn",
            Happened::KillSwitchOff => "KillSwitchOff",
        }
    }

    /// The incident-response phase it belongs to.
    pub fn phase(self) -> Phase {
        match self {
            Happened::Recommended | Happened::DriftDetected | Happened::DriftReported => Phase::Detect,
            Happened::RolledBack | Happened::Resumed => Phase::Recover,
            Happened::Promoted | Happened::Demoted | Happened::PromotionPending => Phase::Govern,
            Happened::CredentialsIssued | Happened::TokenRotated => Phase::Protect,
            _ => Phase::Respond,
        }
    }

    /// Whether its Event is a warning (something a human should look at) or normal.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Happened::Denied
                | Happened::Expired
                | Happened::Rejected
                | Happened::ExecutionFailed
                | Happened::Paused
                | Happened::DriftDetected
                | Happened::DriftReported
                | Happened::KillSwitchOn
        )
    }

    /// The notice it makes, if any (see `notify::notice_kind` for the pauses the kill switch makes).
    pub fn notice(self) -> Option<NoticeKind> {
        Some(match self {
            Happened::Pending => NoticeKind::RequestPending,
            Happened::Expiring => NoticeKind::RequestExpiring,
            Happened::AutoApproved
            | Happened::Approved
            | Happened::Denied
            | Happened::Expired
            | Happened::Rejected
            | Happened::Recommended => NoticeKind::RequestDecided,
            Happened::Executed | Happened::RolledBack => NoticeKind::RequestExecuted,
            Happened::ExecutionFailed => NoticeKind::RequestFailed,
            Happened::Paused => NoticeKind::AgentPaused,
            Happened::Resumed => NoticeKind::AgentResumed,
            Happened::Promoted | Happened::Demoted => NoticeKind::TierChanged,
            Happened::PromotionPending => NoticeKind::PromotionPending,
            Happened::KillSwitchOn | Happened::KillSwitchOff => NoticeKind::KillSwitch,
            Happened::ActedOn
            | Happened::NotActedOn
            | Happened::DriftDetected
            | Happened::DriftReported
            | Happened::CredentialsIssued
            | Happened::TokenRotated => return None,
        })
    }
}

impl From<Decision> for Happened {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Pending => Happened::Pending,
            Decision::AutoApproved => Happened::AutoApproved,
            Decision::Approved => Happened::Approved,
            Decision::Denied => Happened::Denied,
            Decision::Expired => Happened::Expired,
            Decision::Rejected => Happened::Rejected,
            Decision::Recommended => Happened::Recommended,
        }
    }
}

impl std::fmt::Display for Happened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When it was written (set by the writer).
    pub time: String,
    pub phase: Phase,
    pub decision: Happened,
    pub namespace: String,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The W3C `traceparent` the request was filed with (MCP tool calls), for correlating traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The tokens this decision is about, as the API server names them (`JTI=<jti>`): of the
    /// audited calls it comes from (the write that tripped a containment, the writes an agent made
    /// under its request), or the token it issued. The same string is in the API server's audit
    /// log, on each call made with the token and on the TokenRequest that issued it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialId>,
    pub message: String,
}

impl Entry {
    /// A line saying `what` happened to `agent` in `namespace` (its phase is `what`'s).
    pub fn new(what: Happened, namespace: &str, agent: &str, message: impl Into<String>) -> Self {
        Self {
            time: String::new(),
            phase: what.phase(),
            decision: what,
            namespace: namespace.to_string(),
            agent: agent.to_string(),
            request: None,
            action: None,
            target: None,
            approvers: Vec::new(),
            policy: None,
            traceparent: None,
            credentials: Vec::new(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_happening_has_its_phase_and_notice() {
        use Happened as H;
        use NoticeKind as N;
        for (what, phase, notice) in [
            (H::Pending, Phase::Respond, Some(N::RequestPending)),
            (H::Expiring, Phase::Respond, Some(N::RequestExpiring)),
            (H::Approved, Phase::Respond, Some(N::RequestDecided)),
            (H::Recommended, Phase::Detect, Some(N::RequestDecided)),
            (H::Executed, Phase::Respond, Some(N::RequestExecuted)),
            (H::ExecutionFailed, Phase::Respond, Some(N::RequestFailed)),
            (H::RolledBack, Phase::Recover, Some(N::RequestExecuted)),
            (H::ActedOn, Phase::Respond, None),
            (H::Paused, Phase::Respond, Some(N::AgentPaused)),
            (H::Resumed, Phase::Recover, Some(N::AgentResumed)),
            (H::Promoted, Phase::Govern, Some(N::TierChanged)),
            (H::PromotionPending, Phase::Govern, Some(N::PromotionPending)),
            (H::DriftDetected, Phase::Detect, None),
            (H::TokenRotated, Phase::Protect, None),
            (H::KillSwitchOff, Phase::Respond, Some(N::KillSwitch)),
        ] {
            assert_eq!((what.phase(), what.notice()), (phase, notice), "{what}");
        }
    }

    #[test]
    fn a_line_names_what_happened_as_before() {
        let e = Entry::new(Happened::from(Decision::AutoApproved), "ns", "bot", "ran");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!((json["decision"].as_str(), json["phase"].as_str()), (Some("AutoApproved"), Some("Respond")));
    }
}
