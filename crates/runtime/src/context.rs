//! What every reconcile shares: the client, the caches, the configuration, metrics and events.

use crate::decisionlog::DecisionLog;
use crate::events::{Recorder, Reporter};
use crate::execute::Discovery;
use crate::index::NamespaceIndex;
pub use crate::k8s::StatusMemo;
use crate::metrics::Metrics;
use crate::watch::malformed;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use socwarden_api::{
    ActionRequest, ActionRequestStatus, Approval, AutonomyPolicy, SocAction, SocAgent, SocAgentStatus,
};
use socwarden_core::admission::identity::AgentKey;
use socwarden_core::admission::signature::Key;
use socwarden_core::agent::credentials::IssuedToken;
use socwarden_core::agent::rbac::Rule;
use std::collections::HashMap;
use std::sync::Mutex;

/// Field manager for every write the operator makes.
pub const MANAGER: &str = "soc-warden";

/// Local caches, filled by watches. The managed-object caches hold only objects labelled
/// `app.kubernetes.io/managed-by=soc-warden`, without managed fields (and Secrets without data).
#[derive(Clone)]
pub struct Stores {
    pub agents: Store<SocAgent>,
    pub actions: Store<SocAction>,
    pub policies: Store<AutonomyPolicy>,
    pub service_accounts: Store<ServiceAccount>,
    pub secrets: Store<Secret>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub requests: Store<ActionRequest>,
    pub approvals: Store<Approval>,
    /// Woken on every change of a request: one the watch brought, or a status this replica wrote
    /// (the MCP gateway waits on it for a call's answer instead of polling the cache).
    pub request_changes: std::sync::Arc<tokio::sync::Notify>,
    /// Namespaces where each agent has a Role / a RoleBinding.
    pub role_namespaces: NamespaceIndex,
    pub binding_namespaces: NamespaceIndex,
    /// The kinds the API server serves (discovery): targets and effects are resolved against them.
    pub kinds: crate::kinds::KindsCache,
}

impl Stores {
    /// Whether every cache holds a complete first list. Until then a reconcile could mistake
    /// "not seen yet" for "does not exist" and revoke grants, so reconciles wait.
    pub fn ready(&self) -> bool {
        fn r<K: kube::Resource + Clone + 'static>(s: &Store<K>) -> bool
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            s.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
        }
        r(&self.agents)
            && r(&self.actions)
            && r(&self.policies)
            && r(&self.service_accounts)
            && r(&self.secrets)
            && r(&self.roles)
            && r(&self.role_bindings)
            && r(&self.requests)
            && r(&self.approvals)
    }

    /// SocAction `name`, unless it is missing or malformed (a malformed one is never used).
    pub fn action(&self, name: &str) -> Option<std::sync::Arc<SocAction>> {
        self.actions.get(&ObjectRef::new(name)).filter(|a| malformed(a.as_ref()).is_none())
    }

    /// AutonomyPolicy `name`, unless it is missing or malformed.
    pub fn policy(&self, name: &str) -> Option<std::sync::Arc<AutonomyPolicy>> {
        self.policies.get(&ObjectRef::new(name)).filter(|p| malformed(p.as_ref()).is_none())
    }

    /// The name of an AutonomyPolicy whose kill switch is on, if any.
    pub fn kill_switch(&self) -> Option<String> {
        self.policies.find(|p| p.spec.kill_switch && malformed(p).is_none()).and_then(|p| p.metadata.name.clone())
    }
}

/// A token the operator issued whose Secret update may not have reached the cache yet.
#[derive(Clone, Debug)]
pub struct IssuedMemo {
    /// The Secret's resourceVersion the decision was based on; while the cache still shows it,
    /// the cache is older than our write.
    pub based_on: Option<String>,
    pub token: IssuedToken,
}

/// An agent's turn to have a request decided.
type Turn = std::sync::Arc<tokio::sync::Mutex<()>>;

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub delegable: Vec<Rule>,
    /// Namespaces the audit sink cannot see: agents there are refused (`validate::unobserved`).
    pub unobserved: std::sync::Arc<std::collections::BTreeSet<String>>,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Signs and verifies admission stamps.
    pub key: Key,
    /// The operator's namespace (its Secrets live there).
    pub namespace: String,
    pub decisions: DecisionLog,
    pub discovery: Discovery,
    /// Behaviour models of the agents.
    pub monitor: std::sync::Arc<crate::monitor::Monitor>,
    /// Agents' writes covered by their requests, on their way to the requests' status.
    pub performed: crate::performed::Performed,
    /// The DriftReports written.
    pub reports: crate::report::Reports,
    /// The shards of agents this replica holds, each until its fence says (only a shard's holder
    /// reconciles its agents; the others keep caches warm). See `shard`.
    pub shards: std::sync::Arc<crate::shard::Shards>,
    /// The other replicas: how to send it what this replica observed
    /// (set once the TLS material is loaded; unset without leader election).
    pub peers: std::sync::OnceLock<crate::peer::Peers>,
    /// The API server's own token audiences, learned from the first token issued without extra audiences.
    pub api_audiences: tokio::sync::OnceCell<Vec<String>>,
    /// Issued tokens by Secret UID (see `IssuedMemo`).
    pub issued: Mutex<HashMap<String, IssuedMemo>>,
    pub status_written: StatusMemo<SocAgentStatus>,
    pub request_status_written: StatusMemo<ActionRequestStatus>,
    /// One decision at a time per agent (see `turn`).
    turns: Mutex<HashMap<AgentKey, Turn>>,
    /// One change of an agent's grants at a time (see `holding`).
    grants: Mutex<HashMap<AgentKey, Turn>>,
}

/// What `Context::new` needs besides the client and caches.
pub struct Settings {
    /// Namespaces the audit sink cannot see (`validate::unobserved`).
    pub unobserved: std::sync::Arc<std::collections::BTreeSet<String>>,
    pub delegable: Vec<Rule>,
    pub key: Key,
    pub namespace: String,
    pub decisions: DecisionLog,
    pub monitor: std::sync::Arc<crate::monitor::Monitor>,
    pub performed: crate::performed::Performed,
    pub shards: std::sync::Arc<crate::shard::Shards>,
}

impl AsRef<Context> for Context {
    fn as_ref(&self) -> &Context {
        self
    }
}

impl Context {
    /// Whether this replica acts for agent `namespace/name` now (it holds the agent's shard).
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.shards.owns(namespace, name)
    }

    /// Whether this replica does the work that is no agent's (the catalog's status): the holder of
    /// shard 0.
    pub fn leads_cluster(&self) -> bool {
        self.shards.holds(0)
    }

    pub fn new(client: Client, stores: Stores, settings: Settings, metrics: Metrics) -> Self {
        let reporter = Reporter { controller: "soc-warden".into(), instance: std::env::var("POD_NAME").ok() };
        let for_reports = client.clone();
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            delegable: settings.delegable,
            unobserved: settings.unobserved,
            key: settings.key,
            namespace: settings.namespace,
            decisions: settings.decisions,
            discovery: Discovery::default(),
            monitor: settings.monitor,
            performed: settings.performed,
            reports: crate::report::Reports::new(for_reports.clone()),
            shards: settings.shards,
            peers: std::sync::OnceLock::new(),
            metrics,
            api_audiences: tokio::sync::OnceCell::new(),
            issued: Mutex::new(HashMap::new()),
            status_written: StatusMemo::default(),
            request_status_written: StatusMemo::default(),
            turns: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
        }
    }

    /// The turn of agent `namespace/agent` to have a request decided: held from reading its history
    /// until the decision is written, so that requests filed at once are decided one after the
    /// other, each seeing the ones before (budgets hold under a burst).
    pub async fn turn(&self, namespace: &str, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
        lock_of(&self.turns, namespace, agent).await
    }

    /// The agent's grants, held by its reconcile from reading the monitor until its RoleBindings
    /// are written, and by the fast containment path while it deletes them: a reconcile that
    /// planned before a trigger can never write a binding back after the fast path removed it.
    pub async fn holding(&self, namespace: &str, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
        lock_of(&self.grants, namespace, agent).await
    }
}

async fn lock_of(
    map: &Mutex<HashMap<AgentKey, Turn>>,
    namespace: &str,
    agent: &str,
) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut locks = map.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry((namespace.to_string(), agent.to_string())).or_default().clone()
    };
    lock.lock_owned().await
}
