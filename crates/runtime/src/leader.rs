//! Leader election on a `coordination.k8s.io` Lease, so that two replicas are safe: every replica
//! keeps its caches warm and serves the admission webhook, only the leader reconciles (issues
//! tokens, decides, executes, contains). A leader that cannot renew in time stops acting and
//! stands by to lead again (see `run::leadership`); its successor takes over once the lease has
//! expired.
//!
//! Leadership is **fenced** by time, not by a flag: every renewal is bounded by a deadline, and a
//! confirmed renewal lets this replica act only until two thirds of a lease after the renewal
//! began (`Fence`). A leader whose calls stall — or whose process is stopped and resumed — finds
//! its fence expired when it wakes (the monotonic clock kept running) and acts no more, well
//! before another replica may take the lease (a whole lease after the last renewal).

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const LEASE: &str = "soc-warden-leader";

/// Until when this replica may act as the leader (see the module). Checked before every reconcile
/// and again right before an execution and a decision are written.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base`; 0: not leading; `u64::MAX`: leading without election.
    until: AtomicU64,
}

impl Fence {
    pub fn new() -> Self {
        Self { base: Instant::now(), until: AtomicU64::new(0) }
    }

    /// Leads for good (a single replica, no election).
    pub fn forever(&self) {
        self.until.store(u64::MAX, Ordering::SeqCst);
    }

    /// A renewal that began at `started` was confirmed: act until two thirds of `lease` after it.
    pub fn renewed(&self, started: Instant, lease: Duration) {
        let until = started.saturating_duration_since(self.base) + lease * 2 / 3;
        self.until.fetch_max(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stops acting now (a shard handed over to its preferred replica, see `shard`).
    pub fn end(&self) {
        self.until.store(0, Ordering::SeqCst);
    }

    pub fn holds(&self) -> bool {
        match self.until.load(Ordering::SeqCst) {
            u64::MAX => true,
            until => (self.base.elapsed().as_millis() as u64) < until,
        }
    }
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    /// How many shards the agents are spread over (see `shard`); 1: one leader.
    pub shards: usize,
    /// Where the other replicas reach this one's peer endpoint (see `peer`), written on the Lease
    /// while this replica holds it.
    pub peer_url: Option<String>,
}

/// Whether `identity` may take or keep the lease now: it holds it, or nobody does. Pure.
pub fn may_hold(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    spec.and_then(|s| s.holder_identity.as_deref()) == Some(identity) || free_since(spec, now).is_some()
}

/// Since when nobody holds the lease of `spec`: its holder's lease ran out, or it was freed (a
/// freed Lease has no holder; its renew time is when it was freed, see `release`). None: it is
/// held. Pure.
pub fn free_since(spec: Option<&LeaseSpec>, now: Timestamp) -> Option<Timestamp> {
    let Some(s) = spec else { return Some(Timestamp::UNIX_EPOCH) };
    match s.holder_identity.as_deref() {
        None | Some("") => Some(s.renew_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)),
        Some(_) => match expires_at(s) {
            Some(e) if now > e => Some(e),
            Some(_) => None,
            None => Some(Timestamp::UNIX_EPOCH),
        },
    }
}

/// When the holder's lease runs out: its last renewal (or acquisition) plus its duration, to the
/// microsecond the holder wrote. None when it carries no time. Pure.
pub fn expires_at(s: &LeaseSpec) -> Option<Timestamp> {
    let renewed = s.renew_time.as_ref().or(s.acquire_time.as_ref())?.0;
    renewed.checked_add(jiff::SignedDuration::from_secs(i64::from(s.lease_duration_seconds.unwrap_or(15)))).ok()
}

/// How long a standby waits before its next attempt: its usual `period`, or less when the
/// holder's lease runs out sooner, so that it takes over just after the expiry rather than up to
/// a period later (a crashed leader's lease is then taken within the lease, not lease + period).
pub fn retry_in(expires: Option<Timestamp>, now: Timestamp, period: Duration) -> Duration {
    match expires {
        Some(e) if e > now => {
            let left = Duration::from_micros((e.as_microsecond() - now.as_microsecond()) as u64);
            period.min(left + AFTER_EXPIRY)
        }
        _ => period,
    }
}

/// How long after the holder's expiry a standby tries (the lease is strictly past its time).
const AFTER_EXPIRY: Duration = Duration::from_millis(20);

/// What one attempt on the lease found.
#[derive(Debug, PartialEq)]
pub enum Hold {
    /// This replica holds it now.
    Held,
    /// Another replica does (or won a race for it); its lease runs out at `expires`; its peer
    /// endpoint is at `peer` (when it says).
    Busy { expires: Option<Timestamp>, peer: Option<String> },
}

/// The Lease's metadata with this replica's peer URL (or none).
fn annotate(c: &Config, mut meta: ObjectMeta) -> ObjectMeta {
    let mut annotations = meta.annotations.take().unwrap_or_default();
    match &c.peer_url {
        Some(url) => annotations.insert(crate::peer::ANNOTATION.into(), url.clone()),
        None => annotations.remove(crate::peer::ANNOTATION),
    };
    meta.annotations = Some(annotations);
    meta
}

/// The peer URL the holder of `lease` wrote on it.
pub fn peer_of(lease: &Lease) -> Option<String> {
    lease.metadata.annotations.as_ref()?.get(crate::peer::ANNOTATION).cloned()
}

pub(crate) fn spec(c: &Config, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let keeps = previous.and_then(|p| p.holder_identity.as_deref()) == Some(c.identity.as_str());
    LeaseSpec {
        holder_identity: Some(c.identity.clone()),
        lease_duration_seconds: Some(c.duration.as_secs() as i32),
        acquire_time: if keeps { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            previous.and_then(|p| p.lease_transitions).unwrap_or(0) + if keeps || previous.is_none() { 0 } else { 1 },
        ),
        ..Default::default()
    }
}

/// Whether this replica takes a free lease now (see `shard`: a free shard waits for its
/// preferred replica a while). Renewing a lease it holds is not asked.
pub type Wants<'a> = &'a (dyn Fn(Option<&LeaseSpec>, Timestamp) -> bool + Send + Sync);

/// One attempt to take or renew the lease `name`. A write that races another replica's fails on
/// the resourceVersion and counts as not holding.
pub async fn try_hold(client: &Client, c: &Config, name: &str, wants: Wants<'_>) -> kube::Result<Hold> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let now = Timestamp::now();
    match api.get_opt(name).await? {
        None if !wants(None, now) => Ok(Hold::Busy { expires: None, peer: None }),
        None => {
            let lease = Lease {
                metadata: annotate(
                    c,
                    ObjectMeta { name: Some(name.into()), namespace: Some(c.namespace.clone()), ..Default::default() },
                ),
                spec: Some(spec(c, None, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Hold::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => lost_race(&api, name).await,
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let mine = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(c.identity.as_str());
            if !may_hold(lease.spec.as_ref(), &c.identity, now) || (!mine && !wants(lease.spec.as_ref(), now)) {
                let peer = peer_of(&lease);
                return Ok(Hold::Busy { expires: lease.spec.as_ref().and_then(expires_at), peer });
            }
            lease.spec = Some(spec(c, lease.spec.as_ref(), now));
            lease.metadata = annotate(c, lease.metadata);
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Hold::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => lost_race(&api, name).await,
                Err(e) => Err(e),
            }
        }
    }
}

/// Where the holder of the lease `name` serves its peer endpoint, as the Lease says now: None
/// when nobody holds it (or it cannot be read).
pub async fn holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace).get_opt(name).await.ok()??;
    free_since(lease.spec.as_ref(), Timestamp::now()).is_none().then(|| peer_of(&lease)).flatten()
}

/// Another replica took the lease `name` first: who, as the Lease says now (the standby then knows
/// the new holder's peer endpoint at once, and when its lease runs out).
async fn lost_race(api: &Api<Lease>, name: &str) -> kube::Result<Hold> {
    let lease = api.get_opt(name).await?;
    let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
    Ok(Hold::Busy { expires: spec.and_then(expires_at), peer: lease.as_ref().and_then(peer_of) })
}

/// Frees the lease `name` if this replica still holds it (a shard handed over, see `shard`): no
/// holder, and the time it was freed — or, when this replica is leaving (`to_anyone`), a time long
/// past, so that any replica takes it at once rather than waiting for a preferred one.
pub async fn release(client: &Client, c: &Config, name: &str, to_anyone: bool) -> kube::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let Some(mut lease) = api.get_opt(name).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(c.identity.as_str())) else {
        return Ok(());
    };
    spec.holder_identity = None;
    let freed = if to_anyone { Timestamp::UNIX_EPOCH } else { Timestamp::now() };
    spec.renew_time = Some(MicroTime(freed));
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// One attempt within a deadline (a third of the lease): a stalled call counts as a failure.
async fn attempt(client: &Client, c: &Config, name: &str, fence: &Fence, wants: Wants<'_>) -> kube::Result<Hold> {
    let started = Instant::now();
    match tokio::time::timeout(c.duration / 3, try_hold(client, c, name, wants)).await {
        Ok(Ok(Hold::Held)) => {
            fence.renewed(started, c.duration);
            Ok(Hold::Held)
        }
        Ok(other) => other,
        Err(_) => Err(kube::Error::Service(format!("no answer within {:?}", c.duration / 3).into())),
    }
}

/// Waits until this replica holds the lease `name`; meanwhile tells `leader` where the holder's
/// peer endpoint is at each attempt (None once this replica holds it). A free lease is taken when
/// `wants` says so; a held one is tried again just after it runs out, plus `after` (the time
/// a free shard waits for its preferred replica).
pub async fn acquire(
    client: &Client,
    c: &Config,
    name: &str,
    fence: &Fence,
    wants: Wants<'_>,
    after: Duration,
    leader: impl Fn(Option<String>),
) {
    loop {
        let wait = match attempt(client, c, name, fence, wants).await {
            Ok(Hold::Held) => {
                leader(None);
                return;
            }
            Ok(Hold::Busy { expires, peer }) => {
                leader(peer);
                let later = expires.and_then(|e| e.checked_add(after).ok());
                retry_in(later, Timestamp::now(), c.duration / 5)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read or take the leader lease");
                c.duration / 5
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Renews the lease `name` every third of its duration; returns when leadership is lost (a renewal
/// refused, or the fence expired: no renewal confirmed in time, e.g. after a stall), or when
/// `stay` says to hand it over (then the fence has ended; the caller frees the lease).
pub async fn keep(client: &Client, c: &Config, name: &str, fence: &Fence, stay: impl Fn() -> bool) -> Kept {
    let any: Wants<'_> = &|_, _| true;
    loop {
        tokio::time::sleep(c.duration / 3).await;
        if !fence.holds() {
            return Kept::Lost;
        }
        if !stay() {
            fence.end();
            return Kept::HandedOver;
        }
        match attempt(client, c, name, fence, any).await {
            Ok(Hold::Held) => {}
            Ok(Hold::Busy { .. }) => return Kept::Lost,
            Err(e) => {
                tracing::warn!(error = %e, lease = name, "could not renew the lease");
                if !fence.holds() {
                    return Kept::Lost;
                }
            }
        }
    }
}

/// How `keep` ended.
#[derive(Debug, PartialEq)]
pub enum Kept {
    Lost,
    HandedOver,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease held by `holder`, renewed at second `renewed` for `duration` seconds.
    fn lease(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn the_fence_lets_a_leader_act_two_thirds_of_a_lease_after_a_renewal_began() {
        let f = Fence::new();
        assert!(!f.holds(), "not leading before a renewal");
        let lease = Duration::from_millis(600);
        f.renewed(Instant::now(), lease);
        assert!(f.holds());
        // Asleep past two thirds of the lease (as a stopped process is): no longer leading.
        std::thread::sleep(Duration::from_millis(450));
        assert!(!f.holds(), "the fence expired while no renewal was confirmed");
        // A renewal confirmed late but begun earlier counts from when it began.
        let begun = Instant::now();
        std::thread::sleep(Duration::from_millis(450));
        f.renewed(begun, lease);
        assert!(!f.holds());
        let f = Fence::new();
        f.forever();
        assert!(f.holds());
    }

    #[test]
    fn who_may_hold_the_lease() {
        let now = Timestamp::from_second(1000).unwrap();
        assert!(may_hold(None, "a", now));
        assert!(may_hold(Some(&lease("a", 999, 15)), "a", now), "the holder renews");
        assert!(!may_hold(Some(&lease("b", 990, 15)), "a", now), "another's live lease");
        assert!(may_hold(Some(&lease("b", 980, 15)), "a", now), "another's expired lease");
        assert!(may_hold(Some(&LeaseSpec::default()), "a", now), "released");
    }

    #[test]
    fn a_lease_is_free_from_its_holders_expiry_or_from_when_it_was_freed() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(free_since(Some(&lease("a", 995, 15)), now), None, "held");
        assert_eq!(free_since(Some(&lease("a", 980, 15)), now), Some(Timestamp::from_second(995).unwrap()));
        let mut freed = lease("a", 990, 15);
        freed.holder_identity = None;
        assert_eq!(free_since(Some(&freed), now), Some(Timestamp::from_second(990).unwrap()));
        assert_eq!(free_since(None, now), Some(Timestamp::UNIX_EPOCH), "never held");
    }

    #[test]
    fn a_standby_tries_again_just_after_the_holders_lease_runs_out() {
        let period = Duration::from_secs(3);
        let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap();
        let mut held = lease("b", 1000, 15);
        held.renew_time = Some(MicroTime(at(1_000_500)));
        let expires = expires_at(&held);
        assert_eq!(expires, Some(at(1_015_500)), "to the sub-second the holder wrote");
        assert_eq!(retry_in(expires, at(1_000_600), period), period, "far from expiry: the usual period");
        assert_eq!(retry_in(expires, at(1_014_000), period), Duration::from_millis(1520), "just after expiry");
        assert_eq!(retry_in(expires, at(1_016_000), period), period, "already expired: no shortcut");
        assert_eq!(retry_in(None, at(1_014_000), period), period, "no time on the lease");
        // Expiry is exact, not rounded to whole seconds.
        assert!(!may_hold(Some(&held), "a", at(1_015_500)));
        assert!(may_hold(Some(&held), "a", at(1_015_501)));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let c = Config {
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            shards: 1,
            peer_url: None,
        };
        let now = Timestamp::from_second(1000).unwrap();
        let mut other = lease("b", 900, 15);
        other.lease_transitions = Some(3);
        assert_eq!(spec(&c, Some(&other), now).lease_transitions, Some(4));
        let mut mine = lease("a", 990, 15);
        mine.lease_transitions = Some(4);
        mine.acquire_time = Some(MicroTime(Timestamp::from_second(100).unwrap()));
        let renewed = spec(&c, Some(&mine), now);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, mine.acquire_time);
    }

    #[test]
    fn the_holder_writes_its_peer_url_on_the_lease_and_a_standby_reads_it() {
        let mut c = Config {
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            shards: 1,
            peer_url: Some("https://10.0.0.7:8444".into()),
        };
        let mut meta =
            ObjectMeta { annotations: Some([("keep".to_string(), "me".to_string())].into()), ..Default::default() };
        meta = annotate(&c, meta);
        let lease = Lease { metadata: meta.clone(), spec: None };
        assert_eq!(peer_of(&lease).as_deref(), Some("https://10.0.0.7:8444"));
        assert_eq!(meta.annotations.as_ref().unwrap()["keep"], "me", "other annotations are kept");
        // A holder without a peer endpoint takes away its predecessor's URL.
        c.peer_url = None;
        let lease = Lease { metadata: annotate(&c, meta), spec: None };
        assert_eq!(peer_of(&lease), None);
    }
}
