//! `warden run`: wires the watches, caches, controllers, the admission webhook and the HTTP
//! endpoints together.

use crate::context::{Context, Settings, Stores};
use crate::controller::agent;
use crate::controller::catalog;
use crate::controller::request;
use crate::decisionlog::DecisionLog;
use crate::index::NamespaceIndex;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::server;
use crate::signing_key;
use crate::tls;
use crate::watch;
use crate::webhook;
use crate::webhook_config::{self, Endpoint};
use anyhow::Context as _;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use hyper::StatusCode;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use socwarden_api::{ActionRequest, Approval, AutonomyPolicy, Decision, SocAction, SocAgent};
use socwarden_core::admission::signature::Key;
use socwarden_core::agent::credentials::{self, MANAGED_SELECTOR};
use socwarden_core::agent::rbac::Rule;
use socwarden_core::behaviour::audit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct WebhookOptions {
    /// Where the webhook listens (TLS).
    pub addr: SocketAddr,
    /// How the API server reaches it (registered in the webhook configurations).
    pub endpoint: Endpoint,
    /// `tls.crt`, `tls.key`, `ca.crt` to use instead of generated material.
    pub cert_dir: Option<PathBuf>,
    /// PEM of the CA of the API server's webhook client certificate: only its holders are answered.
    pub client_ca: Option<String>,
    /// How often the webhook configurations are written again, undoing a deletion or an edit.
    pub repair_interval: std::time::Duration,
    /// The user the operator authenticates as (see `webhook::Lookup::operator`).
    pub operator_user: Option<String>,
    /// Namespaces where no SocAgent is admitted (`validate::unobserved`; the reconciler's too).
    pub unobserved: Arc<std::collections::BTreeSet<String>>,
}

pub struct Options {
    pub metrics_addr: SocketAddr,
    pub delegable: Vec<Rule>,
    /// Agents reconciled at once.
    pub concurrency: u16,
    /// See `metrics::shows_agent`.
    pub per_agent_metrics: crate::metrics::PerAgent,
    /// The operator's own namespace (its Secrets).
    pub namespace: String,
    pub webhook: Option<WebhookOptions>,
    pub decision_log: Option<PathBuf>,
    /// The audit sink: where it listens and the bearer token the API server presents.
    pub audit: Option<(SocketAddr, String)>,
    /// Leader election; without it this replica leads at once (a single replica).
    pub leader: Option<crate::leader::Config>,
    /// Where the MCP gateway listens (TLS), if it is served.
    pub mcp_addr: Option<SocketAddr>,
    /// Where the peer endpoint listens and how the other replicas reach it (see `peer`).
    pub peer: Option<(SocketAddr, String)>,
    /// Namespaces the audit sink cannot see: SocAgents there are refused (`validate::unobserved`).
    pub unobserved: Arc<std::collections::BTreeSet<String>>,
}

/// Reconcile agents on spec changes and deletion, not on our own status writes.
fn spec_or_deletion(a: &SocAgent) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (a.meta().generation, a.meta().deletion_timestamp.is_some(), a.annotations().get(watch::MALFORMED_ANNOTATION))
        .hash(&mut h);
    Some(h.finish())
}

/// A cache of the objects the operator manages of one kind, and the stream of their changes
/// mapped to the agent they belong to.
fn managed<K>(
    client: &Client,
    index: Option<NamespaceIndex>,
    strip: impl Fn(&mut K) + Send + 'static,
    restarts: watch::Restarts,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api = Api::<K>::all(client.clone());
    let stream = watch::resilient(api, Some(MANAGED_SELECTOR), restarts)
        .map(move |ev| {
            if let (Ok(ev), Some(index)) = (&ev, &index) {
                index.apply(ev);
            }
            ev
        })
        .modify(move |o: &mut K| {
            o.meta_mut().managed_fields = None;
            strip(o)
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

fn to_agent<K: Resource>(o: K) -> Option<ObjectRef<SocAgent>> {
    let (ns, name) = credentials::owner_from_labels(o.meta().labels.as_ref())?;
    Some(ObjectRef::new(&name).within(&ns))
}

/// A cache whose change stream several controllers share.
fn shared<K: watch::Lenient + serde::de::DeserializeOwned>(
    client: &Client,
    metrics: &Metrics,
    restarts: &watch::Restarts,
) -> (
    Store<K>,
    reflector::store::Writer<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store_shared::<K>(1024);
    // Requests and approvals are many: the cache keeps what the decisions read, not the managed
    // fields or annotations (a `kubectl apply` copy of the whole object, notes of tools) other
    // than the lenient decoding's mark and the trace a tool call came with (for the decision log).
    let events = watch::watch::<K>(client.clone(), metrics.clone(), restarts.clone()).modify(|o: &mut K| {
        o.meta_mut().managed_fields = None;
        // Only the mark the lenient decoding leaves on a malformed object is kept.
        if let Some(a) = o.meta_mut().annotations.as_mut() {
            a.retain(|k, v| {
                k == watch::MALFORMED_ANNOTATION
                    || (k == socwarden_core::mcp::TRACEPARENT_ANNOTATION
                        && socwarden_core::mcp::traceparent(v).is_some())
            });
        }
    });
    (reader, writer, events)
}

type Changes<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Every cache, and the change streams the controllers are driven by.
struct Watches {
    stores: Stores,
    agent: AgentChanges,
    /// The request controller's: requests and their approvals.
    requests_for_gate: ReflectHandle<ActionRequest>,
    approvals_for_gate: ReflectHandle<Approval>,
    /// Requests and approvals feed two controllers each, through shared streams these drive.
    roots: BoxFuture<'static, ()>,
}

/// What the SocAgent controller is driven by.
struct AgentChanges {
    agents: Changes<SocAgent>,
    actions: Changes<SocAction>,
    policies: Changes<AutonomyPolicy>,
    service_accounts: Changes<ServiceAccount>,
    secrets: Changes<Secret>,
    roles: Changes<Role>,
    role_bindings: Changes<RoleBinding>,
    requests: ReflectHandle<ActionRequest>,
    approvals: ReflectHandle<Approval>,
}

impl Watches {
    fn start(client: &Client, metrics: &Metrics, restarts: &watch::Restarts) -> Self {
        let (agents, agents_w) = reflector::store::<SocAgent>();
        let agent_stream = watch::watch::<SocAgent>(client.clone(), metrics.clone(), restarts.clone())
            .reflect(agents_w)
            .touched_objects()
            .predicate_filter(spec_or_deletion, Default::default());
        let (actions, actions_w) = reflector::store::<SocAction>();
        let action_stream = watch::watch::<SocAction>(client.clone(), metrics.clone(), restarts.clone())
            .reflect(actions_w)
            .touched_objects()
            .predicate_filter(predicates::generation, Default::default());
        let (policies, policies_w) = reflector::store::<AutonomyPolicy>();
        let policy_stream = watch::watch::<AutonomyPolicy>(client.clone(), metrics.clone(), restarts.clone())
            .reflect(policies_w)
            .touched_objects()
            .predicate_filter(predicates::generation, Default::default());
        let (service_accounts, sa_stream) = managed::<ServiceAccount>(client, None, |_| {}, restarts.clone());
        // The operator never needs to read a token back: keep none in memory.
        let (secrets, secret_stream) = managed::<Secret>(client, None, |s| s.data = None, restarts.clone());
        let (role_namespaces, binding_namespaces) = (NamespaceIndex::default(), NamespaceIndex::default());
        let (roles, role_stream) = managed::<Role>(client, Some(role_namespaces.clone()), |_| {}, restarts.clone());
        let (role_bindings, rb_stream) =
            managed::<RoleBinding>(client, Some(binding_namespaces.clone()), |_| {}, restarts.clone());

        let (requests, requests_w, request_events) = shared::<ActionRequest>(client, metrics, restarts);
        let requests_for_gate = requests_w.subscribe().expect("shared store");
        let requests_for_agents = requests_w.subscribe().expect("shared store");
        let request_changes = std::sync::Arc::new(tokio::sync::Notify::new());
        let changed = request_changes.clone();
        let requests_root = request_events.reflect_shared(requests_w).for_each(move |_| {
            changed.notify_waiters();
            futures::future::ready(())
        });
        let (approvals, approvals_w, approval_events) = shared::<Approval>(client, metrics, restarts);
        let approvals_for_gate = approvals_w.subscribe().expect("shared store");
        let approvals_for_agents = approvals_w.subscribe().expect("shared store");
        let approvals_root = approval_events.reflect_shared(approvals_w).for_each(|_| futures::future::ready(()));
        let roots = async move {
            tokio::select! {
                _ = requests_root => tracing::info!("request watch stopped"),
                _ = approvals_root => tracing::info!("approval watch stopped"),
            }
        };
        Watches {
            stores: Stores {
                agents,
                actions,
                policies,
                service_accounts,
                secrets,
                roles,
                role_bindings,
                requests,
                approvals,
                request_changes,
                role_namespaces,
                binding_namespaces,
                kinds: Default::default(),
            },
            agent: AgentChanges {
                agents: agent_stream.boxed(),
                actions: action_stream.boxed(),
                policies: policy_stream.boxed(),
                service_accounts: sa_stream.boxed(),
                secrets: secret_stream.boxed(),
                roles: role_stream.boxed(),
                role_bindings: rb_stream.boxed(),
                requests: requests_for_agents,
                approvals: approvals_for_agents,
            },
            requests_for_gate,
            approvals_for_gate,
            roots: roots.boxed(),
        }
    }
}

/// Fires when this replica takes the lead: then everything is reconciled once (a standby
/// answered every change with "later").
fn on_lead(tx: &broadcast::Sender<()>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(tx.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(()) => return Some(((), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
}

/// The SocAgent controller: driven by the agents, the objects it owns, the catalog and policies
/// they use, their approvals, the requests that are shadow evidence, and the behaviour monitor.
fn agent_controller(
    w: AgentChanges,
    agents: Store<SocAgent>,
    ctx: Arc<Context>,
    lead: &broadcast::Sender<()>,
    wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<SocAgent>>,
    concurrency: u16,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (by_action, by_policy, by_request) = (agents.clone(), agents.clone(), agents.clone());
    Controller::for_stream(w.agents, agents)
        .with_config(controller::Config::default().concurrency(concurrency))
        .trigger_backoff(watch::NoDelay)
        .watches_stream(w.service_accounts, to_agent)
        .watches_stream(w.secrets, to_agent)
        .watches_stream(w.roles, to_agent)
        .watches_stream(w.role_bindings, to_agent)
        .watches_stream(w.actions, move |action: SocAction| {
            let name = action.name_any();
            by_action
                .state()
                .into_iter()
                .filter(|a| a.spec.actions.contains(&name))
                .map(|a| ObjectRef::from_obj(a.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(w.policies, move |_: AutonomyPolicy| {
            // The kill switch of any policy concerns every agent.
            by_policy.state().iter().map(|a| ObjectRef::from_obj(a.as_ref())).collect::<Vec<_>>()
        })
        // Promotion and resume approvals concern their agent.
        .watches_shared_stream(w.approvals, |a: Arc<Approval>| {
            let ns = a.namespace()?;
            let agent = a.spec.promotion.as_ref().map(|p| &p.agent).or(a.spec.resume.as_ref().map(|r| &r.agent))?;
            Some(ObjectRef::new(agent).within(&ns))
        })
        // Human decisions are shadow evidence (counted in the agent's status); any decision
        // matters to an agent whose promotion is waiting.
        .watches_shared_stream(w.requests, move |r: Arc<ActionRequest>| {
            let key = ObjectRef::<SocAgent>::new(&r.spec.agent).within(&r.namespace()?);
            let agent = by_request.get(&key)?;
            let waiting = agent.status.as_ref().and_then(|s| s.effective_tier).is_some_and(|t| agent.spec.tier > t);
            let human = r
                .status
                .as_ref()
                .and_then(|s| s.decision)
                .is_some_and(|d| matches!(d, Decision::Approved | Decision::Denied));
            (waiting || human).then_some(key)
        })
        // The behaviour monitor wakes agents that must be contained (or whose assessment changed).
        .reconcile_on(futures::stream::unfold(wake, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }))
        .reconcile_all_on(on_lead(lead))
        .shutdown_on_signal()
        .run(unpanicking("socagent", agent::reconcile), agent::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// The ActionRequest controller (the gate), driven by the requests and their approvals.
fn request_controller(
    requests: ReflectHandle<ActionRequest>,
    approvals: ReflectHandle<Approval>,
    store: Store<ActionRequest>,
    ctx: Arc<Context>,
    lead: &broadcast::Sender<()>,
    wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<ActionRequest>>,
    concurrency: u16,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(requests, store)
        .with_config(controller::Config::default().concurrency(concurrency))
        .trigger_backoff(watch::NoDelay)
        .watches_shared_stream(approvals, |a: Arc<Approval>| {
            Some(ObjectRef::<ActionRequest>::new(a.spec.action_request.as_ref()?).within(&a.namespace()?))
        })
        // The audit sink wakes requests whose agent wrote under them (see `records`).
        .reconcile_on(futures::stream::unfold(wake, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }))
        .reconcile_all_on(on_lead(lead))
        .shutdown_on_signal()
        .run(
            unpanicking("actionrequest", request::reconcile),
            request::error_policy,
            Arc::new(request::Requests { shared: ctx, memos: Default::default() }),
        )
        .for_each(|_| futures::future::ready(()))
}

/// Status of the catalog, the policies and the notifiers: small, so they get watches of their own.
async fn catalog_controllers(client: Client, ctx: Arc<Context>, lead: broadcast::Sender<()>) {
    let actions = status_controller(&client, &lead, "socaction", catalog::reconcile_action, ctx.clone());
    let policies = status_controller(&client, &lead, "autonomypolicy", catalog::reconcile_policy, ctx.clone());
    let notifiers = status_controller(&client, &lead, "notifier", catalog::reconcile_notifier, ctx);
    tokio::select! {
        _ = actions => tracing::info!("action controller stopped"),
        _ = policies => tracing::info!("policy controller stopped"),
        _ = notifiers => tracing::info!("notifier controller stopped"),
    }
}

/// One catalog kind's status controller. Its watch is kube's own, retried by the controller's
/// trigger backoff: the operator's.
fn status_controller<K, Fut>(
    client: &Client,
    lead: &broadcast::Sender<()>,
    kind: &'static str,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, crate::controller::agent::Error>>
        + Send
        + 'static,
{
    Controller::new(Api::<K>::all(client.clone()), watch::config())
        .trigger_backoff(watch::backoff())
        .reconcile_all_on(on_lead(lead))
        .shutdown_on_signal()
        .run(unpanicking(kind, reconcile), catalog::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

/// Without leader election this replica holds its one shard at once; with it, it keeps its
/// membership Lease and, for each shard, stands by for the shard's Lease, holds it until it loses
/// it or hands it over, then stands by again (see `shard`). It does not exit: a lease lost to an
/// unreachable API server (etcd gone for 15 s) would otherwise crash-loop every replica at once,
/// while the fences already keep a replica that lost a shard from acting for it (see `leader`).
async fn leadership(
    client: Client,
    ctx: Arc<Context>,
    monitor: Arc<Monitor>,
    cfg: Option<crate::leader::Config>,
    lead: broadcast::Sender<()>,
) {
    let Some(cfg) = cfg else {
        let _ = lead.send(());
        return futures::future::pending::<()>().await;
    };
    let shards = (0..ctx.shards.count()).map(|k| shard(&client, &ctx, &monitor, &cfg, k, &lead));
    futures::future::join(membership(&client, &ctx, &cfg), futures::future::join_all(shards)).await;
}

/// Renews this replica's membership Lease and reads the others' every third of a lease.
async fn membership(client: &Client, ctx: &Context, cfg: &crate::leader::Config) {
    loop {
        if let Err(e) = crate::shard::renew_member(client, cfg).await {
            tracing::warn!(error = %e, "could not renew this replica's membership lease");
        }
        match crate::shard::members(client, cfg).await {
            Ok(m) => ctx.shards.set_members(m),
            Err(e) => tracing::warn!(error = %e, "could not read the membership leases"),
        }
        tokio::time::sleep(cfg.duration / 3).await;
    }
}

/// Holds shard `k` whenever this replica should (see `shard`), again and again.
async fn shard(
    client: &Client,
    ctx: &Context,
    monitor: &Monitor,
    cfg: &crate::leader::Config,
    k: usize,
    lead: &broadcast::Sender<()>,
) {
    let count = ctx.shards.count();
    let name = crate::shard::lease_name(k, count);
    let fence = ctx.shards.fence(k).clone();
    let grace = if count > 1 { crate::shard::orphan_grace(cfg.duration) } else { std::time::Duration::ZERO };
    let warned = std::sync::atomic::AtomicBool::new(false);
    let wants = |spec: Option<&k8s_openapi::api::coordination::v1::LeaseSpec>, now: jiff::Timestamp| {
        if let Some(m) = ctx.shards.disagreeing(now) {
            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(member = %m.identity, theirs = ?m.count, ours = count, "another replica runs with another shard count: taking no shard until it is gone");
            }
            return false;
        }
        warned.store(false, std::sync::atomic::Ordering::Relaxed);
        count == 1
            || ctx.shards.prefers(k, &cfg.identity, now)
            || crate::leader::free_since(spec, now)
                .is_some_and(|t| t.checked_add(grace).is_ok_and(|after| now >= after))
    };
    // With one shard nobody hands it over: whoever holds it keeps it.
    let stay = || count == 1 || ctx.shards.prefers(k, &cfg.identity, jiff::Timestamp::now());
    loop {
        tracing::info!(identity = %cfg.identity, shard = k, lease = %name, "standing by for the leader lease");
        crate::leader::acquire(client, cfg, &name, &fence, &wants, grace, |url| ctx.shards.set_holder(k, url)).await;
        tracing::info!(identity = %cfg.identity, shard = k, "leading: holding the shard, acting for its agents");
        let _ = lead.send(());
        let kept = crate::leader::keep(client, cfg, &name, &fence, stay).await;
        let lost = |key: &crate::monitor::AgentKey| ctx.shards.of(&key.0, &key.1) == k;
        monitor.unseed(lost);
        // The expiries of the tokens this replica issued for the shard: its next holder reports
        // them now (the shards still held report theirs again at the reconciles asked below).
        ctx.metrics.credential_expiry.reset();
        // What this replica remembers writing may be rewritten by the next holder meanwhile.
        ctx.reports.forget_all();
        let _ = lead.send(());
        match kept {
            crate::leader::Kept::HandedOver => {
                tracing::info!(identity = %cfg.identity, shard = k, "handing the shard over to its preferred replica");
                // Writes already under way land before the next holder may begin (the margin a
                // takeover after expiry keeps, see `leader::Fence`).
                tokio::time::sleep(cfg.duration / 3).await;
                if let Err(e) = crate::leader::release(client, cfg, &name, false).await {
                    tracing::warn!(error = %e, shard = k, "could not free the shard's lease: it runs out instead");
                }
            }
            crate::leader::Kept::Lost => {
                ctx.metrics.leadership_lost.inc();
                tracing::error!(identity = %cfg.identity, shard = k, "lost the leader lease: no longer acting for the shard's agents; standing by to hold it again");
            }
        }
    }
}

/// Asks the API server's `/readyz` every second (3 s to answer): while it does not answer ready —
/// it is down, or its etcd is — the operator's own `/readyz` says so, and
/// `socwarden_api_reachable` is 0. The operator keeps running and serving meanwhile; when the API
/// server is ready again after 5 s or more every watch starts over (see `watch::restartable`).
async fn api_reachability(
    client: Client,
    metrics: Metrics,
    ready: Arc<std::sync::atomic::AtomicBool>,
    restart_watches: tokio::sync::watch::Sender<u64>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        every.tick().await;
        let req = hyper::Request::get("/readyz").body(Vec::new()).expect("a valid request");
        let answer = tokio::time::timeout(std::time::Duration::from_secs(3), client.request_text(req)).await;
        let ok = matches!(answer, Ok(Ok(_)));
        if ok != ready.swap(ok, std::sync::atomic::Ordering::Relaxed) {
            match &answer {
                Ok(Ok(_)) => tracing::info!("the API server is ready again"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the API server is not ready"),
                Err(_) => tracing::warn!("the API server did not answer its readiness check within 3 s"),
            }
        }
        match (ok, down_since) {
            (false, None) => down_since = Some(std::time::Instant::now()),
            // Back after an outage (a restart, etcd gone): start the watches over. Not after a
            // slow answer under load — relisting everything then would only add to the load.
            (true, Some(since)) if since.elapsed() >= WATCH_RESTART_AFTER => {
                tracing::info!(down_secs = since.elapsed().as_secs(), "every watch starts over from a fresh list");
                restart_watches.send_modify(|n| *n += 1);
                down_since = None;
            }
            (true, Some(_)) => down_since = None,
            _ => {}
        }
        metrics.api_reachable.set(i64::from(ok));
    }
}

/// How long the API server must have been unready for its return to restart the watches.
const WATCH_RESTART_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Contains each agent the monitor triggers on at once, each in a task of its own.
async fn containment(ctx: Arc<Context>, mut triggered: tokio::sync::mpsc::UnboundedReceiver<crate::monitor::AgentKey>) {
    while let Some(key) = triggered.recv().await {
        tokio::spawn(agent::contain_now(ctx.clone(), key));
    }
}

/// The behaviour monitor's clock: judges every agent's window once a second. A panic in one
/// judgement is logged and the clock goes on (the monitor's lock survives it, see `monitor`).
async fn tick(monitor: Arc<Monitor>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.tick(jiff::Timestamp::now())))
        {
            tracing::error!(panic = %panic_message(&*p), "the behaviour monitor's judgement panicked; it goes on");
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// A reconcile that cannot take the operator down: a panic in one object's reconcile is logged,
/// counted (`reconcile_errors_total{category="panic"}`) and retried in 30 s, while every other
/// object goes on being served.
fn unpanicking<K, C, E, Fut>(
    kind: &'static str,
    reconcile: fn(Arc<K>, Arc<C>) -> Fut,
) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<kube::runtime::controller::Action, E>>
where
    K: Resource + 'static,
    C: AsRef<Context>,
    E: Send + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>> + Send + 'static,
{
    move |obj, ctx| {
        let metrics = AsRef::<Context>::as_ref(&*ctx).metrics.clone();
        let (name, namespace) = (obj.name_any(), obj.namespace());
        std::panic::AssertUnwindSafe(reconcile(obj, ctx))
            .catch_unwind()
            .map(move |r| {
                r.unwrap_or_else(|p| {
                    tracing::error!(kind, %name, ?namespace, panic = %panic_message(&*p), "reconcile panicked; retrying in 30 s");
                    metrics.reconcile_errors.with_label_values(&[kind, "panic"]).inc();
                    Ok(kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30)))
                })
            })
            .boxed()
    }
}

pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let mut metrics = Metrics::new();
    metrics.per_agent = opts.per_agent_metrics;
    Api::<Namespace>::all(client.clone()).get(&opts.namespace).await.with_context(|| {
        format!("the operator's namespace {:?} must exist (set --namespace or POD_NAMESPACE)", opts.namespace)
    })?;
    let signing = signing_key::signing_key(&client, &opts.namespace).await.context("loading the signing key")?;
    let key = Key::new(&signing);

    let (restart_watches, restarts) = tokio::sync::watch::channel(0u64);
    let w = Watches::start(&client, &metrics, &restarts);
    let stores = w.stores.clone();
    // Targets are resolved against what the API server serves; until it answers, the built-in kinds.
    match tokio::time::timeout(std::time::Duration::from_secs(10), stores.kinds.refresh(&client)).await {
        Ok(Ok(n)) => tracing::info!(resources = n, "discovery: the kinds the API server serves"),
        Ok(Err(e)) => tracing::warn!(error = %e, "discovery failed; built-in kinds until it answers"),
        Err(_) => tracing::warn!("discovery timed out; built-in kinds until it answers"),
    }
    let kinds = stores.kinds.clone().keep_fresh(client.clone());
    let shards = Arc::new(match &opts.leader {
        Some(l) => crate::shard::Shards::new(l.shards),
        None => crate::shard::Shards::single(),
    });
    let (monitor, wakes) = Monitor::new(metrics.clone(), shards.clone());
    let (performed, request_wake) = crate::performed::Performed::new();
    let monitor = Arc::new(monitor);
    let (notices, notices_rx) = crate::notify::channel();
    let dropped = metrics.notifications.with_label_values(&["(queue)", "dropped"]);
    let settings = Settings {
        unobserved: opts.unobserved.clone(),
        delegable: opts.delegable,
        key: key.clone(),
        namespace: opts.namespace.clone(),
        decisions: DecisionLog::open(opts.decision_log.as_deref())
            .context("opening the decision log")?
            .with_notices(notices, dropped),
        monitor: monitor.clone(),
        performed,
        shards,
    };
    let ctx = Arc::new(Context::new(client.clone(), stores.clone(), settings, metrics.clone()));
    let (lead, _) = broadcast::channel::<()>(4);

    let request_controller = request_controller(
        w.requests_for_gate,
        w.approvals_for_gate,
        stores.requests.clone(),
        ctx.clone(),
        &lead,
        request_wake,
        opts.concurrency,
    );
    let agent_controller =
        agent_controller(w.agent, stores.agents.clone(), ctx.clone(), &lead, wakes.reconcile, opts.concurrency);
    let containment = containment(ctx.clone(), wakes.contain);
    let roots = w.roots;
    let (notifiers, notifier_watch) = crate::notify::notifiers(client.clone(), metrics.clone(), restarts.clone());
    let notifications = futures::future::join(notifier_watch, crate::notify::run(notices_rx, ctx.clone(), notifiers));
    let catalog_controllers = catalog_controllers(client.clone(), ctx.clone(), lead.clone());

    let listener = server::bind(opts.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let webhook_ready = Arc::new(std::sync::atomic::AtomicBool::new(opts.webhook.is_none()));
    let api_ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readiness =
        server::Readiness { stores: stores.clone(), webhook: webhook_ready.clone(), api: api_ready.clone() };
    let reachability = api_reachability(client.clone(), metrics.clone(), api_ready, restart_watches);
    let http = server::serve(listener, metrics.clone(), readiness);
    let material = tls_material(&client, opts.webhook.as_ref(), &opts.namespace).await?;
    let lease = opts.leader.as_ref().map(|l| l.duration);
    let peer_endpoint = peer_endpoint(opts.peer.clone(), lease, opts.webhook.as_ref(), &signing, &material, &ctx)?;
    let audit_sink = audit_sink(opts.audit, material.clone(), ctx.clone());
    let gateway = gateway(opts.mcp_addr, material.clone(), ctx.clone());
    let admission = admission(client.clone(), opts.webhook, material, stores, key, metrics, webhook_ready);
    let leaving = opts.leader.clone().map(|cfg| (client.clone(), cfg, ctx.shards.clone()));
    let leadership = leadership(client, ctx, monitor.clone(), opts.leader, lead);

    tokio::select! {
        _ = leadership => {}
        _ = agent_controller => tracing::info!("agent controller stopped"),
        _ = request_controller => tracing::info!("request controller stopped"),
        _ = catalog_controllers => {}
        _ = roots => {}
        _ = notifications => {}
        _ = tick(monitor) => {}
        _ = containment => {}
        _ = reachability => {}
        _ = kinds => {}
        r = http => r?,
        r = admission => r?,
        r = audit_sink => r?,
        r = gateway => r?,
        r = peer_endpoint => r?,
    }
    // Stopping (SIGTERM: the controllers finished what they were doing): the shards go to the
    // other replicas now rather than when their Leases run out.
    if let Some((client, cfg, shards)) = leaving {
        let left = tokio::time::timeout(std::time::Duration::from_secs(3), crate::shard::leave(&client, &cfg, &shards));
        if left.await.is_err() {
            tracing::warn!("could not free the shards' leases in 3 s: they run out instead");
        }
    }
    Ok(())
}

/// With leader election and `--peer-addr`: the peers (`ctx.peers`) and the endpoint serving them.
fn peer_endpoint(
    peer: Option<(SocketAddr, String)>,
    lease: Option<std::time::Duration>,
    webhook: Option<&WebhookOptions>,
    signing: &[u8],
    material: &tls::Material,
    ctx: &Arc<Context>,
) -> anyhow::Result<BoxFuture<'static, anyhow::Result<()>>> {
    let (Some((addr, url)), Some(lease)) = (peer, lease) else {
        return Ok(futures::future::pending().boxed());
    };
    // Every replica serves the same certificate: its Service's name when there is one, else localhost.
    let server_name = match webhook.map(|w| &w.endpoint) {
        Some(Endpoint::Service { namespace, name, .. }) => format!("{name}.{namespace}.svc"),
        _ => "localhost".to_string(),
    };
    let patience = lease + std::time::Duration::from_secs(2);
    let peers = crate::peer::Peers::new(Some(url), signing, &material.ca_pem, server_name, patience)
        .map_err(|e| anyhow::anyhow!("the peer endpoint's TLS: {e}"))?;
    let _ = ctx.peers.set(peers);
    Ok(crate::intake::serve_peers(addr, material.clone(), ctx.clone()).boxed())
}

/// The TLS material of the webhook and the audit sink: from files, or generated and shared.
async fn tls_material(
    client: &Client,
    webhook: Option<&WebhookOptions>,
    namespace: &str,
) -> anyhow::Result<tls::Material> {
    if let Some(dir) = webhook.and_then(|w| w.cert_dir.as_ref()) {
        return Ok(tls::from_dir(dir)?);
    }
    let mut dns = vec!["localhost".to_string()];
    if let Some(Endpoint::Service { namespace, name, .. }) = webhook.map(|w| &w.endpoint) {
        dns.push(format!("{name}.{namespace}.svc"));
        dns.push(format!("{name}.{namespace}.svc.cluster.local"));
    }
    let ips = ["127.0.0.1".parse()?, "::1".parse()?];
    Ok(tls::webhook_material(client, namespace, &dns, &ips).await?)
}

/// Serves `POST /audit` (the API server's audit webhook) over TLS, for callers that present the
/// bearer token; feeds the behaviour monitor.
async fn audit_sink(
    opts: Option<(SocketAddr, String)>,
    material: tls::Material,
    ctx: Arc<Context>,
) -> anyhow::Result<()> {
    let Some((addr, token)) = opts else {
        tracing::info!("no audit sink configured (--audit-addr): drift is judged from ActionRequests only");
        return futures::future::pending().await;
    };
    let listener = server::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the audit sink");
    let intake = crate::intake::Intake::new(ctx);
    let handler = server::Handler::Stream(Arc::new(move |path, body| {
        let intake = intake.clone();
        async move {
            if path != "/audit" {
                return (StatusCode::NOT_FOUND, b"{}".to_vec());
            }
            intake.batch(body).await
        }
        .boxed()
    }));
    let caller = server::Caller::Token(token.into());
    // Batches of any size are read; each large one holds this much of the body budget.
    let limits = server::Limits::new(audit::BATCH_MEMORY);
    Ok(server::serve_tls(listener, tls::server_config(&material, None)?, caller, limits, handler).await?)
}

/// Serves the MCP gateway (`mcp`) when configured.
async fn gateway(addr: Option<SocketAddr>, material: tls::Material, ctx: Arc<Context>) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return futures::future::pending().await;
    };
    crate::mcp::serve(addr, tls::server_config(&material, None)?, ctx).await
}

/// Serves the admission webhook and registers it once the caches are complete (before that the
/// webhook would refuse requests for agents it has not seen yet).
async fn admission(
    client: Client,
    opts: Option<WebhookOptions>,
    material: tls::Material,
    stores: Stores,
    key: Key,
    metrics: Metrics,
    registered: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let Some(opts) = opts else {
        tracing::warn!(
            "no admission webhook configured (--webhook-url or --webhook-service): ActionRequests and Approvals are not stamped and will all be rejected"
        );
        return futures::future::pending().await;
    };
    let config = tls::server_config(&material, opts.client_ca.as_deref())?;
    let caller = match &opts.client_ca {
        Some(_) => server::Caller::Certificate,
        None => {
            tracing::warn!(
                "no --webhook-client-ca: the admission webhook answers anyone who reaches its port; admit only the API server to it (NetworkPolicy), see docs/getting-started/existing-cluster.md"
            );
            server::Caller::Anyone
        }
    };
    let listener = server::bind(opts.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the admission webhook");
    let lookup = Arc::new(webhook::Admissions::new(stores.clone(), opts.operator_user.clone()));
    let unobserved = opts.unobserved.clone();
    let sar_client = client.clone();
    let handler = server::Handler::Whole(Arc::new(move |path, body| {
        let (lookup, key, metrics, client) = (lookup.clone(), key.clone(), metrics.clone(), sar_client.clone());
        let unobserved = unobserved.clone();
        async move {
            let started = std::time::Instant::now();
            // Read once; a SocAgent or DriftReport gets the checks that need no call (its owners,
            // an agent's namespace), then a SocAgent change asks the API server whether this user
            // may change those fields (SubjectAccessReview); everything else is the stamp and its
            // checks.
            let review = match webhook::decode(&body) {
                Err(why) => kube::core::admission::AdmissionResponse::invalid(why).into_review(),
                Ok(req) => match (webhook::lifetime(&path, &req, &unobserved), webhook::agent_change(&path, &req)) {
                    (Some(Err(why)), _) => webhook::agent_verdict(&req, Err(why)),
                    (_, Some(change)) => webhook::agent_verdict(&req, authorize(&client, &change).await),
                    (Some(Ok(())), None) => webhook::agent_verdict(&req, Ok(())),
                    (None, None) if !lookup.stores.ready() => {
                        kube::core::admission::AdmissionResponse::invalid("SOC Warden is starting; retry in a moment")
                            .into_review()
                    }
                    (None, None) => {
                        webhook::review_request(&path, &req, lookup.as_ref(), &key, &crate::signing_key::nonce())
                    }
                },
            };
            let allowed = review.response.as_ref().is_some_and(|r| r.allowed);
            metrics
                .webhook_duration
                .with_label_values(&[path.as_str(), if allowed { "true" } else { "false" }])
                .observe(started.elapsed().as_secs_f64());
            (StatusCode::OK, serde_json::to_vec(&review).unwrap_or_default())
        }
        .boxed()
    }));
    // One review per connection (see `Limits::keep_alive`): a rolling update never fails a review.
    let limits = server::Limits { keep_alive: false, ..server::Limits::new(webhook::MAX_REVIEW) };
    let serve = server::serve_tls(listener, config, caller, limits, handler);
    let register = async {
        while !stores.ready() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        webhook_config::register(&client, &opts.endpoint, &material.ca_pem, opts.operator_user.as_deref()).await?;
        registered.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(endpoint = ?opts.endpoint, "admission webhook registered");
        // Deleting or loosening the configuration would let unstamped objects in (they are then
        // ignored, see `gate`); writing it again bounds how long that lasts.
        loop {
            tokio::time::sleep(opts.repair_interval).await;
            if let Err(e) =
                webhook_config::register(&client, &opts.endpoint, &material.ca_pem, opts.operator_user.as_deref()).await
            {
                tracing::warn!(error = %e, "could not re-register the admission webhook");
            }
        }
    };
    tokio::select! {
        r = serve => Ok(r?),
        r = register => r,
    }
}

/// Whether the user behind `change` holds every virtual verb it needs on that SocAgent, asked of
/// the API server (SubjectAccessReview). Fails closed: an unanswered review refuses the change.
async fn authorize(client: &Client, change: &webhook::AgentChange) -> Result<(), String> {
    use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    let user = change.user.username.clone().unwrap_or_default();
    for verb in &change.verbs {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: change.user.username.clone(),
                uid: change.user.uid.clone(),
                groups: change.user.groups.clone(),
                extra: change.user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(socwarden_api::GROUP.into()),
                    resource: Some("socagents".into()),
                    verb: Some(verb.to_string()),
                    namespace: Some(change.namespace.clone()),
                    name: Some(change.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(client.clone())
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                format!("could not check whether {user} may change SocAgent {}/{}: {e}", change.namespace, change.name)
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            return Err(socwarden_core::agent::authority::refusal(&user, verb, &change.namespace, &change.name));
        }
    }
    Ok(())
}
