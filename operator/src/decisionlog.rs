//! The decision log: one JSON line per decision (auto-approved, approved, denied, expired,
//! rejected, recommended, executed, rolled back, paused, resumed, promoted, demoted), appended to a
//! file opened in append mode, each with the incident-response phase it belongs to (NIST SP
//! 800-61r3, which follows the CSF 2.0 functions: Govern, Detect, Respond, Recover). Every line also
//! goes to the structured log under the target `decision`.

use jiff::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Tier changes: who may act alone is a governance decision.
    Govern,
    /// Findings: recommendations of observing agents, drift detected.
    Detect,
    /// Actions decided and executed, containment.
    Respond,
    /// Rollbacks and resumptions.
    Recover,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub time: String,
    pub phase: Option<Phase>,
    /// What was decided: AutoApproved, Approved, Denied, Expired, Rejected, Recommended, Executed,
    /// ExecutionFailed, RolledBack, Paused, Resumed, Promoted, Demoted.
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
    pub message: String,
}

impl Entry {
    pub fn new(phase: Phase, decision: &str, namespace: &str, agent: &str, message: impl Into<String>) -> Self {
        Self {
            time: Timestamp::now().to_string(),
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

#[derive(Default)]
pub struct DecisionLog {
    file: Option<Mutex<std::fs::File>>,
}

impl DecisionLog {
    /// Appends to `path` (created if missing); without a path, decisions go to the log only.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        Ok(Self { file })
    }

    pub fn record(&self, e: &Entry) {
        let line = serde_json::to_string(e).unwrap_or_default();
        tracing::info!(target: "decision", "{line}");
        if let Some(f) = &self.file {
            let mut f = f.lock().expect("decision log lock");
            // One write call per line, so concurrent writers never interleave within a line.
            if let Err(err) = f.write_all(format!("{line}\n").as_bytes()) {
                tracing::error!(error = %err, "could not append to the decision log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_decision() {
        let dir = std::env::temp_dir().join(format!("socwarden-dlog-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let log = DecisionLog::open(Some(&dir)).unwrap();
            log.record(&Entry::new(Phase::Respond, "Approved", "ns", "bot", "approved by a"));
        }
        {
            let log = DecisionLog::open(Some(&dir)).unwrap();
            log.record(&Entry::new(phase_of("Recommended"), "Recommended", "ns", "bot", "observe"));
        }
        let text = std::fs::read_to_string(&dir).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "Approved");
        assert_eq!(lines[0]["phase"], "Respond");
        assert_eq!(lines[1]["phase"], "Detect");
        let _ = std::fs::remove_file(&dir);
    }
}
