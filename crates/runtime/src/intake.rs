//! The audit sink's intake: parsed calls wait in a bounded queue for the one task that judges
//! them (records first, statistics second), so that a flood of audit events during an incident
//! costs a bounded amount of memory and never stalls the sink. Past the capacity, what can
//! contain an agent is still taken — writes (an unrecorded one contains at once) and refusals
//! (out-of-scope attempts) — and the rest is dropped and counted
//! (`socwarden_audit_events_total{outcome="dropped"}`); past twice the capacity everything is.

use crate::context::Context;
use socwarden_core::behaviour::audit::Call;
use socwarden_core::behaviour::drift::Kind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

/// Calls waiting to be judged (about 200 bytes each): beyond this only significant ones are kept.
pub const CAPACITY: usize = 50_000;

/// A call that can contain its agent whatever the statistics say: a write that succeeded (it may
/// have no record), or a request refused by authorization (an out-of-scope attempt).
pub fn significant(c: &Call) -> bool {
    c.access.as_ref().is_some_and(|a| a.writes()) || matches!(c.observation.kind, Kind::Api { code: 401 | 403, .. })
}

/// What to keep of a batch of `calls` when `queued` calls are waiting already; the rest is dropped.
pub fn admit(calls: Vec<Call>, queued: usize) -> (Vec<Call>, usize) {
    let n = calls.len();
    if queued + n <= CAPACITY {
        return (calls, 0);
    }
    if queued >= 2 * CAPACITY {
        return (Vec::new(), n);
    }
    let kept: Vec<Call> = calls.into_iter().filter(significant).take(2 * CAPACITY - queued).collect();
    let dropped = n - kept.len();
    (kept, dropped)
}

type Batch = (Vec<Call>, Instant);

/// The sink's side of the queue.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::UnboundedSender<Batch>,
    queued: Arc<AtomicUsize>,
    ctx: Arc<Context>,
}

impl Intake {
    /// The intake and the task that judges what it takes (run it for the operator's lifetime).
    pub fn new(ctx: Arc<Context>) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let judge = judge(ctx.clone(), rx, queued.clone());
        (Self { tx, queued, ctx }, judge)
    }

    /// Takes the calls of one audit batch received at `received`.
    pub fn take(&self, calls: Vec<Call>, received: Instant) {
        // Calls of ServiceAccounts that are no (longer an) agent are nobody's behaviour.
        let calls: Vec<Call> = calls.into_iter().filter(|c| self.known(c)).collect();
        let (kept, dropped) = admit(calls, self.queued.load(Ordering::Relaxed));
        let events = &self.ctx.metrics.audit_events;
        events.with_label_values(&["dropped"]).inc_by(dropped as u64);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                queued = self.queued.load(Ordering::Relaxed),
                "audit events beyond capacity dropped"
            );
        }
        if kept.is_empty() {
            return;
        }
        events.with_label_values(&["kept"]).inc_by(kept.len() as u64);
        self.queued.fetch_add(kept.len(), Ordering::Relaxed);
        let _ = self.tx.send((kept, received));
    }

    fn known(&self, c: &Call) -> bool {
        let (ns, name) = &c.agent;
        self.ctx.stores.agents.get(&kube::runtime::reflector::ObjectRef::new(name).within(ns)).is_some()
    }
}

/// Judges the queued batches in order: records first (a write with no record contains at once),
/// statistics second.
async fn judge(ctx: Arc<Context>, mut rx: mpsc::UnboundedReceiver<Batch>, queued: Arc<AtomicUsize>) {
    while let Some((calls, received)) = rx.recv().await {
        queued.fetch_sub(calls.len(), Ordering::Relaxed);
        let now = jiff::Timestamp::now();
        let checked = crate::records::check(&ctx, calls, |k| ctx.monitor.paused(k));
        for (key, w) in &checked.unrecorded {
            ctx.monitor.unrecorded(key, w, received, now);
        }
        ctx.monitor.observe(checked.observations, received, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_core::behaviour::drift::Observation;
    use socwarden_core::behaviour::records::Access;

    fn call(verb: &str, code: u16) -> Call {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let access = (200..400).contains(&code).then(|| Access {
            at,
            verb: verb.into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "web".into(),
            name: "p".into(),
            code,
        });
        Call { agent: ("a".into(), "bot".into()), observation: Observation::api(at, verb, "pods", code), access }
    }

    #[test]
    fn writes_and_refusals_are_significant_reads_and_failed_writes_are_not() {
        for (verb, code, expected) in [
            ("delete", 200, true),
            ("create", 201, true),
            ("get", 403, true),
            ("list", 401, true),
            ("get", 200, false),
            ("list", 200, false),
            ("delete", 404, false),
            ("create", 422, false),
        ] {
            assert_eq!(significant(&call(verb, code)), expected, "{verb} → {code}");
        }
    }

    #[test]
    fn under_capacity_everything_is_kept() {
        let (kept, dropped) = admit(vec![call("get", 200); 10], CAPACITY - 10);
        assert_eq!((kept.len(), dropped), (10, 0));
    }

    #[test]
    fn over_capacity_only_significant_calls_are_kept_until_twice_the_capacity() {
        let batch = || vec![call("get", 200), call("delete", 200), call("get", 403), call("list", 200)];
        let (kept, dropped) = admit(batch(), CAPACITY);
        assert_eq!(dropped, 2);
        assert!(kept.iter().all(significant), "the reads went");
        let (kept, dropped) = admit(batch(), 2 * CAPACITY - 1);
        assert_eq!((kept.len(), dropped), (1, 3), "room for one more");
        let (kept, dropped) = admit(batch(), 2 * CAPACITY);
        assert_eq!((kept.len(), dropped), (0, 4), "full: nothing");
    }
}
