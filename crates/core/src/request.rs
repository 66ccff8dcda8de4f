//! The life of an ActionRequest after the gate, as pure plans (the model is `agent::plan`): what
//! the request controller writes, records, tells and runs, and when it looks again. The gate
//! (`admission::gate`) says what the request's decision is; this module says what follows from
//! it. The runtime's controller looks up, calls these, applies the plan and reports.
//!
//! - `settle`: an undecided request, with the gate's verdict: still pending (its status, the
//!   notices to its approvers, when to look again) or decided (the decision recorded, the
//!   execution to run).
//! - `runnable`: an execution runs the action exactly as it was decided on, or not at all.
//! - `finish` and `executed`: an execution's outcome, as the status, and the record of it.
//! - `rolled_back`: what a rollback removed, as its record.

use crate::admission::gate::Verdict;
use crate::decisionlog::Happened;
use jiff::Timestamp;
use socwarden_api::{ActionRequestStatus, AppliedObject, Decision, Execution, ExecutionState, ExecutionStatus};
use std::time::Duration;

/// Something that happened to the request: a decision-log line (with its Event and metrics), or
/// only a notice (`told_only`: a request now pending, or about to expire, is news to its
/// approvers, not a decision).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub what: Happened,
    pub message: String,
    pub approvers: Vec<String>,
    /// The policy it was decided under (`name@generation`).
    pub policy: Option<String>,
    /// The time the notice is dated: the same notice (and idempotency key) whichever replica or
    /// restart sends it. None: when it is sent.
    pub at: Option<Timestamp>,
    pub told_only: bool,
}

impl Record {
    fn new(what: Happened, message: &str) -> Self {
        Self { what, message: message.into(), approvers: vec![], policy: None, at: None, told_only: false }
    }

    fn told(what: Happened, message: &str) -> Self {
        Self { told_only: true, ..Self::new(what, message) }
    }
}

/// The execution a decision runs, once its status is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Server-side apply of a manifest: repeating it changes nothing, so it may go out together
    /// with the status that records the decision. `finalizer`: a reversible action's finalizer is
    /// put in place first, so that deleting the request always rolls it back.
    Manifest { finalizer: bool },
    /// An HTTP call is not idempotent by nature: the decision (and `Running`) is written first,
    /// and the call carries the request's UID as its idempotency key.
    Http,
}

/// What to do with an undecided request.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write; None: it shows this already.
    pub status: Option<ActionRequestStatus>,
    /// In order: recorded (decision log, Event, metrics) or told (notices).
    pub records: Vec<Record>,
    pub run: Option<Run>,
    /// When to look again; None: when something changes.
    pub again: Option<Duration>,
}

/// What the controller knows of an undecided request besides the verdict.
pub struct Settling<'a> {
    /// The status the gate made of the verdict (`gate::status`).
    pub status: ActionRequestStatus,
    /// The status it shows now.
    pub previous: &'a ActionRequestStatus,
    /// The action's execution, if it has one, and whether the action is reversible.
    pub execution: Option<&'a Execution>,
    pub reversible: bool,
    /// When the request was created.
    pub created: Option<Timestamp>,
    /// Whether its approvers were told already that it is about to expire.
    pub told_expiring: bool,
    pub now: Timestamp,
}

/// How long a pending request without a deadline waits before it is looked at again.
const PENDING_LOOK: Duration = Duration::from_secs(60);

/// Settles an undecided request once the gate gave `v`. Pending: the status is written when it
/// changed; its approvers are told when it becomes pending and once more at 80% of its time;
/// it is looked at again at its deadline, or at that 80% mark. Decided: the status and the
/// decision are recorded, and a decision that runs runs its execution.
pub fn settle(v: &Verdict, s: Settling<'_>) -> Plan {
    let changed = *s.previous != s.status;
    if v.decision != Decision::Pending {
        let mut decided = Record::new(v.decision.into(), &s.status.message);
        decided.approvers = v.approvals.iter().map(|a| a.approver.clone()).collect();
        decided.policy = s.status.policy.clone();
        let run = s.execution.filter(|_| v.decision.runs()).map(|e| match e.http {
            Some(_) => Run::Http,
            None => Run::Manifest { finalizer: e.manifest.is_some() && s.reversible },
        });
        return Plan { status: Some(s.status), records: vec![decided], run, again: None };
    }
    let mut records = Vec::new();
    if changed && s.previous.decision != Some(Decision::Pending) {
        records.push(Record::told(Happened::Pending, &s.status.message));
    }
    let secs = |d: jiff::SignedDuration| Duration::from_secs(d.as_secs().max(1) as u64);
    let mut again = v.expires_at.map(|e| secs(e.duration_since(s.now))).unwrap_or(PENDING_LOOK);
    if let (Some(created), Some(expires)) = (s.created, v.expires_at) {
        let soon = crate::notify::expiring_at(created, expires);
        if s.now < soon {
            again = again.min(secs(soon.duration_since(s.now)));
        } else if !s.told_expiring {
            records.push(Record { at: Some(expires), ..Record::told(Happened::Expiring, &s.status.message) });
        }
    }
    Plan { status: changed.then_some(s.status), records, run: None, again: Some(again) }
}

/// Whether the action may run under the decision: only as it was decided on (`decided_on`, its
/// content hash then; `now`, its hash now). An action edited since runs nothing.
pub fn runnable(action: &str, decided_on: Option<&str>, now: &str) -> Result<(), String> {
    match decided_on {
        Some(h) if h != now => Err(format!(
            "SocAction {action} changed after this request was decided; nothing was run (file a new request to run the action as it is now)"
        )),
        _ => Ok(()),
    }
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It ran: what it did (in words), and the objects it applied.
    Done(String, Vec<AppliedObject>),
    /// It failed, and says why.
    Failed(String),
}

/// The status of a finished execution: the decision stays; the execution gets its state, result,
/// applied objects and finish time. Its record is `executed`.
pub fn finish(mut status: ActionRequestStatus, outcome: Outcome, now: Timestamp) -> ActionRequestStatus {
    let e: &mut ExecutionStatus = status.execution.get_or_insert_with(Default::default);
    e.finished_at = Some(now.to_string());
    match outcome {
        Outcome::Done(result, applied) => {
            (e.state, e.result, e.applied) = (Some(ExecutionState::Succeeded), result, applied);
        }
        Outcome::Failed(why) => (e.state, e.result) = (Some(ExecutionState::Failed), why),
    }
    status
}

/// The record of an execution that finished (None: it has not), with the request's approvers.
pub fn executed(status: &ActionRequestStatus) -> Option<Record> {
    let e = status.execution.as_ref()?;
    let what = match e.state? {
        ExecutionState::Succeeded => Happened::Executed,
        ExecutionState::Failed => Happened::ExecutionFailed,
        _ => return None,
    };
    let approvers = status.approvals.iter().map(|a| a.approver.clone()).collect();
    Some(Record { approvers, ..Record::new(what, &e.result) })
}

/// The record of a rollback that removed `applied` but `left` (objects another request or a
/// person owns now).
pub fn rolled_back(applied: &[AppliedObject], left: &[String]) -> Record {
    let removed: Vec<String> = applied.iter().map(ToString::to_string).filter(|w| !left.contains(w)).collect();
    let mut message = format!("removed {}", removed.join(", "));
    if !left.is_empty() {
        message = format!("{message}; left {} (owned by another request or a person now)", left.join(", "));
    }
    Record::new(Happened::RolledBack, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ts;
    use socwarden_api::{ApprovalDecision, ApprovalRecord, HttpExecution, SecretKeyRef};

    fn verdict(decision: Decision, expires: Option<&str>) -> Verdict {
        let mut v = crate::admission::gate::testing_verdict(decision, "because");
        v.expires_at = expires.map(ts);
        v.approvals = match decision {
            Decision::Approved => vec![ApprovalRecord {
                name: "a-1".into(),
                approver: "lead-a".into(),
                decision: ApprovalDecision::Approve,
                at: "2026-12-01T10:01:00Z".into(),
            }],
            _ => vec![],
        };
        v
    }

    fn status(decision: Decision, message: &str) -> ActionRequestStatus {
        ActionRequestStatus {
            decision: Some(decision),
            message: message.into(),
            policy: Some("default@1".into()),
            ..Default::default()
        }
    }

    fn manifest() -> Execution {
        Execution { manifest: Some("kind: NetworkPolicy".into()), http: None }
    }

    fn http() -> Execution {
        Execution {
            manifest: None,
            http: Some(HttpExecution {
                url: "https://soar.example/block".into(),
                secret_ref: SecretKeyRef { name: "soar".into(), key: "token".into() },
                ca_bundle: None,
                timeout_seconds: None,
            }),
        }
    }

    /// A request created at 10:00 that expires at 10:10 (80%: 10:08), looked at `now`.
    fn settling<'a>(
        previous: &'a ActionRequestStatus,
        status: ActionRequestStatus,
        execution: Option<&'a Execution>,
        now: &str,
    ) -> Settling<'a> {
        Settling {
            status,
            previous,
            execution,
            reversible: true,
            created: Some(ts("2026-12-01T10:00:00Z")),
            told_expiring: false,
            now: ts(now),
        }
    }

    const EXPIRES: Option<&str> = Some("2026-12-01T10:10:00Z");

    #[test]
    fn a_new_pending_request_is_written_told_and_looked_at_again_at_80_percent() {
        let none = ActionRequestStatus::default();
        let plan = settle(
            &verdict(Decision::Pending, EXPIRES),
            settling(&none, status(Decision::Pending, "waits for 2"), None, "2026-12-01T10:00:05Z"),
        );
        assert_eq!(plan.status.as_ref().and_then(|s| s.decision), Some(Decision::Pending));
        assert_eq!(plan.records, vec![Record::told(Happened::Pending, "waits for 2")]);
        assert_eq!((plan.run, plan.again), (None, Some(Duration::from_secs(475))), "10:08 is 7 min 55 s away");
    }

    #[test]
    fn an_unchanged_pending_request_writes_and_tells_nothing() {
        let was = status(Decision::Pending, "waits for 2");
        let plan =
            settle(&verdict(Decision::Pending, EXPIRES), settling(&was, was.clone(), None, "2026-12-01T10:05:00Z"));
        assert_eq!((plan.status, plan.records), (None, vec![]));
        assert_eq!(plan.again, Some(Duration::from_secs(180)));
    }

    #[test]
    fn a_pending_request_past_80_percent_tells_once_dated_at_its_deadline() {
        let was = status(Decision::Pending, "waits for 2");
        let mut s = settling(&was, was.clone(), None, "2026-12-01T10:08:30Z");
        let plan = settle(&verdict(Decision::Pending, EXPIRES), s);
        let told = Record { at: EXPIRES.map(ts), ..Record::told(Happened::Expiring, "waits for 2") };
        assert_eq!(plan.records, vec![told]);
        assert_eq!(plan.again, Some(Duration::from_secs(90)), "looked at again at the deadline");
        s = settling(&was, was.clone(), None, "2026-12-01T10:08:30Z");
        s.told_expiring = true;
        assert_eq!(settle(&verdict(Decision::Pending, EXPIRES), s).records, vec![], "told once");
    }

    #[test]
    fn a_pending_request_without_a_deadline_is_looked_at_every_minute() {
        let was = status(Decision::Pending, "waits");
        let mut s = settling(&was, was.clone(), None, "2026-12-01T10:00:00Z");
        s.created = None;
        assert_eq!(settle(&verdict(Decision::Pending, None), s).again, Some(PENDING_LOOK));
    }

    #[test]
    fn expiry_denial_and_rejection_are_recorded_and_run_nothing() {
        let was = status(Decision::Pending, "waits");
        for (decision, what) in [
            (Decision::Expired, Happened::Expired),
            (Decision::Denied, Happened::Denied),
            (Decision::Rejected, Happened::Rejected),
            (Decision::Recommended, Happened::Recommended),
        ] {
            let m = manifest();
            let plan = settle(
                &verdict(decision, EXPIRES),
                settling(&was, status(decision, "no"), Some(&m), "2026-12-01T10:10:01Z"),
            );
            assert_eq!(plan.status.as_ref().and_then(|s| s.decision), Some(decision));
            assert_eq!(plan.records.iter().map(|r| (r.what, r.told_only)).collect::<Vec<_>>(), vec![(what, false)]);
            assert_eq!(plan.records[0].policy.as_deref(), Some("default@1"));
            assert_eq!((plan.run, plan.again), (None, None), "{decision:?}");
        }
    }

    #[test]
    fn a_decision_that_runs_runs_its_execution_and_names_its_approvers() {
        let was = status(Decision::Pending, "waits");
        let (m, h) = (manifest(), http());
        let approved = |e: &Execution, reversible: bool| {
            let mut s = settling(&was, status(Decision::Approved, "approved"), Some(e), "2026-12-01T10:02:00Z");
            s.reversible = reversible;
            settle(&verdict(Decision::Approved, EXPIRES), s)
        };
        assert_eq!(approved(&m, true).run, Some(Run::Manifest { finalizer: true }));
        assert_eq!(approved(&m, false).run, Some(Run::Manifest { finalizer: false }));
        assert_eq!(approved(&h, true).run, Some(Run::Http), "an HTTP call has nothing to roll back");
        assert_eq!(approved(&m, true).records[0].approvers, vec!["lead-a".to_string()]);
        // An action without an execution: the agent acts itself under the request.
        let s = settling(&was, status(Decision::AutoApproved, "alone"), None, "2026-12-01T10:00:01Z");
        let plan = settle(&verdict(Decision::AutoApproved, None), s);
        assert_eq!((plan.run, plan.records[0].what), (None, Happened::AutoApproved));
    }

    #[test]
    fn an_action_changed_since_the_decision_runs_nothing() {
        assert_eq!(runnable("isolate-pod", Some("abc"), "abc"), Ok(()));
        assert_eq!(runnable("isolate-pod", None, "abc"), Ok(()), "decided before hashes were kept");
        let refused = runnable("isolate-pod", Some("abc"), "def").unwrap_err();
        assert!(refused.contains("SocAction isolate-pod changed after this request was decided"), "{refused}");
    }

    #[test]
    fn an_execution_ends_succeeded_or_failed_and_is_recorded_with_its_approvers() {
        let mut decided = status(Decision::Approved, "approved");
        decided.approvals = verdict(Decision::Approved, None).approvals;
        decided.execution = Some(ExecutionStatus { state: Some(ExecutionState::Running), ..Default::default() });
        assert_eq!(executed(&decided), None, "still running");
        let now = ts("2026-12-01T10:03:00Z");
        let applied = vec![AppliedObject {
            api_version: "networking.k8s.io/v1".into(),
            kind: "NetworkPolicy".into(),
            namespace: "web".into(),
            name: "soc-isolate".into(),
        }];
        let s = finish(decided.clone(), Outcome::Done("applied it".into(), applied.clone()), now);
        let r = executed(&s).unwrap();
        let e = s.execution.unwrap();
        assert_eq!((e.state, e.result.as_str(), e.applied), (Some(ExecutionState::Succeeded), "applied it", applied));
        assert_eq!(e.finished_at.as_deref(), Some("2026-12-01T10:03:00Z"));
        assert_eq!((r.what, r.approvers, r.told_only), (Happened::Executed, vec!["lead-a".to_string()], false));
        assert_eq!(s.decision, Some(Decision::Approved), "the decision stays");
        let s = finish(decided, Outcome::Failed("the SOAR answered 500".into()), now);
        let r = executed(&s).unwrap();
        assert_eq!(s.execution.unwrap().state, Some(ExecutionState::Failed));
        assert_eq!((r.what, r.message.as_str()), (Happened::ExecutionFailed, "the SOAR answered 500"));
    }

    #[test]
    fn a_rollback_says_what_it_removed_and_what_it_left() {
        let a = |name: &str| AppliedObject {
            api_version: "networking.k8s.io/v1".into(),
            kind: "NetworkPolicy".into(),
            namespace: "web".into(),
            name: name.into(),
        };
        let applied = [a("one"), a("two")];
        let r = rolled_back(&applied, &[]);
        assert_eq!(
            (r.what, r.message.as_str()),
            (Happened::RolledBack, "removed NetworkPolicy web/one, NetworkPolicy web/two")
        );
        let left = vec![applied[1].to_string()];
        let r = rolled_back(&applied, &left);
        assert_eq!(
            r.message,
            "removed NetworkPolicy web/one; left NetworkPolicy web/two (owned by another request or a person now)"
        );
    }
}
