//! Kubernetes plumbing every reconciler shares, written once: the error category used as a metric
//! label, deleting what may already be gone, the finalizer, the status write with its memo, and
//! publishing Events off the reconcile's path.

use crate::events::{EventType, Recorder};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use tracing::warn;

/// A small fixed label for metrics, from a Kubernetes API error (never its Debug text).
pub fn category(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 409 => "conflict",
        kube::Error::Api(s) if s.code == 403 => "forbidden",
        kube::Error::Api(s) if s.code == 404 => "not-found",
        // Overloaded, restarting, or its storage gone: worth trying again soon.
        kube::Error::Api(s) if s.code >= 500 || s.code == 429 => "unavailable",
        kube::Error::Api(_) => "api",
        _ => "transport",
    }
}

/// Whether a failure is the API server's state rather than the request's (unreachable, 5xx,
/// 429): worth trying again soon, and no reason to give up on what was being done.
pub fn transient(e: &kube::Error) -> bool {
    matches!(category(e), "transport" | "unavailable")
}

pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Deletes, treating "already gone" as success.
pub async fn delete_gone<K>(api: &Api<K>, name: &str) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How a finalizer patch treats a concurrent change of the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Guarded by the resourceVersion (a concurrent change of the list is never lost); on a
    /// conflict the fresh object is read once.
    ResourceVersion,
    /// Unguarded, for an object whose `obj` may be older than our own last write (saves a
    /// conflict and a read on a hot path).
    None,
}

/// Adds or removes `finalizer` with a merge patch (see `Guard`).
/// Returns the object's resourceVersion after the write (None when nothing had to change).
pub async fn set_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    present: bool,
    guard: Guard,
) -> kube::Result<Option<String>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = obj.name_any();
    let mut current = obj.clone();
    for attempt in 0..2 {
        let mut list: Vec<String> = current.finalizers().iter().filter(|f| *f != finalizer).cloned().collect();
        if present {
            list.push(finalizer.to_string());
        }
        if list.as_slice() == current.finalizers() {
            return Ok(None);
        }
        let patch = match guard {
            Guard::ResourceVersion => {
                json!({"metadata": {"finalizers": list, "resourceVersion": current.resource_version()}})
            }
            Guard::None => json!({"metadata": {"finalizers": list}}),
        };
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(written) => return Ok(written.resource_version()),
            Err(e) if is_status(&e, 404) && !present => return Ok(None),
            Err(e) if is_status(&e, 409) && attempt == 0 => match api.get_opt(&name).await? {
                Some(fresh) => current = fresh,
                None => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// What we last wrote to an object's status, for as long as the cache has not caught up with it.
///
/// A reconcile may write a status more than once (a decision, then its execution), and the next
/// reconcile may see the cache at any of the versions before the last write. Every version our
/// writes replaced is remembered: while the cache shows one of them, it is behind, and the status
/// we wrote is the truth; once it shows anything else, the cache is the truth again.
pub struct StatusMemo<S> {
    entries: Mutex<HashMap<String, MemoEntry<S>>>,
    /// The newest resourceVersion this replica's writes produced, per object, until the cache
    /// shows it: what its next status write is conditional on (see `base`).
    versions: Mutex<HashMap<String, String>>,
}

struct MemoEntry<S> {
    /// resourceVersions older than our last write.
    superseded: Vec<String>,
    /// The resourceVersion our last write produced.
    latest: Option<String>,
    status: S,
}

impl<S: Clone> Default for StatusMemo<S> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()), versions: Mutex::new(HashMap::new()) }
    }
}

impl<S: Clone> StatusMemo<S> {
    /// The status to believe for an object at `resource_version` whose cached status is `cached`.
    pub fn shown(&self, uid: &str, resource_version: Option<&str>, cached: Option<&S>) -> Option<S> {
        if let Some(rv) = resource_version {
            // The cache shows our last write (or later): `base` can take the cache's version.
            let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            if versions.get(uid).is_some_and(|ours| newest(ours, rv) == rv) {
                versions.remove(uid);
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(uid) {
            Some(e) if resource_version.is_some_and(|rv| e.superseded.iter().any(|s| s == rv)) => {
                Some(e.status.clone())
            }
            Some(_) => {
                entries.remove(uid);
                cached.cloned()
            }
            None => cached.cloned(),
        }
    }

    /// A write of ours (status or metadata) produced `rv`.
    pub fn saw(&self, uid: &str, rv: Option<&str>) {
        if let Some(rv) = rv {
            let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            let newer = versions.get(uid).is_none_or(|v| newest(v, rv) == rv);
            if newer {
                versions.insert(uid.to_string(), rv.to_string());
            }
        }
    }

    /// The resourceVersion a status write must be conditional on: the newest of the versions seen
    /// (the object the reconcile holds, the cache's current one) and of our own last write. A
    /// write on top of anything else fails (409) instead of overwriting: a leader whose write was
    /// delayed past its lease (stalled, stopped) cannot undo the work of its successor, which
    /// wrote since.
    pub fn base(&self, uid: &str, seen: &[Option<&str>]) -> Option<String> {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions
            .get(uid)
            .map(String::as_str)
            .into_iter()
            .chain(seen.iter().flatten().copied())
            .reduce(newest)
            .map(String::from)
    }

    /// Records a write made on top of `based_on` that produced `written_rv`.
    pub fn wrote(&self, uid: &str, based_on: Option<&str>, written_rv: Option<&str>, status: S) {
        self.saw(uid, written_rv);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (mut superseded, previous) = match entries.remove(uid) {
            Some(e) => (e.superseded, e.latest),
            None => (Vec::new(), None),
        };
        superseded.extend(previous);
        superseded.extend(based_on.map(String::from));
        superseded.sort();
        superseded.dedup();
        if superseded.len() > 16 {
            superseded.drain(..superseded.len() - 16);
        }
        entries.insert(uid.to_string(), MemoEntry { superseded, latest: written_rv.map(String::from), status });
    }

    pub fn forget(&self, uid: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        self.versions.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    /// The status `obj` shows: the cache's, unless the cache still shows a version our last
    /// write replaced, in which case what we wrote (so a second reconcile computes the same
    /// status, with the same transition times, and writes nothing).
    pub fn shown_by<K: Resource>(&self, obj: &K, cached: Option<&S>) -> Option<S> {
        self.shown(&obj.uid().unwrap_or_default(), obj.meta().resource_version.as_deref(), cached)
    }
}

/// Writes `status` with a JSON merge patch on `/status` (much cheaper for the API server than an
/// apply on a custom resource), unless the object already shows exactly this status; remembers
/// the write in `memo`.
/// Writes `status` unless `shown` already is it. With `precondition`, only on top of that
/// resourceVersion (409 Conflict otherwise).
pub async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    memo: &StatusMemo<S>,
    shown: Option<&S>,
    status: &S,
    precondition: Option<&str>,
) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: Clone + PartialEq + Serialize,
{
    if shown == Some(status) {
        return Ok(());
    }
    let patch = match precondition {
        Some(rv) => json!({ "metadata": {"resourceVersion": rv}, "status": status }),
        None => json!({ "status": status }),
    };
    let written = api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    memo.wrote(
        &obj.uid().unwrap_or_default(),
        obj.meta().resource_version.as_deref(),
        written.meta().resource_version.as_deref(),
        status.clone(),
    );
    Ok(())
}

/// The newer of two resourceVersions (etcd revisions; compared as numbers when both are).
fn newest<'a>(a: &'a str, b: &'a str) -> &'a str {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) if y > x => b,
        (Ok(_), Ok(_)) => a,
        _ => b,
    }
}

/// Publishes Events about `obj` off the reconcile's path, in order; a failure is logged, never
/// fatal.
pub fn publish<K>(recorder: &Recorder, obj: &K, events: Vec<(EventType, &'static str, String)>)
where
    K: Resource<DynamicType = ()>,
{
    if events.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    let recorder = recorder.clone();
    tokio::spawn(async move {
        for (type_, reason, note) in events {
            if let Err(e) = recorder.publish(type_, reason, note, &reference).await {
                warn!(error = %e, reason, "could not publish event");
            }
        }
    });
}

/// One value of a Secret's data.
pub fn secret_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data.as_ref()?.get(key).map(|b| b.0.clone())
}

/// Reads a Secret of the operator, creating it with `make()` if it does not exist. When two
/// replicas race, the one whose create fails reads what the other wrote.
pub async fn shared_secret<E: From<kube::Error>>(
    client: &Client,
    namespace: &str,
    name: &str,
    make: impl FnOnce() -> Result<BTreeMap<String, Vec<u8>>, E>,
) -> Result<Secret, E> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_opt(name).await? {
        return Ok(s);
    }
    let data = make()?.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("app.kubernetes.io/name".to_string(), "soc-warden".to_string())].into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get(name).await?),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::StatusMemo;

    #[test]
    fn two_writes_in_a_row_are_not_undone_by_a_cache_at_either_older_version() {
        let m: StatusMemo<&str> = StatusMemo::default();
        m.wrote("u", Some("1"), Some("2"), "running");
        m.wrote("u", Some("1"), Some("3"), "done");
        assert_eq!(m.shown("u", Some("1"), Some(&"none")), Some("done"));
        assert_eq!(m.shown("u", Some("2"), Some(&"running")), Some("done"), "the cache at our first write is behind");
        // Caught up: the cache is the truth again, and the memo is dropped.
        assert_eq!(m.shown("u", Some("3"), Some(&"done")), Some("done"));
        assert_eq!(m.shown("u", Some("1"), Some(&"none")), Some("none"));
    }

    #[test]
    fn someone_elses_newer_write_wins() {
        let m: StatusMemo<&str> = StatusMemo::default();
        m.wrote("u", Some("1"), Some("2"), "ours");
        assert_eq!(m.shown("u", Some("7"), Some(&"theirs")), Some("theirs"));
    }

    #[test]
    fn writes_are_conditional_on_the_newest_version_seen_and_forgotten_once_the_cache_has_them() {
        let m: StatusMemo<&str> = StatusMemo::default();
        assert_eq!(m.base("u", &[Some("1"), None]), Some("1".into()));
        m.wrote("u", Some("1"), Some("2"), "running");
        m.saw("u", Some("3")); // a finalizer of ours
        assert_eq!(m.base("u", &[Some("1"), Some("2")]), Some("3".into()), "our writes, not the stale object");
        assert_eq!(m.base("u", &[Some("9")]), Some("9".into()), "someone's newer write");
        // The cache shows our last write: the version is no longer kept (the cache has it).
        m.shown("u", Some("3"), Some(&"running"));
        assert!(m.versions.lock().unwrap().is_empty(), "nothing kept per object once the cache caught up");
        assert_eq!(m.base("u", &[Some("1"), Some("3")]), Some("3".into()));
        m.saw("v", Some("5"));
        m.forget("v");
        assert_eq!(m.base("v", &[None]), None);
    }
}
