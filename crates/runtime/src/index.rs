//! Where each agent holds RBAC objects, kept up to date from the watch of those objects, so that a
//! reconcile finds an agent's namespaces without scanning every Role of the cluster.

use kube::Resource;
use kube::runtime::watcher::Event;
use socwarden_core::agent::credentials::owner_from_labels;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// (agent namespace, agent name)
pub use socwarden_core::admission::identity::AgentKey;

#[derive(Default)]
struct Inner {
    live: HashMap<AgentKey, BTreeSet<String>>,
    /// Filled during a relist, swapped in when it completes.
    relist: Option<HashMap<AgentKey, BTreeSet<String>>>,
}

/// Namespaces per agent for one kind of object. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct NamespaceIndex(Arc<RwLock<Inner>>);

fn key<K: Resource>(o: &K) -> Option<(AgentKey, String)> {
    Some((owner_from_labels(o.meta().labels.as_ref())?, o.meta().namespace.clone()?))
}

impl NamespaceIndex {
    /// Applies one watch event (call it for every event, before the cache sees it).
    pub fn apply<K: Resource>(&self, ev: &Event<K>) {
        let mut inner = self.0.write().expect("index lock");
        match ev {
            Event::Apply(o) => {
                if let Some((k, ns)) = key(o) {
                    inner.live.entry(k).or_default().insert(ns);
                }
            }
            Event::Delete(o) => {
                if let Some((k, ns)) = key(o)
                    && let Some(set) = inner.live.get_mut(&k)
                {
                    set.remove(&ns);
                    if set.is_empty() {
                        inner.live.remove(&k);
                    }
                }
            }
            Event::Init => inner.relist = Some(HashMap::new()),
            Event::InitApply(o) => {
                if let (Some((k, ns)), Some(relist)) = (key(o), inner.relist.as_mut()) {
                    relist.entry(k).or_default().insert(ns);
                }
            }
            Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.live = relist;
                }
            }
        }
    }

    pub fn namespaces(&self, agent_namespace: &str, agent: &str) -> BTreeSet<String> {
        let inner = self.0.read().expect("index lock");
        inner.live.get(&(agent_namespace.to_string(), agent.to_string())).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::Role;

    fn role(ns: &str, agent: &str) -> Role {
        let mut r = Role::default();
        r.metadata.name = Some("r".into());
        r.metadata.namespace = Some(ns.into());
        r.metadata.labels = Some(socwarden_core::agent::credentials::labels("home", agent));
        r
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let idx = NamespaceIndex::default();
        idx.apply(&Event::Apply(role("a", "bot")));
        idx.apply(&Event::Apply(role("b", "bot")));
        idx.apply(&Event::Apply(role("a", "other")));
        assert_eq!(idx.namespaces("home", "bot"), BTreeSet::from(["a".to_string(), "b".to_string()]));
        idx.apply(&Event::Delete(role("a", "bot")));
        assert_eq!(idx.namespaces("home", "bot"), BTreeSet::from(["b".to_string()]));

        // A relist replaces everything only once it is complete.
        idx.apply(&Event::<Role>::Init);
        idx.apply(&Event::InitApply(role("c", "bot")));
        assert_eq!(idx.namespaces("home", "bot"), BTreeSet::from(["b".to_string()]));
        idx.apply(&Event::<Role>::InitDone);
        assert_eq!(idx.namespaces("home", "bot"), BTreeSet::from(["c".to_string()]));
        assert!(idx.namespaces("home", "other").is_empty());
    }

    #[test]
    fn unlabelled_objects_are_ignored() {
        let idx = NamespaceIndex::default();
        let mut r = role("a", "bot");
        r.metadata.labels = None;
        idx.apply(&Event::Apply(r));
        assert!(idx.namespaces("home", "bot").is_empty());
    }
}
