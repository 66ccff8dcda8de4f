//! The decision log's writer: each entry (what it says is `socwarden_core::decisionlog`) becomes
//! one JSON line appended to a file opened in append mode, stamped with the time of writing. Every
//! line also goes to the structured log under the target `decision`.

use jiff::Timestamp;
pub use socwarden_core::decisionlog::{Entry, Happened, Phase};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// A decision (or a request now pending) on its way to the notices.
pub struct Tell {
    pub entry: Entry,
    pub status: Option<Box<socwarden_api::ActionRequestStatus>>,
}

#[derive(Default)]
pub struct DecisionLog {
    file: Option<Mutex<std::fs::File>>,
    /// Where decisions that are notices go (`notify`), and the count of those the full queue
    /// dropped. Sending never waits: a slow sink never holds a decision.
    notices: Option<(tokio::sync::mpsc::Sender<Tell>, prometheus::IntCounter)>,
}

impl DecisionLog {
    /// Appends to `path` (created if missing); without a path, decisions go to the log only.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        Ok(Self { file, notices: None })
    }

    /// Also hands every decision that is a notice (`socwarden_core::notify::notice_kind`) to `tx`.
    pub fn with_notices(mut self, tx: tokio::sync::mpsc::Sender<Tell>, dropped: prometheus::IntCounter) -> Self {
        self.notices = Some((tx, dropped));
        self
    }

    /// Hands `e` to the notices only (a transition that is no decision: a request now pending),
    /// with the request's status as just written (the caches may not show it yet).
    pub fn notify(&self, e: &Entry, status: Option<&socwarden_api::ActionRequestStatus>) {
        let Some((tx, dropped)) = &self.notices else { return };
        if socwarden_core::notify::notice_kind(e).is_none() {
            return;
        }
        let mut e = e.clone();
        if e.time.is_empty() {
            e.time = Timestamp::now().to_string();
        }
        if tx.try_send(Tell { entry: e, status: status.cloned().map(Box::new) }).is_err() {
            dropped.inc();
        }
    }

    /// Appends `e`, stamped with the time of writing.
    pub fn record(&self, e: &Entry) {
        let mut e = e.clone();
        e.time = Timestamp::now().to_string();
        let line = serde_json::to_string(&e).unwrap_or_default();
        tracing::info!(target: "decision", "{line}");
        self.notify(&e, None);
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
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
            log.record(&Entry::new(Happened::Approved, "ns", "bot", "approved by a"));
        }
        {
            let log = DecisionLog::open(Some(&dir)).unwrap();
            log.record(&Entry::new(Happened::Recommended, "ns", "bot", "observe"));
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
