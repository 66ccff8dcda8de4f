//! What one line of the decision log says: one per decision (auto-approved, approved, denied,
//! expired, rejected, recommended, executed, rolled back, paused, resumed, promoted, demoted, a
//! token issued or rotated), each with the incident-response phase it belongs to (NIST SP
//! 800-61r3, which follows the CSF 2.0 functions: Govern, Protect, Detect, Respond, Recover). The
//! writer, which stamps the time, is the runtime's `decisionlog`.

use crate::admission::identity::CredentialId;
use serde::Serialize;

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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When it was written (set by the writer).
    pub time: String,
    pub phase: Option<Phase>,
    /// What was decided: AutoApproved, Approved, Denied, Expired, Rejected, Recommended, Executed,
    /// ExecutionFailed, RolledBack, ActedOn, NotActedOn, Paused, Resumed, Promoted, Demoted,
    /// DriftDetected, DriftReported, CredentialsIssued, TokenRotated.
    pub decision: String,
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
    pub fn new(phase: Phase, decision: &str, namespace: &str, agent: &str, message: impl Into<String>) -> Self {
        Self {
            phase: Some(phase),
            decision: decision.to_string(),
            namespace: namespace.to_string(),
            agent: agent.to_string(),
            message: message.into(),
            ..Default::default()
        }
    }
}

/// The phase of an action-request decision.
pub fn phase_of(decision: &str) -> Phase {
    match decision {
        "Recommended" => Phase::Detect,
        "RolledBack" | "Resumed" => Phase::Recover,
        "Promoted" | "Demoted" => Phase::Govern,
        _ => Phase::Respond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_decision_has_its_phase() {
        for (decision, phase) in [
            ("Recommended", Phase::Detect),
            ("RolledBack", Phase::Recover),
            ("Resumed", Phase::Recover),
            ("Promoted", Phase::Govern),
            ("Demoted", Phase::Govern),
            ("Approved", Phase::Respond),
            ("Executed", Phase::Respond),
        ] {
            assert_eq!(phase_of(decision), phase, "{decision}");
        }
    }
}
