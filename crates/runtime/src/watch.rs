//! Watches that survive malformed objects.
//!
//! A typed watch fails its whole list when one object does not decode, which would stop the
//! operator from serving every other agent. Here each object is decoded on its own: an undecodable
//! spec becomes a default spec marked with the `socwarden.io/malformed` annotation (so reconcilers
//! fail closed on it and say why), and an undecodable status is dropped.

use crate::metrics::Metrics;
use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use socwarden_api::{
    ActionRequest, ActionRequestSpec, Approval, ApprovalSpec, AutonomyPolicy, AutonomyPolicySpec, SocAction,
    SocActionSpec, SocAgent, SocAgentSpec,
};

pub const MALFORMED_ANNOTATION: &str = "socwarden.io/malformed";

/// How every watch retries after the API server failed: from 200 ms, doubling, at most 2 s, and
/// from the start again once a watch has run a minute. kube's default grows to 30 s, so a watch
/// that failed through a 20-s API server restart could stay blind half a minute more — a kill
/// switch set meanwhile unseen that long (issue 12). A list per watch every 2 s while the API
/// server is down costs nothing.
pub fn backoff() -> kube::runtime::utils::ResetTimerBackoff<Retry> {
    kube::runtime::utils::ResetTimerBackoff::new(Retry::default(), std::time::Duration::from_secs(60))
}

/// How every watch lists: from etcd (`MostRecent`), not from the API server's watch cache. An API
/// server just restarted served lists from a cache at a version it then refused to watch from
/// ("too old resource version"), over and over: the watch stayed blind to agents created after
/// the restart (found by `faults.rs`). A list is rare (start, and after a 410).
pub fn config() -> watcher::Config {
    watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent)
}

/// See `backoff`.
pub struct Retry(std::time::Duration);

impl Retry {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(200);
    const MAX: std::time::Duration = std::time::Duration::from_secs(2);
}

impl Default for Retry {
    fn default() -> Self {
        Retry(Self::FIRST)
    }
}

impl Iterator for Retry {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<std::time::Duration> {
        let wait = self.0;
        self.0 = (wait * 2).min(Self::MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for Retry {
    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// The backoff of a controller whose triggers are `resilient` watches: none. A kube `Controller`
/// puts its whole merged trigger stream to sleep after an error of any one trigger, growing to
/// 30 s and more (its default); the watches already wait between their own retries, so that
/// sleep only made the controller deaf to every other trigger: after a 20-s API server restart
/// the agent controller ignored its watches 8–22 s more, and the agents created meanwhile waited
/// that long for credentials or the kill switch (found by `faults.rs`).
#[derive(Default)]
pub struct NoDelay;

impl Iterator for NoDelay {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoDelay {
    fn reset(&mut self) {}
}

/// A custom resource that can be decoded part by part.
pub trait Lenient: Resource<DynamicType = ()> + Clone + Send + Sync + std::fmt::Debug + 'static {
    type Spec: DeserializeOwned + Default;
    type Status: DeserializeOwned;
    fn assemble(meta: ObjectMeta, spec: Self::Spec, status: Option<Self::Status>) -> Self;
}

macro_rules! lenient {
    ($kind:ty, $spec:ty, $status:ty) => {
        impl Lenient for $kind {
            type Spec = $spec;
            type Status = $status;
            fn assemble(meta: ObjectMeta, spec: $spec, status: Option<$status>) -> Self {
                let mut o = <$kind>::new(meta.name.as_deref().unwrap_or_default(), spec);
                o.metadata = meta;
                o.status = status;
                o
            }
        }
    };
    // A kind without a status (subresource): whatever status is stored is ignored.
    ($kind:ty, $spec:ty) => {
        impl Lenient for $kind {
            type Spec = $spec;
            type Status = serde_json::Value;
            fn assemble(meta: ObjectMeta, spec: $spec, _: Option<serde_json::Value>) -> Self {
                let mut o = <$kind>::new(meta.name.as_deref().unwrap_or_default(), spec);
                o.metadata = meta;
                o
            }
        }
    };
}
lenient!(SocAgent, SocAgentSpec, socwarden_api::SocAgentStatus);
lenient!(SocAction, SocActionSpec, socwarden_api::SocActionStatus);
lenient!(AutonomyPolicy, AutonomyPolicySpec, socwarden_api::AutonomyPolicyStatus);
lenient!(ActionRequest, ActionRequestSpec, socwarden_api::ActionRequestStatus);
lenient!(socwarden_api::Notifier, socwarden_api::NotifierSpec, socwarden_api::NotifierStatus);
// Approvals have no status subresource.
lenient!(Approval, ApprovalSpec);

/// Why the object's spec could not be decoded, if it could not.
pub fn malformed<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().annotations.as_ref()?.get(MALFORMED_ANNOTATION).map(String::as_str)
}

/// Decodes one object; never fails.
pub fn decode<K: Lenient>(obj: DynamicObject) -> K {
    let DynamicObject { mut metadata, data, .. } = obj;
    let spec = data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    let spec = match serde_json::from_value::<K::Spec>(spec) {
        Ok(s) => s,
        Err(e) => {
            metadata.annotations.get_or_insert_default().insert(MALFORMED_ANNOTATION.into(), format!("spec: {e}"));
            K::Spec::default()
        }
    };
    let status = data.get("status").and_then(|s| serde_json::from_value::<K::Status>(s.clone()).ok());
    // Managed fields are large and never read here; dropping them keeps the caches small.
    metadata.managed_fields = None;
    K::assemble(metadata, spec, status)
}

/// Watch restarts: each change of the value starts every watch over (see `restartable`).
pub type Restarts = tokio::sync::watch::Receiver<u64>;

/// A watch that starts over — a fresh list, the cache rebuilt from it — each time `restarts`
/// changes. Sent when the API server answers again after it did not: a watch resumed from its
/// last version on an API server just restarted could hang a minute while that server's cache of
/// custom resources filled (Kubernetes 1.20, found by `faults.rs`), blind to every agent created
/// meanwhile; a list (from etcd, see `config`) sees them at once.
pub fn restartable<T: Send + 'static>(
    make: impl Fn() -> futures::stream::BoxStream<'static, T> + Send + 'static,
    restarts: Restarts,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold((make(), restarts, make), |(mut inner, mut restarts, make)| async move {
        loop {
            tokio::select! {
                biased;
                Ok(()) = restarts.changed() => inner = make(),
                next = inner.next() => return next.map(|item| (item, (inner, restarts, make))),
            }
        }
    })
}

/// A watch of `api` (narrowed by `labels`) as every watch of the operator runs: listed from etcd
/// (`config`), retried soon (`backoff`), started over on `restarts` (`restartable`).
pub fn resilient<K>(
    api: Api<K>,
    labels: Option<&str>,
    restarts: Restarts,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = match labels {
        Some(l) => config().labels(l),
        None => config(),
    };
    restartable(move || watcher::watcher(api.clone(), config.clone()).boxed(), restarts).backoff(backoff())
}

/// A watch of every object of `K`, decoded leniently (see `resilient` for how it runs).
pub fn watch<K: Lenient>(
    client: Client,
    metrics: Metrics,
    restarts: Restarts,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static {
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<K>(&()));
    let raw = resilient(api, None, restarts);
    let kind = K::kind(&()).to_string();
    raw.map(move |ev| {
        ev.map(|ev| {
            let count = |o: &K| {
                if let Some(why) = malformed(o) {
                    metrics.malformed_objects.with_label_values(&[&kind]).inc();
                    tracing::warn!(kind = %kind, name = %o.name_any(), namespace = ?o.namespace(), %why, "malformed object");
                }
            };
            match ev {
                Event::Apply(o) => {
                    let o = decode::<K>(o);
                    count(&o);
                    Event::Apply(o)
                }
                Event::InitApply(o) => {
                    let o = decode::<K>(o);
                    count(&o);
                    Event::InitApply(o)
                }
                Event::Delete(o) => Event::Delete(decode(o)),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use socwarden_api::Tier;

    #[test]
    fn watches_retry_from_200ms_doubling_to_2s_and_start_over_on_reset() {
        use kube::runtime::utils::Backoff as _;
        let ms = |r: &mut Retry, n: usize| r.take(n).map(|d| d.as_millis()).collect::<Vec<_>>();
        let mut r = Retry::default();
        assert_eq!(ms(&mut r, 6), [200, 400, 800, 1600, 2000, 2000]);
        r.reset();
        assert_eq!(ms(&mut r, 2), [200, 400]);
    }

    #[tokio::test]
    async fn a_restartable_watch_starts_over_on_each_restart() {
        let made = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (restart, restarts) = tokio::sync::watch::channel(0u64);
        let counter = made.clone();
        // Each stream made yields its number, then waits forever (as a watch does).
        let make = move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            futures::stream::once(async move { n }).chain(futures::stream::pending()).boxed()
        };
        let mut s = std::pin::pin!(restartable(make, restarts));
        assert_eq!(s.next().await, Some(0));
        restart.send_modify(|n| *n += 1);
        assert_eq!(s.next().await, Some(1), "a new stream after the restart");
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), s.next()).await;
        assert!(waited.is_err(), "no restart, no new stream");
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    fn dynobj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_good_object_decodes_as_typed() {
        let a: SocAgent = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
            "metadata": {"name": "bot", "namespace": "agents", "managedFields": [{"manager": "x"}]},
            "spec": {"tier": "supervised", "scope": {"namespaces": ["web"]}},
            "status": {"phase": "Active"}
        })));
        assert_eq!(a.spec.tier, Tier::Supervised);
        assert!(malformed(&a).is_none());
        assert!(a.metadata.managed_fields.is_none());
        assert!(a.status.is_some());
    }

    #[test]
    fn a_malformed_spec_is_marked_not_fatal() {
        let a: SocAgent = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
            "metadata": {"name": "bot", "namespace": "agents"},
            "spec": {"tier": "godmode", "scope": {"namespaces": ["web"]}},
        })));
        assert!(malformed(&a).unwrap().contains("godmode"));
        assert_eq!(a.name_any(), "bot");
        assert_eq!(a.spec, SocAgentSpec::default());
    }

    #[test]
    fn a_malformed_status_is_dropped() {
        let p: AutonomyPolicy = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "AutonomyPolicy",
            "metadata": {"name": "default"},
            "spec": {"killSwitch": true},
            "status": {"conditions": "not a list"}
        })));
        assert!(p.spec.kill_switch);
        assert!(p.status.is_none());
        assert!(malformed(&p).is_none());
    }

    #[test]
    fn a_malformed_action_defaults_to_critical() {
        let a: SocAction = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAction",
            "metadata": {"name": "x"}, "spec": {"risk": 7}
        })));
        assert!(malformed(&a).is_some());
        assert_eq!(a.spec.risk, socwarden_api::Risk::Critical);
        assert!(a.spec.grants.is_empty());
    }
}
