//! The audit sink's intake: each batch is judged (records first, statistics second) in the task of
//! the connection that brought it, so batches are judged side by side and a probing agent's batch
//! never waits behind a flood's; the calls being judged at once are bounded, so that a flood of
//! audit events during an incident costs a bounded amount of memory. Past the capacity, what can
//! contain an agent is still taken — writes (an unrecorded one contains at once) and refusals
//! (out-of-scope attempts) — and the rest is dropped and counted
//! (`socwarden_audit_events_total{result="dropped"}`); past twice the capacity everything is.
//! (A single queue and one judging task were tried first: the containment benchmark's p99 grew
//! from tens of milliseconds to a second, the probing agents' batches waiting behind the others.)
//! Judging is synchronous, so the calls judged at once are at most the runtime's worker threads
//! times the largest batch (`audit::MAX_BODY`, some 20,000 calls): on a small machine the bound is
//! never reached, and a flood beyond what the sink can judge slows its answers instead — the API
//! server's audit backend buffers, and past its buffer drops and counts on its side
//! (`apiserver_audit_error_total`).

use crate::context::Context;
use socwarden_core::behaviour::audit::Call;
use socwarden_core::behaviour::drift::Kind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Calls being judged at once (about 200 bytes each): beyond this only significant ones are kept.
pub const CAPACITY: usize = 50_000;

/// A call that can contain its agent whatever the statistics say: a write that succeeded (it may
/// have no record), or a request refused by authorization (an out-of-scope attempt).
pub fn significant(c: &Call) -> bool {
    c.access.as_ref().is_some_and(|a| a.writes()) || matches!(c.observation.kind, Kind::Api { code: 401 | 403, .. })
}

/// What to keep of a batch of `calls` when `queued` calls are being judged already; the rest is
/// dropped.
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

/// The sink's side: admission, then judgement.
#[derive(Clone)]
pub struct Intake {
    queued: Arc<AtomicUsize>,
    ctx: Arc<Context>,
}

impl Intake {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { queued: Arc::new(AtomicUsize::new(0)), ctx }
    }

    /// Judges the calls of one audit batch received at `received`, as far as capacity allows.
    pub fn take(&self, calls: Vec<Call>, received: Instant) {
        // Calls of ServiceAccounts that are no (longer an) agent are nobody's behaviour.
        let calls: Vec<Call> = calls.into_iter().filter(|c| self.known(c)).collect();
        let (kept, dropped) = admit(calls, self.queued.load(Ordering::Relaxed));
        let events = &self.ctx.metrics.audit_events;
        events.with_label_values(&["dropped"]).inc_by(dropped as u64);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                judged = self.queued.load(Ordering::Relaxed),
                "audit events beyond capacity dropped"
            );
        }
        if kept.is_empty() {
            return;
        }
        let n = kept.len();
        events.with_label_values(&["kept"]).inc_by(n as u64);
        self.queued.fetch_add(n, Ordering::Relaxed);
        let _done = Release(&self.queued, n);
        let ctx = &self.ctx;
        let now = jiff::Timestamp::now();
        let checked = crate::records::check(ctx, kept, |k| ctx.monitor.paused(k));
        for (key, w) in &checked.unrecorded {
            ctx.monitor.unrecorded(key, w, received, now);
        }
        ctx.monitor.observe(checked.observations, received, now);
    }

    fn known(&self, c: &Call) -> bool {
        let (ns, name) = &c.agent;
        self.ctx.stores.agents.get(&kube::runtime::reflector::ObjectRef::new(name).within(ns)).is_some()
    }
}

/// Gives the calls' room back however the judgement ends (a panic included).
struct Release<'a>(&'a AtomicUsize, usize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
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
