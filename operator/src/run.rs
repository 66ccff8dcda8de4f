//! `warden run`: wires the watches, caches and controllers together.

use crate::api::{AutonomyPolicy, SocAction, SocAgent};
use crate::context::{Context, Stores};
use crate::credentials::{self, MANAGED_SELECTOR};
use crate::index::NamespaceIndex;
use crate::metrics::Metrics;
use crate::rbac::Rule;
use crate::{agent, catalog, server, watch};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Options {
    pub metrics_addr: SocketAddr,
    pub delegable: Vec<Rule>,
    /// Agents reconciled at once.
    pub concurrency: u16,
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
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
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

pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let metrics = Metrics::new();

    let (agents, agents_w) = reflector::store::<SocAgent>();
    let agent_stream = watch::watch::<SocAgent>(client.clone(), watcher::Config::default(), metrics.clone())
        .default_backoff()
        .reflect(agents_w)
        .touched_objects()
        .predicate_filter(spec_or_deletion, Default::default());
    let (actions, actions_w) = reflector::store::<SocAction>();
    let action_stream = watch::watch::<SocAction>(client.clone(), watcher::Config::default(), metrics.clone())
        .default_backoff()
        .reflect(actions_w)
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default());
    let (policies, policies_w) = reflector::store::<AutonomyPolicy>();
    let policy_stream = watch::watch::<AutonomyPolicy>(client.clone(), watcher::Config::default(), metrics.clone())
        .default_backoff()
        .reflect(policies_w)
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default());
    let (service_accounts, sa_stream) = managed::<ServiceAccount>(&client, None, |_| {});
    // The operator never needs to read a token back: keep none in memory.
    let (secrets, secret_stream) = managed::<Secret>(&client, None, |s| s.data = None);
    let (role_namespaces, binding_namespaces) = (NamespaceIndex::default(), NamespaceIndex::default());
    let (roles, role_stream) = managed::<Role>(&client, Some(role_namespaces.clone()), |_| {});
    let (role_bindings, rb_stream) = managed::<RoleBinding>(&client, Some(binding_namespaces.clone()), |_| {});

    let stores = Stores {
        agents: agents.clone(),
        actions,
        policies,
        service_accounts,
        secrets,
        roles,
        role_bindings,
        role_namespaces,
        binding_namespaces,
    };
    let ctx = Arc::new(Context::new(client.clone(), stores.clone(), opts.delegable, metrics.clone()));

    let by_action = agents.clone();
    let by_policy = agents.clone();
    let agent_controller = Controller::for_stream(agent_stream, agents.clone())
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .watches_stream(sa_stream, to_agent)
        .watches_stream(secret_stream, to_agent)
        .watches_stream(role_stream, to_agent)
        .watches_stream(rb_stream, to_agent)
        .watches_stream(action_stream, move |action: SocAction| {
            let name = action.name_any();
            by_action
                .state()
                .into_iter()
                .filter(|a| a.spec.actions.contains(&name))
                .map(|a| ObjectRef::from_obj(a.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(policy_stream, move |_: AutonomyPolicy| {
            // The kill switch of any policy concerns every agent.
            by_policy.state().iter().map(|a| ObjectRef::from_obj(a.as_ref())).collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(agent::reconcile, agent::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    // Status of the catalog and the policies: small, so they get watches of their own.
    let action_controller = Controller::new(Api::<SocAction>::all(client.clone()), watcher::Config::default())
        .shutdown_on_signal()
        .run(catalog::reconcile_action, catalog::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let policy_controller = Controller::new(Api::<AutonomyPolicy>::all(client.clone()), watcher::Config::default())
        .shutdown_on_signal()
        .run(catalog::reconcile_policy, catalog::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    let listener = server::bind(opts.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let http = server::serve(listener, metrics, stores);

    tokio::select! {
        _ = agent_controller => tracing::info!("agent controller stopped"),
        _ = action_controller => tracing::info!("action controller stopped"),
        _ = policy_controller => tracing::info!("policy controller stopped"),
        r = http => r?,
    }
    Ok(())
}
