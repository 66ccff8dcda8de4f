//! The audit sink's intake: each batch is read as it arrives (`audit::read`, in a blocking task
//! fed with the body's pieces) and judged — records first, statistics second — in the task of the
//! connection that brought it, a part at a time, so batches are judged side by side and a probing
//! agent's batch never waits behind a flood's. A batch of any size is taken: what one costs is
//! the parts being read and judged (`audit::BATCH_MEMORY`, reserved from the sink's body budget),
//! not its bytes. The calls being judged at once are bounded too: past the capacity, what can
//! contain an agent is still taken — writes (an unrecorded one contains at once) and refusals
//! (out-of-scope attempts) — and the rest is dropped and counted
//! (`socwarden_audit_events_total{result="dropped"}`). Past twice the capacity nothing more is
//! judged, but a write or refusal is never dropped silently: its agent is contained unjudged
//! (`result="unjudged"`), as if the write had no record — fail closed.
//! (A single queue and one judging task were tried first: the containment benchmark's p99 grew
//! from tens of milliseconds to a second, the probing agents' batches waiting behind the others.)
//! Judging is synchronous, so the calls judged at once are at most the runtime's worker threads
//! times a part (`audit::PART_CALLS`): on a small machine the capacity is never reached, and a
//! flood beyond what the sink can judge slows its answers instead — the API server's audit backend
//! buffers, and past its buffer drops and counts on its side (`apiserver_audit_error_total`).

use crate::context::Context;
use crate::server::{Body, BodyError};
use hyper::StatusCode;
use hyper::body::Bytes;
use socwarden_core::admission::identity::{AgentKey, CredentialId};
use socwarden_core::behaviour::audit::{self, Batch, Call};
use socwarden_core::behaviour::drift::{Kind, MAX_CREDENTIALS};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

/// Calls being judged at once (about 200 bytes each): beyond this only significant ones are kept.
pub const CAPACITY: usize = 50_000;

/// A call that can contain its agent whatever the statistics say: a write that succeeded (it may
/// have no record), or a request refused by authorization (an out-of-scope attempt).
pub fn significant(c: &Call) -> bool {
    c.access.as_ref().is_some_and(|a| a.writes()) || matches!(c.observation.kind, Kind::Api { code: 401 | 403, .. })
}

/// What is done with the calls of a part.
#[derive(Debug, Default, PartialEq)]
pub struct Admitted {
    /// Judged.
    pub kept: Vec<Call>,
    /// Neither significant nor judged: counted.
    pub dropped: usize,
    /// Significant calls there was no room to judge, per agent: each agent is contained unjudged.
    pub unjudged: Vec<Unjudged>,
}

/// The significant calls of one agent there was no room to judge.
#[derive(Debug, PartialEq)]
pub struct Unjudged {
    pub agent: AgentKey,
    pub calls: usize,
    /// The tokens they were made with (at most `drift::MAX_CREDENTIALS`), for the decision log.
    pub credentials: Vec<CredentialId>,
}

/// What to do with a part of `calls` when `queued` calls are being judged already: everything is
/// judged up to the capacity; beyond, only significant calls, up to twice the capacity; beyond
/// that, a significant call contains its agent unjudged (never dropped), and the rest is dropped.
pub fn admit(calls: Vec<Call>, queued: usize) -> Admitted {
    if queued + calls.len() <= CAPACITY {
        return Admitted { kept: calls, ..Default::default() };
    }
    let room = (2 * CAPACITY).saturating_sub(queued);
    let mut out = Admitted::default();
    for c in calls {
        if !significant(&c) {
            out.dropped += 1;
        } else if out.kept.len() < room {
            out.kept.push(c);
        } else {
            let credential = c.observation.credential;
            let u = match out.unjudged.iter().position(|u| u.agent == c.agent) {
                Some(i) => &mut out.unjudged[i],
                None => {
                    out.unjudged.push(Unjudged { agent: c.agent, calls: 0, credentials: Vec::new() });
                    out.unjudged.last_mut().expect("just pushed")
                }
            };
            u.calls += 1;
            if let Some(id) = credential.filter(|id| !u.credentials.contains(id))
                && u.credentials.len() < MAX_CREDENTIALS
            {
                u.credentials.push(id);
            }
        }
    }
    out
}

/// The sink's side: reading, admission, then judgement.
#[derive(Clone)]
pub struct Intake {
    queued: Arc<AtomicUsize>,
    ctx: Arc<Context>,
}

impl Intake {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { queued: Arc::new(AtomicUsize::new(0)), ctx }
    }

    /// Reads one audit batch and judges its calls, a part at a time; answers 200 once all of it is
    /// judged. A batch within `audit::BATCH_MEMORY` is read whole first (its Content-Length says
    /// so), a larger one as it arrives. A body that is not an EventList is answered 400 and
    /// counted (`result="malformed"`); one that breaks off or stalls, 400 or 408: the API server
    /// sends the batch again (it retries on any error) and, after its last retry, drops it and
    /// counts `apiserver_audit_error_total{plugin="webhook"}`. Parts judged before such an error
    /// (only in a batch larger than a part) are judged again when the batch comes back.
    pub async fn batch(&self, body: Body) -> (StatusCode, Vec<u8>) {
        let (pumped, read) = match body.content_length() {
            Some(len) if len <= audit::BATCH_MEMORY => self.whole(body, len).await,
            _ => self.streamed(body).await,
        };
        let json = |e: &str| serde_json::to_vec(&serde_json::json!({"error": e})).unwrap_or_default();
        match (pumped, read) {
            (Err(e @ BodyError::Stalled(_)), _) => (StatusCode::REQUEST_TIMEOUT, json(&e.to_string())),
            (Err(e), _) => (StatusCode::BAD_REQUEST, json(&e.to_string())),
            (Ok(()), Ok(Err(e))) => (StatusCode::SERVICE_UNAVAILABLE, json(&e)),
            (Ok(()), Ok(Ok(_))) => (StatusCode::OK, b"{}".to_vec()),
            (Ok(()), Err(e)) => {
                self.ctx.metrics.audit_events.with_label_values(&["malformed"]).inc();
                tracing::warn!(error = %e, "malformed audit payload");
                (StatusCode::BAD_REQUEST, json(&e))
            }
        }
    }

    /// A batch of `len` bytes, read whole, then judged (and sent to the leader, see `peer`).
    async fn whole(&self, mut body: Body, len: usize) -> (Result<(), BodyError>, Read) {
        let mut bytes = Vec::with_capacity(len);
        while let Some(piece) = body.next().await {
            match piece {
                Ok(piece) => bytes.extend_from_slice(&piece),
                Err(e) => return (Err(e), Ok(Ok(0))),
            }
        }
        let received = Instant::now();
        let (mut calls, mut agents) = (Vec::new(), Vec::new());
        let read = audit::read_slice(&bytes, jiff::Timestamp::now(), |part| {
            calls.extend(self.to_relay(&part));
            agents.extend(self.take(part, received, Source::Sink));
        });
        drop(bytes);
        match read {
            Ok(n) => {
                let done = match relay(&self.ctx, calls).await {
                    Ok(()) => contained(&self.ctx, &agents).await,
                    Err(e) => Err(e),
                };
                (Ok(()), Ok(done.map(|()| n)))
            }
            Err(e) => (Ok(()), Err(e)),
        }
    }

    /// A batch read as it arrives (in a blocking task fed with the body's pieces) and judged a part
    /// at a time meanwhile.
    async fn streamed(&self, mut body: Body) -> (Result<(), BodyError>, Read) {
        let received = Instant::now();
        let now = jiff::Timestamp::now();
        // Two pieces of the body in transit, one part waiting to be judged: the rest waits in the
        // socket (backpressure on the sender).
        let (pieces, pieces_rx) = mpsc::channel::<Bytes>(2);
        let (parts, mut parts_rx) = mpsc::channel::<Batch>(1);
        let reader = tokio::task::spawn_blocking(move || {
            audit::read(Pieces { rx: pieces_rx, current: Bytes::new() }, now, |part| {
                let _ = parts.blocking_send(part);
            })
        });
        let pump = async move {
            while let Some(piece) = body.next().await {
                // A closed reader stopped early: the body is not an EventList (it says why).
                if pieces.send(piece?).await.is_err() {
                    break;
                }
            }
            Ok::<(), BodyError>(())
        };
        let judge = async {
            let mut relayed = Ok(());
            while let Some(part) = parts_rx.recv().await {
                let calls = self.to_relay(&part);
                let agents = self.take(part, received, Source::Sink);
                if relayed.is_ok() {
                    relayed = relay(&self.ctx, calls).await;
                }
                if relayed.is_ok() {
                    relayed = contained(&self.ctx, &agents).await;
                }
            }
            relayed
        };
        let (pumped, relayed) = futures::future::join(pump, judge).await;
        match reader.await.unwrap_or_else(|e| Err(format!("reading the batch failed: {e}"))) {
            Ok(n) => (pumped, Ok(relayed.map(|()| n))),
            Err(e) => (pumped, Err(e)),
        }
    }

    /// The known calls of `part` to send on to their shard's holder, when this replica does not
    /// hold it and has peers (see `peer`).
    fn to_relay(&self, part: &[Call]) -> Vec<Call> {
        match self.ctx.peers.get() {
            Some(_) => {
                part.iter().filter(|c| !self.ctx.owns(&c.agent.0, &c.agent.1) && self.known(c)).cloned().collect()
            }
            None => Vec::new(),
        }
    }

    /// Judges the calls of one part of an audit batch received at `received`, as far as capacity
    /// allows, and returns the agents whose containment the part decided (and `contained` waits
    /// for). Calls `from` a peer were counted `kept` by the replica the API server sent them to
    /// (and `received` by `peer`): counted once, whatever the replica count.
    pub fn take(&self, calls: Vec<Call>, received: Instant, from: Source) -> Vec<AgentKey> {
        // Calls of ServiceAccounts that are no (longer an) agent are nobody's behaviour.
        let calls: Vec<Call> = calls.into_iter().filter(|c| self.known(c)).collect();
        let agents: BTreeSet<AgentKey> = calls.iter().map(|c| c.agent.clone()).collect();
        configure(&self.ctx, agents.iter());
        self.judge(calls, received, from);
        self.ctx.monitor.awaiting_containment(&agents)
    }

    fn judge(&self, calls: Vec<Call>, received: Instant, from: Source) {
        let Admitted { kept, dropped, unjudged } = admit(calls, self.queued.load(Ordering::Relaxed));
        let events = &self.ctx.metrics.audit_events;
        let now = jiff::Timestamp::now();
        events.with_label_values(&["dropped"]).inc_by(dropped as u64);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                judged = self.queued.load(Ordering::Relaxed),
                "audit events beyond capacity dropped"
            );
        }
        for u in &unjudged {
            let (key, n) = (&u.agent, u.calls);
            events.with_label_values(&["unjudged"]).inc_by(n as u64);
            tracing::warn!(namespace = %key.0, agent = %key.1, calls = n, "writes or refusals beyond twice the capacity: agent contained unjudged");
            self.ctx.monitor.unjudged(key, n, &u.credentials, received, now);
        }
        if kept.is_empty() {
            return;
        }
        let n = kept.len();
        if from == Source::Sink {
            events.with_label_values(&["kept"]).inc_by(n as u64);
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        let _done = Release(&self.queued, n);
        let ctx = &self.ctx;
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

/// Where calls handed to `Intake::take` come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This replica's audit sink (the API server sent the batch here).
    Sink,
    /// Another replica's, sent on by `peer`.
    Peer,
}

/// Configures the models of `agents` that no reconcile of this replica configures (a standby's)
/// from the cache, so that it learns and judges with each agent's own settings.
pub fn configure<'a>(ctx: &Context, agents: impl Iterator<Item = &'a AgentKey>) {
    for key in agents {
        if ctx.monitor.knows(key) {
            continue;
        }
        let at = kube::runtime::reflector::ObjectRef::new(&key.1).within(&key.0);
        if let Some(a) = ctx.stores.agents.get(&at) {
            let paused = a.status.as_ref().and_then(|s| s.phase) == Some(socwarden_api::Phase::Paused);
            ctx.monitor.configure_spec(key, &a.spec.baseline, paused);
        }
    }
}

/// How reading a batch ended: the EventList read (its events) or why not; within it, whether the
/// leader took what this replica sent it (see `peer`).
type Read = Result<Result<usize, String>, String>;

/// Sends the calls this replica received, but does not judge for action, to the holders of their
/// shards (one body per shard, side by side), trying again until the peers' patience runs out or
/// this replica holds the shard (it judged them already).
pub async fn relay(ctx: &Context, calls: Vec<Call>) -> Result<(), String> {
    let Some(peers) = ctx.peers.get().filter(|_| !calls.is_empty()) else { return Ok(()) };
    let mut by_shard: std::collections::BTreeMap<usize, Vec<Call>> = Default::default();
    for c in calls {
        by_shard.entry(ctx.shards.of(&c.agent.0, &c.agent.1)).or_default().push(c);
    }
    let counted = &ctx.metrics.peer_forwards;
    let sent = by_shard.into_iter().map(|(shard, calls)| async move {
        let locate = || async move {
            let lease = crate::shard::lease_name(shard, ctx.shards.count());
            let url = crate::leader::holder(&ctx.client, &ctx.namespace, &lease).await;
            if !ctx.shards.holds(shard) {
                ctx.shards.set_holder(shard, url.clone());
            }
            url
        };
        match peers.forward(&calls, || ctx.shards.holder(shard), locate, || ctx.shards.holds(shard)).await {
            Ok(true) => {
                counted.with_label_values(&["forwarded"]).inc_by(calls.len() as u64);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                counted.with_label_values(&["failed"]).inc_by(calls.len() as u64);
                tracing::warn!(calls = calls.len(), shard, error = %e, "the shard's holder did not take the agents' calls this replica received");
                Err(format!("the holder of shard {shard} did not take the calls: {e}"))
            }
        }
    });
    futures::future::join_all(sent).await.into_iter().collect()
}

/// How long an answer waits for the containment its batch decided (the fast path revokes within
/// milliseconds; beyond this the batch is answered 503 and the API server sends it again).
const CONTAINED_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until the containment that judging their calls decided (`Intake::take`) has revoked the
/// credentials of `agents`, on the replica that holds their shards. A batch is answered 200 only
/// then: a holder that dies between its answer and the revocation would otherwise take the only
/// record of the write with it (the API server never sends an answered batch again). For an agent
/// whose shard this replica does not hold, nothing waits here: the holder the calls were relayed
/// to waited before it answered.
pub async fn contained(ctx: &Context, agents: &[AgentKey]) -> Result<(), String> {
    let agents: Vec<&AgentKey> = agents.iter().filter(|k| ctx.owns(&k.0, &k.1)).collect();
    if agents.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + CONTAINED_WITHIN;
    loop {
        let Some((ns, name)) = agents.iter().copied().find(|k| ctx.monitor.triggered(k)) else { return Ok(()) };
        if Instant::now() >= deadline || !ctx.owns(ns, name) {
            return Err(format!("the containment of {ns}/{name} was not confirmed in time"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The pieces of a body as a blocking reader, for the task that reads the batch.
struct Pieces {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(piece) => self.current = piece,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Gives the calls' room back however the judgement ends (a panic included).
struct Release<'a>(&'a AtomicUsize, usize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// their shard; 503 otherwise (the sender looks for the holder again).
pub async fn serve_peers(
    addr: std::net::SocketAddr,
    material: crate::tls::Material,
    ctx: Arc<Context>,
) -> anyhow::Result<()> {
    let listener = crate::server::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the peer endpoint");
    let intake = Intake::new(ctx.clone());
    let handler = crate::server::Handler::Whole(Arc::new(move |path, body| {
        let (intake, ctx) = (intake.clone(), ctx.clone());
        Box::pin(async move { receive_from_peer(&ctx, &intake, &path, &body).await })
    }));
    // Anyone may connect; only a body signed with the shared key is taken (see the module).
    let limits = crate::server::Limits::new(crate::peer::MAX_BODY);
    let tls = crate::tls::server_config(&material, None)?;
    Ok(crate::server::serve_tls(listener, tls, crate::server::Caller::Anyone, limits, handler).await?)
}

async fn receive_from_peer(ctx: &Context, intake: &Intake, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let json = |e: &str| serde_json::to_vec(&serde_json::json!({"error": e})).unwrap_or_default();
    if path != crate::peer::PATH {
        return (StatusCode::NOT_FOUND, json("not found"));
    }
    let Some(peers) = ctx.peers.get() else { return (StatusCode::NOT_FOUND, json("no peer endpoint")) };
    let calls = match peers.open(body, jiff::Timestamp::now().as_millisecond()) {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics.peer_forwards.with_label_values(&["refused"]).inc();
            tracing::warn!(error = %e, "refused a peer body");
            return (StatusCode::UNAUTHORIZED, json("refused"));
        }
    };
    if let Some(c) = calls.iter().find(|c| !ctx.owns(&c.agent.0, &c.agent.1)) {
        let shard = ctx.shards.of(&c.agent.0, &c.agent.1);
        return (StatusCode::SERVICE_UNAVAILABLE, json(&format!("not the holder of shard {shard}")));
    }
    ctx.metrics.peer_forwards.with_label_values(&["received"]).inc_by(calls.len() as u64);
    let agents = intake.take(calls, Instant::now(), Source::Peer);
    // Answered once what it decided is done, as the sink answers the API server (see `intake`).
    match contained(ctx, &agents).await {
        Ok(()) => (StatusCode::OK, b"{}".to_vec()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json(&e)),
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
            credential: None,
        });
        Call { agent: ("a".into(), "bot".into()), observation: Observation::api(at, verb, "pods", code), access }
    }

    fn unjudged(ns: &str, agent: &str, calls: usize, credentials: Vec<CredentialId>) -> Unjudged {
        Unjudged { agent: (ns.into(), agent.into()), calls, credentials }
    }

    /// The same call, made with the token of id `n`.
    fn with_token(mut c: Call, n: u8) -> Call {
        let id = CredentialId::from_jti(&format!("{:08x}-0000-4000-8000-000000000000", n));
        c.observation.credential = id;
        if let Some(a) = c.access.as_mut() {
            a.credential = id;
        }
        c
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
        let a = admit(vec![call("get", 200); 10], CAPACITY - 10);
        assert_eq!((a.kept.len(), a.dropped, a.unjudged), (10, 0, vec![]));
    }

    #[test]
    fn over_capacity_only_significant_calls_are_kept_until_twice_the_capacity() {
        let batch = || vec![call("get", 200), call("delete", 200), call("get", 403), call("list", 200)];
        let a = admit(batch(), CAPACITY);
        assert_eq!((a.kept.len(), a.dropped, a.unjudged.len()), (2, 2, 0));
        assert!(a.kept.iter().all(significant), "the reads went");
        let a = admit(batch(), 2 * CAPACITY - 1);
        assert_eq!((a.kept.len(), a.dropped), (1, 2), "room for one more");
        assert_eq!(a.unjudged, vec![unjudged("a", "bot", 1, vec![])], "the other is not dropped");
    }

    #[test]
    fn past_twice_the_capacity_a_write_contains_its_agent_unjudged_never_silently_dropped() {
        // Before: everything past twice the capacity was dropped, the unrecorded delete with it.
        let mut other = with_token(call("create", 201), 2);
        other.agent = ("b".into(), "bot2".into());
        let (delete, refused) = (with_token(call("delete", 200), 1), with_token(call("get", 403), 1));
        let batch = vec![call("get", 200), delete, refused, other, call("list", 200)];
        let id = |n: u8| with_token(call("get", 200), n).observation.credential.expect("an id");
        for queued in [2 * CAPACITY, 3 * CAPACITY, usize::MAX / 2] {
            let a = admit(batch.clone(), queued);
            assert!(a.kept.is_empty(), "full: nothing judged at {queued}");
            assert_eq!(a.dropped, 2, "only the reads are dropped at {queued}");
            assert_eq!(
                a.unjudged,
                vec![unjudged("a", "bot", 2, vec![id(1)]), unjudged("b", "bot2", 1, vec![id(2)])],
                "every agent with a write or refusal is contained at {queued}, naming the tokens"
            );
        }
    }
}
