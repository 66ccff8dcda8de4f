//! The SocAgent reconciler: dereference (caches, one workload read) → plan (pure) → apply →
//! status. Every write is skipped when the cache already shows the wanted state.

use crate::context::{Context, IssuedMemo, MANAGER};
use crate::controller::request;

use crate::k8s;
use crate::watch::malformed;
use crate::workload;
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use socwarden_api::conditions;
use socwarden_api::{AutonomyPolicy, Phase, SocAgent, SocAgentStatus, Tier};
use socwarden_core::admission::quota;
use socwarden_core::agent::credentials::{self, CredentialId, IssueReason, IssuedToken, TokenDecision};
use socwarden_core::agent::pause::{self, PauseReason};
use socwarden_core::agent::plan::{self, Applied, Plan, TokenPlan};
use socwarden_core::agent::promotion;
use socwarden_core::agent::rbac::{self, Rule};
use socwarden_core::agent::transitions::{self, Changes, Reason};
use socwarden_core::agent::validate::Inputs;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, instrument, warn};

pub const FINALIZER: &str = "socwarden.io/cleanup";
/// How often an agent is looked at even when nothing happens.
const RESYNC: Duration = Duration::from_secs(600);
/// Parallel writes within one agent (its namespaces).
const FAN_OUT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the TokenRequest for {0} returned no token or no expiry")]
    TokenResponse(String),
    #[error("{kind} {namespace}/{name} exists but is not managed by SOC Warden; delete or rename it")]
    NotOurs { kind: &'static str, namespace: String, name: String },
    #[error("object has no namespace or name")]
    Unnamed,
}

impl Error {
    /// A small fixed label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => k8s::category(e),
            Error::TokenResponse(_) => "token",
            Error::NotOurs { .. } => "not-ours",
            Error::Unnamed => "invalid",
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

#[instrument(skip_all, fields(agent = %agent.name_any(), namespace = agent.namespace().unwrap_or_default()))]
pub async fn reconcile(agent: Arc<SocAgent>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.owns(&agent.namespace().unwrap_or_default(), &agent.name_any()) {
        // Another replica holds the agent's shard: every object is reconciled again whenever this
        // replica takes a shard.
        return Ok(Action::await_change());
    }
    if !ctx.stores.ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["socagent"]).start_timer();
    let ns = agent.namespace().ok_or(Error::Unnamed)?;
    let api: Api<SocAgent> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = agent.finalizers().iter().any(|f| f == FINALIZER);
    if agent.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            cleanup(&agent, &ctx).await?;
            k8s::set_finalizer(&api, agent.as_ref(), FINALIZER, false, k8s::Guard::ResourceVersion).await?;
        }
        return Ok(Action::await_change());
    }
    apply(&agent, &ctx, &api).await
}

/// Objects in the agent's own namespace are owned by it and garbage-collected with it; a
/// finalizer is needed once the agent reaches into other namespaces, or has a DriftReport (owned
/// by nothing: deleted with the agent unless it keeps a drift pause, see `report::release`).
fn needs_finalizer(agent: &SocAgent, ctx: &Context, n: &Names) -> bool {
    agent.spec.scope.namespaces.iter().any(|ns| *ns != n.ns)
        || managed_namespaces(ctx, n).iter().any(|ns| *ns != n.ns)
        || ctx.reports.exists(&(n.ns.clone(), n.name.clone()))
}

pub fn error_policy(agent: Arc<SocAgent>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.with_label_values(&["socagent", err.category()]).inc();
    warn!(agent = %agent.name_any(), namespace = ?agent.namespace(), error = %err, "reconcile failed");
    // Conflicts resolve themselves as soon as the cache catches up; an API server that could not
    // be reached (restarting) is tried again soon, so containment resumes within a second or two
    // of it answering; what it refused is not repeated at once.
    let wait = match err {
        Error::Kube(e) if k8s::is_status(e, 409) => Duration::from_millis(200),
        Error::Kube(e) if k8s::transient(e) => Duration::from_secs(1),
        _ => Duration::from_secs(5),
    };
    Action::requeue(wait)
}

struct Names {
    ns: String,
    name: String,
    sa: String,
    secret: String,
    rbac: String,
}

impl Names {
    fn of(agent: &SocAgent) -> Result<Self> {
        let ns = agent.namespace().ok_or(Error::Unnamed)?;
        let name = agent.name_any();
        Ok(Self {
            sa: credentials::service_account_name(&name),
            secret: credentials::secret_name(&name),
            rbac: credentials::rbac_name(&ns, &name),
            ns,
            name,
        })
    }
}

/// The agent as the controlling owner of an object in its namespace.
pub fn owner_ref(agent: &SocAgent) -> OwnerReference {
    OwnerReference {
        api_version: SocAgent::api_version(&()).to_string(),
        kind: SocAgent::kind(&()).to_string(),
        name: agent.name_any(),
        uid: agent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Owner references reach only objects in the agent's own namespace; the rest is found by label.
fn meta(agent: &SocAgent, n: &Names, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(credentials::labels(&n.ns, &n.name)),
        owner_references: (namespace == n.ns).then(|| vec![owner_ref(agent)]),
        ..Default::default()
    }
}

fn ours<K: Resource>(obj: &K, n: &Names) -> bool {
    let Some(labels) = obj.meta().labels.as_ref() else { return false };
    labels.get(credentials::AGENT_LABEL) == Some(&n.name)
        && labels.get(credentials::AGENT_NAMESPACE_LABEL) == Some(&n.ns)
}

/// dereference → decide (pure, `plan`) → apply → report.
async fn apply(agent: &SocAgent, ctx: &Context, api: &Api<SocAgent>) -> Result<Action> {
    let now = Timestamp::now();
    let n = Names::of(agent)?;
    let spec = &agent.spec;

    // Dereference.
    let actions = plan::wanted_actions(&spec.actions, |name| ctx.stores.action(name).map(|a| a.spec.clone()));
    let policy = ctx.stores.policy(&spec.policy_ref);
    let kill_switch = ctx.stores.kill_switch();
    let observed_workload = match &spec.workload_ref {
        Some(w) => Some(workload::fetch(ctx.client.clone(), &n.ns, w).await?),
        None => None,
    };
    let shown = shown_status(agent, ctx);
    let key = (n.ns.clone(), n.name.clone());

    // Decide.
    let inputs = Inputs {
        name: &n.name,
        namespace: &n.ns,
        spec,
        actions: &actions,
        policy: policy.as_ref().map(|p| &p.spec),
        delegable: &ctx.delegable,
        workload_exists: observed_workload.as_ref().map(Option::is_some),
        malformed: malformed(agent),
        unobserved: &ctx.unobserved,
    };
    let tier = tier_decision(agent, shown.as_ref(), ctx, policy.as_deref(), now);
    let kept = ctx.reports.kept(agent, &key, ctx.monitor.knows(&key)).await?;
    // The pause on record: the status's, or the drift pause the DriftReport kept for an agent of
    // this name deleted and created again (its status starts empty).
    let recorded = pause::recorded(
        shown.as_ref().and_then(|s| s.pause.as_ref()),
        shown.as_ref().and_then(|s| s.last_drift_pause.as_deref()),
        kept.pause.as_ref(),
    )
    .cloned();
    let on_record = with_pause(shown.as_ref(), recorded.as_ref());
    let held = ctx.holding(&n.ns, &n.name).await;
    let (watch, view) = monitoring(agent, on_record.as_ref(), ctx, &key, kept.baseline.as_ref(), now);
    let trigger = view.trigger.clone();
    let plan = plan::plan(&inputs, kill_switch.as_deref(), &tier, &watch);

    // Apply.
    let was_paused = shown.as_ref().and_then(|s| s.phase) == Some(Phase::Paused);
    let (applied, issued) = apply_plan(agent, ctx, api, &n, &plan, trigger.as_ref(), was_paused, held, now).await?;
    if let (Some(w), Some(Some(observed))) = (&spec.workload_ref, &observed_workload) {
        // Pausing: its pods stop within the agent's short grace period, not the pods' own. They
        // are deleted before the scale-down (a pod the ReplicaSet deletes first keeps its own
        // grace period) and again after it (replacements made in between).
        let pausing = plan.pause.is_some() && workload::patch(observed, true).is_some();
        let stop = || workload::stop_pods(ctx.client.clone(), &n.ns, observed, pause::grace_seconds(w));
        if pausing {
            stop().await?;
        }
        workload::converge(ctx.client.clone(), &n.ns, w, observed, plan.pause.is_some()).await?;
        if pausing {
            stop().await?;
        }
    }

    // Report.
    let previous = Previous { shown: shown.as_ref(), on_record: on_record.as_ref() };
    report(agent, ctx, api, &n, &plan, &applied, issued, previous, &view, now).await?;
    Ok(Action::requeue(next_look(&plan, &applied, now)))
}

/// Contains, or grants and issues. Independent writes go out together: a reconcile costs the
/// round trips of its longest chain (token Secret → TokenRequest → Secret update), not the sum of
/// its writes.
#[allow(clippy::too_many_arguments)]
async fn apply_plan(
    agent: &SocAgent,
    ctx: &Context,
    api: &Api<SocAgent>,
    n: &Names,
    plan: &Plan,
    triggered: Option<&crate::monitor::Trigger>,
    was_paused: bool,
    held: tokio::sync::OwnedMutexGuard<()>,
    now: Timestamp,
) -> Result<(Applied, Option<IssueReason>)> {
    let finalizer = async {
        if !agent.finalizers().iter().any(|f| f == FINALIZER) && needs_finalizer(agent, ctx, n) {
            k8s::set_finalizer(api, agent, FINALIZER, true, k8s::Guard::ResourceVersion).await?;
        }
        Ok(())
    };
    let roles = match (&plan.pause, &plan.roles) {
        (Some(_), _) => {
            tokio::try_join!(finalizer, contain(ctx, n, plan, triggered, was_paused))?;
            return Ok((Applied::default(), None));
        }
        // Nothing wanted: for an agent the audit sink cannot see, what it may hold is revoked
        // (a long name has no valid object names, hence nothing to revoke).
        (None, None) => {
            let unseen =
                plan.problems.iter().any(|p| p.reason == socwarden_api::conditions::reason::UNOBSERVED_NAMESPACE);
            if unseen {
                tokio::try_join!(finalizer, revoke(ctx, n, BTreeSet::new()))?;
            }
            return Ok((Applied::default(), None));
        }
        (None, Some(roles)) => roles,
    };
    let token = async {
        match &plan.token {
            // The token needs the ServiceAccount (granted alongside) and its Secret.
            Some(want) => Ok(Some((token_secret(agent, ctx, n).await?, want))),
            None => revoke_secret(ctx, n).await.map(|_| None),
        }
    };
    let ((), (), secret) = tokio::try_join!(finalizer, grant(agent, ctx, n, roles), token)?;
    // The bindings are written: the fast containment path may go (a token issued after it
    // deleted the Secret is bound to a Secret that is gone).
    drop(held);
    let Some((secret, want)) = secret else {
        return Ok((Applied::default(), None));
    };
    let (token, issued) = ensure_token(ctx, n, &secret, want, now).await?;
    Ok((Applied { token }, issued))
}

/// The status shown, and the same with the pause on record (see `pause::recorded`).
#[derive(Clone, Copy)]
struct Previous<'a> {
    shown: Option<&'a SocAgentStatus>,
    on_record: Option<&'a SocAgentStatus>,
}

/// The status shown with the pause on record in place of its own (the same status when they agree).
fn with_pause(shown: Option<&SocAgentStatus>, recorded: Option<&socwarden_api::PauseStatus>) -> Option<SocAgentStatus> {
    if shown.and_then(|s| s.pause.as_ref()) == recorded {
        return shown.cloned();
    }
    Some(SocAgentStatus { pause: recorded.cloned(), ..shown.cloned().unwrap_or_default() })
}

/// The status (written only when it changed), its transitions, the metrics and the monitor's
/// bookkeeping.
#[allow(clippy::too_many_arguments)]
async fn report(
    agent: &SocAgent,
    ctx: &Context,
    api: &Api<SocAgent>,
    n: &Names,
    plan: &Plan,
    applied: &Applied,
    issued: Option<IssueReason>,
    previous: Previous<'_>,
    view: &crate::monitor::View,
    now: Timestamp,
) -> Result<()> {
    match &applied.token {
        Some(t) => ctx.metrics.credential_expiry.with_label_values(&[&n.ns, &n.name]).set(t.expires_at.as_second()),
        None => {
            let _ = ctx.metrics.credential_expiry.remove_label_values(&[&n.ns, &n.name]);
        }
    }
    let status = plan::status(&n.name, agent.meta().generation, plan, applied, previous.on_record, now);
    let key = (n.ns.clone(), n.name.clone());
    // The DriftReport keeps the drift pause before the status shows it (and lets it go before the
    // status shows the resume): deleting the SocAgent never deletes the pause with it.
    let keep = pause::kept(status.pause.as_ref());
    if keep.is_some() {
        hold_for_report(agent, ctx, api, n).await?;
    }
    ctx.reports.keep(&key, keep.as_ref()).await?;
    let reported = ctx.reports.shown(&key);
    let changes = Changes {
        pause: plan.pause,
        resumed_by: plan.monitoring.resumed_by.clone(),
        issued,
        drift_before: reported.as_ref().and_then(|r| r.drift.clone()),
        drift_after: view.drift.clone(),
    };
    publish_transitions(agent, ctx, previous.shown, &status, &changes);
    k8s::write_status(api, agent, &ctx.status_written, previous.shown, &status, None).await?;
    // Only once there is something to report: a new agent has no report (two writes each, at
    // convergence, for "learning, nothing observed yet").
    let learning = |d: &socwarden_api::DriftStatus| d.state == socwarden_api::drift::State::Learning;
    if view.baseline.is_some() || view.drift.as_ref().is_some_and(|d| !learning(d)) {
        let report = socwarden_core::behaviour::report::status(
            reported.map(|r| r.previous()).as_ref(),
            view.drift.clone(),
            view.baseline.clone(),
            view.bounds.clone(),
            now,
        );
        hold_for_report(agent, ctx, api, n).await?;
        ctx.reports.write(&key, &report).await?;
    }
    if plan.pause == Some(PauseReason::Drift) {
        ctx.monitor.contained(&key);
    } else if plan.monitoring.resumed_by.is_some() {
        ctx.monitor.resumed(&key);
    }
    ctx.monitor.reported(&key);
    Ok(())
}

/// The agent holds the finalizer before its DriftReport exists (its deletion decides the
/// report's). When `needs_finalizer` holds, `apply_plan` has set it in this reconcile already.
async fn hold_for_report(agent: &SocAgent, ctx: &Context, api: &Api<SocAgent>, n: &Names) -> Result<()> {
    if !agent.finalizers().iter().any(|f| f == FINALIZER) && !needs_finalizer(agent, ctx, n) {
        k8s::set_finalizer(api, agent, FINALIZER, true, k8s::Guard::ResourceVersion).await?;
    }
    Ok(())
}

/// When to look at the agent again even if nothing changes: at its token's rotation time, soon
/// while its workload is missing (workloads are not watched: that would cache every Deployment of
/// the cluster), and at the resync period otherwise.
fn next_look(plan: &Plan, applied: &Applied, now: Timestamp) -> Duration {
    let mut next = RESYNC;
    if let Some(t) = &applied.token {
        let due = t.rotate_at().as_second() - now.as_second();
        next = next.min(Duration::from_secs(due.max(1) as u64));
    }
    if plan.problems.iter().any(|p| p.reason == conditions::reason::WORKLOAD_NOT_FOUND) {
        next = next.min(Duration::from_secs(15));
    }
    next
}

/// The tier to enforce (see `promotion`), with the shadow evidence for the next tier while a
/// promotion is asked for.
fn tier_decision(
    agent: &SocAgent,
    status: Option<&SocAgentStatus>,
    ctx: &Context,
    policy: Option<&AutonomyPolicy>,
    now: Timestamp,
) -> plan::TierDecision {
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    // A new agent is enforced at its declared tier (`promotion::evaluate`): its shadow starts now,
    // in its first status, rather than in a second write of it.
    let current = Some(status.and_then(|s| s.effective_tier).unwrap_or(agent.spec.tier));
    let since = status.and_then(|s| s.tier_since.as_ref()).and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(now);
    let shadow = match (current, current.and_then(Tier::next), policy) {
        // Kept for every agent below the top tier, not only while a promotion waits: the
        // counters carry what retention deletes (see `promotion::shadow`).
        (Some(cur), Some(next), Some(p)) => {
            let history: Vec<promotion::Decided> = ctx
                .stores
                .requests
                .state_filter(|r| r.namespace().as_deref() == Some(ns.as_str()) && r.spec.agent == name)
                .iter()
                .filter_map(|r| request::decided(r, r.status.as_ref()?, ctx))
                .collect();
            let period = quota::period(&p.spec.requests);
            let due = |d: &promotion::Decided| now >= quota::due_at(d.decision, d.decided_at, period);
            Some(promotion::shadow(&history, cur, next, &p.spec, since, status.and_then(|s| s.shadow.as_ref()), due))
        }
        _ => None,
    };
    let approvals = ctx.stores.approvals.state_filter(|a| {
        a.namespace().as_deref() == Some(ns.as_str()) && a.spec.promotion.as_ref().is_some_and(|p| p.agent == name)
    });
    let refs: Vec<&socwarden_api::Approval> = approvals.iter().map(|a| a.as_ref()).collect();
    let rules = policy.map(|p| p.spec.promotion.clone()).unwrap_or_default();
    let outcome = promotion::evaluate(&promotion::Inputs {
        agent,
        status,
        key: &ctx.key,
        rules: &rules,
        approvals: &refs,
        shadow: &shadow.clone().unwrap_or_default(),
        now,
    });
    plan::TierDecision { outcome, shadow }
}

/// Service account, then per namespace a Role and its RoleBinding, then removal of what is no
/// longer wanted. Roles go before their bindings so a binding never points at a missing Role.
async fn grant(agent: &SocAgent, ctx: &Context, n: &Names, roles: &BTreeMap<String, Vec<Rule>>) -> Result<()> {
    let service_account = async {
        let cached = ctx.stores.service_accounts.get(&ObjectRef::new(&n.sa).within(&n.ns));
        let ok = cached.as_ref().is_some_and(|sa| {
            ours(sa.as_ref(), n)
                && sa.automount_service_account_token == Some(false)
                && sa.owner_references().len() == 1
        });
        if ok {
            return Ok(());
        }
        let sa = ServiceAccount {
            metadata: meta(agent, n, &n.sa, &n.ns),
            automount_service_account_token: Some(false),
            ..Default::default()
        };
        create_or_apply(&Api::namespaced(ctx.client.clone(), &n.ns), &n.sa, &sa, cached.is_some()).await
    };
    let writes: Vec<_> = roles.iter().map(|(ns, rules)| ensure_namespace(agent, ctx, n, ns, rules)).collect();
    tokio::try_join!(service_account, all(writes))?;

    // Namespaces that left the scope lose the binding first, so the grant ends at once.
    let wanted: BTreeSet<&str> = roles.keys().map(String::as_str).collect();
    let stale: Vec<_> = managed_namespaces(ctx, n)
        .into_iter()
        .filter(|ns| !wanted.contains(ns.as_str()))
        .map(|ns| remove_rbac(ctx, n, ns))
        .collect();
    all(stale).await
}

/// Runs the futures, at most `FAN_OUT` at a time, stopping at the first error.
async fn all<F: Future<Output = Result<()>>>(futures: Vec<F>) -> Result<()> {
    stream::iter(futures).buffer_unordered(FAN_OUT).try_collect::<Vec<()>>().await.map(|_| ())
}

async fn remove_rbac(ctx: &Context, n: &Names, ns: String) -> Result<()> {
    k8s::delete_gone(&Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns), &n.rbac).await?;
    k8s::delete_gone(&Api::<Role>::namespaced(ctx.client.clone(), &ns), &n.rbac).await.map_err(Into::into)
}

async fn remove_binding(ctx: &Context, n: &Names, ns: String) -> Result<()> {
    k8s::delete_gone(&Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns), &n.rbac).await.map_err(Into::into)
}

/// Writes `obj`: a create when the cache has no such object (the cheapest write for the API
/// server), a server-side apply when it differs; a create that finds the object (the cache was
/// behind) falls back to the apply.
async fn create_or_apply<K>(api: &Api<K>, name: &str, obj: &K, cached: bool) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !cached {
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return Ok(()),
            Err(e) if k8s::is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// Every namespace where the caches show a Role or RoleBinding of this agent.
fn managed_namespaces(ctx: &Context, n: &Names) -> BTreeSet<String> {
    let mut all = ctx.stores.role_namespaces.namespaces(&n.ns, &n.name);
    all.extend(ctx.stores.binding_namespaces.namespaces(&n.ns, &n.name));
    all
}

fn binding(agent: &SocAgent, n: &Names, ns: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(agent, n, &n.rbac, ns),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: n.rbac.clone() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: n.sa.clone(),
            namespace: Some(n.ns.clone()),
            api_group: None,
        }]),
    }
}

async fn ensure_namespace(agent: &SocAgent, ctx: &Context, n: &Names, ns: &str, rules: &[Rule]) -> Result<()> {
    let cached = ctx.stores.roles.get(&ObjectRef::new(&n.rbac).within(ns));
    let role_ok = cached
        .as_ref()
        .is_some_and(|r| ours(r.as_ref(), n) && rbac::same_rules(r.rules.as_deref().unwrap_or_default(), rules));
    if !role_ok {
        let role = Role {
            metadata: meta(agent, n, &n.rbac, ns),
            rules: Some(rules.iter().map(Rule::to_policy_rule).collect()),
        };
        create_or_apply(&Api::namespaced(ctx.client.clone(), ns), &n.rbac, &role, cached.is_some()).await?;
    }
    let want = binding(agent, n, ns);
    let cached = ctx.stores.role_bindings.get(&ObjectRef::new(&n.rbac).within(ns));
    let rb_ok = cached
        .as_ref()
        .is_some_and(|rb| ours(rb.as_ref(), n) && rb.role_ref == want.role_ref && rb.subjects == want.subjects);
    if !rb_ok {
        create_or_apply(&Api::namespaced(ctx.client.clone(), ns), &n.rbac, &want, cached.is_some()).await?;
    }
    Ok(())
}

/// The token Secret, created empty if missing (a token can only be bound to an existing Secret).
async fn token_secret(agent: &SocAgent, ctx: &Context, n: &Names) -> Result<Arc<Secret>> {
    let key = ObjectRef::<Secret>::new(&n.secret).within(&n.ns);
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &n.ns);
    let secret = match ctx.stores.secrets.get(&key) {
        Some(s) => s,
        None => {
            let empty = Secret {
                metadata: meta(agent, n, &n.secret, &n.ns),
                type_: Some(credentials::SECRET_TYPE.into()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &empty).await {
                Ok(s) => Arc::new(s),
                // The cache was behind: it exists already.
                Err(e) if k8s::is_status(&e, 409) => Arc::new(api.get(&n.secret).await?),
                Err(e) => return Err(e.into()),
            }
        }
    };
    if !ours(secret.as_ref(), n) {
        return Err(Error::NotOurs { kind: "Secret", namespace: n.ns.clone(), name: n.secret.clone() });
    }
    Ok(secret)
}

/// The token the Secret holds: from its annotations, unless the cache still shows the version our
/// last write replaced, in which case from what we wrote.
fn held_token(ctx: &Context, secret: &Secret) -> Option<IssuedToken> {
    let uid = secret.metadata.uid.as_deref()?;
    let memo = ctx.issued.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned();
    match memo {
        Some(m) if m.based_on == secret.metadata.resource_version => Some(m.token),
        _ => IssuedToken::from_annotations(secret.metadata.annotations.as_ref()),
    }
}

/// Makes the Secret hold a valid token of the wanted lifetime and audiences. Returns the token
/// held and, when one was issued, why.
async fn ensure_token(
    ctx: &Context,
    n: &Names,
    secret: &Secret,
    want: &TokenPlan,
    now: Timestamp,
) -> Result<(Option<IssuedToken>, Option<IssueReason>)> {
    let held = held_token(ctx, secret);
    let why = match credentials::token_decision(held.as_ref(), &want.spec, now) {
        TokenDecision::Keep { .. } => return Ok((held, None)),
        TokenDecision::Issue(why) => why,
    };
    let token = issue(ctx, n, secret, want, now).await.inspect_err(|e| {
        ctx.metrics.token_failures.with_label_values(&[e.category()]).inc();
    })?;
    ctx.metrics.tokens_issued.with_label_values(&[why.as_str()]).inc();
    info!(reason = why.as_str(), expires_at = %token.expires_at, "issued token");
    Ok((Some(token), Some(why)))
}

async fn issue(ctx: &Context, n: &Names, secret: &Secret, want: &TokenPlan, now: Timestamp) -> Result<IssuedToken> {
    let uid = secret.metadata.uid.clone().unwrap_or_default();
    let sa_api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &n.ns);
    let request = |audiences: Vec<String>| TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(want.ttl.as_secs() as i64),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some(n.secret.clone()),
                uid: Some(uid.clone()),
            }),
        },
        status: None,
    };
    let audiences = if want.audiences.is_empty() {
        Vec::new()
    } else {
        let api_auds = ctx
            .api_audiences
            .get_or_try_init(|| async {
                let t = sa_api.create_token_request(&n.sa, &PostParams::default(), &request(Vec::new())).await?;
                let token = t.status.map(|s| s.token).unwrap_or_default();
                Ok::<_, Error>(credentials::jwt_audiences(&token).unwrap_or_default())
            })
            .await?;
        credentials::request_audiences(api_auds, &want.audiences)
    };
    let resp = sa_api.create_token_request(&n.sa, &PostParams::default(), &request(audiences)).await?;
    let status = resp.status.ok_or_else(|| Error::TokenResponse(n.sa.clone()))?;
    let (token, expires) = (status.token, status.expiration_timestamp);
    if token.is_empty() {
        return Err(Error::TokenResponse(n.sa.clone()));
    }
    // Its id, so that the calls the audit sink sees made with it trace back to this issue.
    let id = CredentialId::of_token(&token);
    let issued = IssuedToken { issued_at: now, expires_at: expires.0, spec: want.spec.clone(), id };
    // A merge patch of just the token and its annotations: the Secret already carries our labels
    // and owner, and a merge patch is far cheaper for the API server than a server-side apply.
    // `authorization` holds the whole header, for MCP clients that read a header from a Secret key
    // (kagent's RemoteMCPServer `headersFrom`, examples/mcp/).
    let header = format!("Bearer {token}");
    let data = BTreeMap::from([
        (credentials::TOKEN_KEY.to_string(), ByteString(token.into_bytes())),
        (credentials::AUTHORIZATION_KEY.to_string(), ByteString(header.into_bytes())),
    ]);
    let patch = json!({"metadata": {"annotations": issued.annotations()}, "data": data});
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &n.ns);
    api.patch(&n.secret, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    ctx.issued
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uid, IssuedMemo { based_on: secret.metadata.resource_version.clone(), token: issued.clone() });
    Ok(issued)
}

async fn revoke_secret(ctx: &Context, n: &Names) -> Result<()> {
    let key = ObjectRef::<Secret>::new(&n.secret).within(&n.ns);
    if let Some(s) = ctx.stores.secrets.get(&key)
        && let Some(uid) = s.metadata.uid.as_deref()
    {
        ctx.issued.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
    k8s::delete_gone(&Api::<Secret>::namespaced(ctx.client.clone(), &n.ns), &n.secret).await.map_err(Into::into)
}

/// Every RoleBinding (authorization is checked on every request, so the agent's next call is
/// refused) and the bound Secret (its tokens die, though the API server may honour a recently used
/// one from its cache for some seconds — which is why the bindings matter most).
async fn revoke(ctx: &Context, n: &Names, mut namespaces: BTreeSet<String>) -> Result<()> {
    namespaces.extend(managed_namespaces(ctx, n));
    namespaces.insert(n.ns.clone());
    // All at once: containment latency is the slowest single delete, not their sum. The Secret no
    // longer waits for the bindings: that wait added a round trip (about half the latency while
    // the API server is saturated by issuance) and protected nothing — the bindings go no later,
    // and a binding delete that fails no longer leaves the token alive too.
    let bindings: Vec<_> = namespaces.into_iter().map(|ns| remove_binding(ctx, n, ns)).collect();
    let (bound, secret) = futures::future::join(futures::future::try_join_all(bindings), revoke_secret(ctx, n)).await;
    bound?;
    secret
}

fn contained(ctx: &Context, reason: PauseReason, started: Instant, unrecorded: bool) {
    let took = started.elapsed();
    ctx.metrics.containment_seconds.observe(took.as_secs_f64());
    info!(
        reason = reason.as_str(),
        unrecorded,
        latency_ms = took.as_secs_f64() * 1000.0,
        "contained: RoleBindings and token Secret deleted"
    );
}

fn unrecorded(t: &crate::monitor::Trigger) -> bool {
    t.assessment.signals.iter().any(|s| s.signal == socwarden_api::drift::SignalKind::Unrecorded)
}

/// Containment within a reconcile: revoke (see `revoke`), then the workload. A trigger the fast
/// path revoked already was measured there.
async fn contain(
    ctx: &Context,
    n: &Names,
    plan: &Plan,
    triggered: Option<&crate::monitor::Trigger>,
    was_paused: bool,
) -> Result<()> {
    // From the evidence that triggered it (drift), or from this reconcile (manual, kill switch).
    let started = triggered.map(|t| t.received).unwrap_or_else(Instant::now);
    revoke(ctx, n, plan.roles.iter().flat_map(|r| r.keys().cloned()).collect()).await?;
    // Still under the agent's lock: the fast path, next in line for it, has nothing left to do.
    ctx.monitor.revoked(&(n.ns.clone(), n.name.clone()));
    if let Some(r) = plan.pause.filter(|_| !was_paused || triggered.is_some()) {
        ctx.metrics.pauses.with_label_values(&[r.as_str()]).inc();
        if !triggered.is_some_and(|t| t.revoked) {
            contained(ctx, r, started, triggered.is_some_and(unrecorded));
        }
    }
    Ok(())
}

/// The fast path of containment: as soon as the monitor sets a trigger, the agent's RoleBindings
/// and token Secret go, ahead of every reconcile queued before it (with a thousand agents sending
/// audit traffic the queue holds hundreds). The reconcile woken with it records the pause, scales
/// the workload and publishes the Events.
pub async fn contain_now(ctx: Arc<Context>, key: crate::monitor::AgentKey) {
    let _held = ctx.holding(&key.0, &key.1).await;
    if !ctx.owns(&key.0, &key.1) || !ctx.monitor.triggered(&key) {
        return;
    }
    let Some(agent) = ctx.stores.agents.get(&ObjectRef::new(&key.1).within(&key.0)) else { return };
    let Ok(n) = Names::of(&agent) else { return };
    match revoke(&ctx, &n, agent.spec.scope.namespaces.iter().cloned().collect()).await {
        Ok(()) => {
            if let Some(t) = ctx.monitor.revoked(&key) {
                let _agent = tracing::info_span!("contain", agent = %key.1, namespace = %key.0).entered();
                contained(&ctx, PauseReason::Drift, t.received, unrecorded(&t));
            }
        }
        // The reconcile woken with it contains it (the trigger stays).
        Err(e) => {
            warn!(agent = %key.1, namespace = %key.0, error = %e, "fast containment failed; the reconcile retries")
        }
    }
}

/// What behaviour monitoring says: the model is kept in line with the spec (and seeded from the
/// status after a restart), a recorded drift pause holds until an approver resumes it.
fn monitoring(
    agent: &SocAgent,
    shown: Option<&SocAgentStatus>,
    ctx: &Context,
    key: &crate::monitor::AgentKey,
    kept: Option<&socwarden_api::BaselineStatus>,
    now: Timestamp,
) -> (plan::Monitoring, crate::monitor::View) {
    let was_paused = shown.and_then(|s| s.phase) == Some(Phase::Paused);
    ctx.monitor.configure(key, &agent.spec.baseline, was_paused, kept);
    let view = ctx.monitor.view(key);
    let recorded = shown.and_then(|s| s.pause.as_ref());
    let resumed_by = recorded.filter(|p| p.reason == conditions::reason::DRIFT).and_then(|p| {
        let approvals = ctx.stores.approvals.state_filter(|a| {
            a.namespace().as_deref() == Some(key.0.as_str()) && a.spec.resume.as_ref().is_some_and(|r| r.agent == key.1)
        });
        let refs: Vec<&socwarden_api::Approval> = approvals.iter().map(|a| a.as_ref()).collect();
        pause::resume_approver(agent, p, &refs, &ctx.key, now)
    });
    let drift_paused = pause::drift_holds(recorded, view.trigger.is_some(), resumed_by.is_some());
    let watch = plan::Monitoring { drift_paused, resumed_by, drift: view.drift.clone() };
    (watch, view)
}

/// Removes everything the agent had, in every namespace; the finalizer is released afterwards.
async fn cleanup(agent: &SocAgent, ctx: &Context) -> Result<()> {
    let n = Names::of(agent)?;
    let mut namespaces = managed_namespaces(ctx, &n);
    namespaces.extend(agent.spec.scope.namespaces.iter().cloned());
    namespaces.insert(n.ns.clone());
    all(namespaces.into_iter().map(|ns| remove_rbac(ctx, &n, ns)).collect()).await?;
    revoke_secret(ctx, &n).await?;
    k8s::delete_gone(&Api::<ServiceAccount>::namespaced(ctx.client.clone(), &n.ns), &n.sa).await?;
    if ctx.reports.release(&(n.ns.clone(), n.name.clone())).await? {
        info!("kept the DriftReport: it records a drift pause, which holds for this agent if it is created again");
    }
    let _ = ctx.metrics.credential_expiry.remove_label_values(&[&n.ns, &n.name]);
    ctx.monitor.forget(&(n.ns.clone(), n.name.clone()));
    ctx.reports.forget(&(n.ns.clone(), n.name.clone()));
    ctx.status_written.forget(&agent.uid().unwrap_or_default());
    info!("removed every object of the agent");
    Ok(())
}

/// The status the agent shows (see `StatusMemo`).
fn shown_status(agent: &SocAgent, ctx: &Context) -> Option<SocAgentStatus> {
    ctx.status_written.shown_by(agent, agent.status.as_ref())
}

/// One Event (and decision-log line, and metric) per transition, never per reconcile; which ones
/// is `transitions` (pure). Events are published off the reconcile's path.
fn publish_transitions(
    agent: &SocAgent,
    ctx: &Context,
    before: Option<&SocAgentStatus>,
    after: &SocAgentStatus,
    changes: &Changes,
) {
    let ns = agent.namespace().unwrap_or_default();
    let mut events = Vec::new();
    for t in transitions::transitions(&ns, &agent.name_any(), before, after, changes) {
        match t.reason {
            Reason::DriftReported => ctx.metrics.drift_detections.with_label_values(&["report"]).inc(),
            Reason::Promoted => ctx.metrics.promotions.with_label_values(&["up"]).inc(),
            Reason::Demoted => ctx.metrics.promotions.with_label_values(&["down"]).inc(),
            _ => {}
        }
        if let Some(e) = &t.log {
            ctx.decisions.record(e);
        } else if let Some(e) = transitions::notice(&ns, &agent.name_any(), &t) {
            ctx.decisions.notify(&e, None);
        }
        let type_ = if t.reason.is_warning() { EventType::Warning } else { EventType::Normal };
        events.push((type_, t.reason.as_str(), t.note));
    }
    k8s::publish(&ctx.recorder, agent, events);
}
