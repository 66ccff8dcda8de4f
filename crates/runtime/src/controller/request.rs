//! The ActionRequest reconciler: look up (caches only) → `gate::decide` (pure) → record the
//! decision (status, Event, decision log, metrics) → execute what runs, exactly once in effect:
//! the decision and `execution: Running` are written before anything runs, and a restart repeats
//! only idempotent work (server-side apply, or an HTTP call with the same idempotency key).

use crate::context::Context;
use crate::decisionlog::{Entry, Happened};
use crate::execute;
use crate::k8s;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use socwarden_api::{
    ActionRequest, ActionRequestStatus, Approval, AutonomyPolicy, Decision, EffectObject, ExecutionState, SocAction,
    SocAgent,
};
use socwarden_core::admission::effect;
use socwarden_core::admission::gate::{self, Past};
use socwarden_core::admission::{identity, quota, signature};
use socwarden_core::agent::promotion;
use socwarden_core::behaviour::drift::{MAX_CREDENTIALS, Observation};
use socwarden_core::behaviour::records;
use socwarden_core::request;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, instrument, warn};

/// Keeps an executed reversible manifest action until its rollback has run.
pub const FINALIZER: &str = "socwarden.io/rollback";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("this replica no longer holds the leader lease: it decides and executes nothing more")]
    NotLeading,
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => k8s::category(e),
            Error::NotLeading => "not-leading",
        }
    }
}

/// What the request controller keeps between reconciles, its own.
#[derive(Default)]
pub struct Memos {
    /// Finished executions whose status write failed, by request UID (see `record_finish`).
    unwritten: std::sync::Mutex<std::collections::HashMap<String, ActionRequestStatus>>,
    /// Pending requests (by UID) whose approvers were told they expire soon.
    expiring_told: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What the request controller reconciles with: the shared services, and its memos.
pub struct Requests {
    pub shared: Arc<Context>,
    pub memos: Memos,
}

impl std::ops::Deref for Requests {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.shared
    }
}

impl AsRef<Context> for Requests {
    fn as_ref(&self) -> &Context {
        &self.shared
    }
}

/// The fence of the request's shard (its agent's), checked again right before a decision or an
/// execution leaves this replica (the reconcile may have started while it still held the shard;
/// see `leader::Fence`).
fn still_leading(ctx: &Context, req: &ActionRequest) -> Result<(), Error> {
    if owns(ctx, req) { Ok(()) } else { Err(Error::NotLeading) }
}

/// Whether this replica decides `req`: it holds the shard of the request's agent, so one replica
/// decides all of an agent's requests (its budgets count them all).
fn owns(ctx: &Context, req: &ActionRequest) -> bool {
    ctx.owns(&req.namespace().unwrap_or_default(), &req.spec.agent)
}

/// The status the request shows (see `StatusMemo`).
fn shown(req: &ActionRequest, ctx: &Context) -> ActionRequestStatus {
    ctx.request_status_written.shown_by(req, req.status.as_ref()).unwrap_or_default()
}

async fn write(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus) -> Result<(), Error> {
    still_leading(ctx, req)?;
    // Always written (a decision, then its execution), hence no `shown` to compare with.
    // Conditional on what this replica last saw or wrote: a write delayed past a takeover fails.
    let uid = req.uid().unwrap_or_default();
    let cached = ctx.stores.requests.get(&ObjectRef::from_obj(req));
    let seen = [
        req.metadata.resource_version.as_deref(),
        cached.as_ref().and_then(|c| c.metadata.resource_version.as_deref()),
    ];
    let base = ctx.request_status_written.base(&uid, &seen);
    k8s::write_status(&api(req, ctx), req, &ctx.request_status_written, None, status, base.as_deref()).await?;
    ctx.stores.request_changes.notify_waiters();
    Ok(())
}

fn api(req: &ActionRequest, ctx: &Context) -> Api<ActionRequest> {
    Api::namespaced(ctx.client.clone(), &req.namespace().unwrap_or_default())
}

#[instrument(skip_all, fields(request = %req.name_any(), namespace = req.namespace().unwrap_or_default()))]
pub async fn reconcile(req: Arc<ActionRequest>, ctx: Arc<Requests>) -> Result<Action, Error> {
    if !owns(&ctx, &req) {
        return Ok(Action::await_change());
    }
    if !ctx.stores.ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let _timer = ctx.metrics.reconcile_duration.with_label_values(&["actionrequest"]).start_timer();
    if req.meta().deletion_timestamp.is_some() {
        if req.finalizers().iter().any(|f| f == FINALIZER) {
            roll_back(&req, &ctx).await?;
            k8s::set_finalizer(&api(&req, &ctx), req.as_ref(), FINALIZER, false, k8s::Guard::None).await?;
        }
        return Ok(Action::await_change());
    }
    let status = shown(&req, &ctx);
    match status.decision {
        None | Some(Decision::Pending) => settle(&req, &ctx).await,
        Some(d) if d.runs() && status.execution.as_ref().and_then(|e| e.state) == Some(ExecutionState::Running) => {
            // Finished here, its status write failed: write it, do not run it again.
            let unwritten =
                ctx.memos.unwritten.lock().unwrap_or_else(|p| p.into_inner()).remove(&req.uid().unwrap_or_default());
            if let Some(finished) = unwritten {
                record_finish(&req, &ctx, finished).await?;
                return Ok(Action::await_change());
            }
            // Found mid-execution (a restart): confirm with a fresh read before doing it again.
            let api: Api<ActionRequest> = Api::namespaced(ctx.client.clone(), &req.namespace().unwrap_or_default());
            let fresh = api.get(&req.name_any()).await?;
            let state = fresh.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.state);
            if state == Some(ExecutionState::Running) {
                info!(
                    cached = ?req.metadata.resource_version,
                    fresh = ?fresh.metadata.resource_version,
                    started = ?fresh.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.started_at.clone()),
                    "found an execution Running (after a restart or a takeover): running it again, idempotently"
                );
                execute(&fresh, &ctx, fresh.status.clone().unwrap_or_default()).await?;
            }
            Ok(Action::await_change())
        }
        Some(d) if d.runs() => {
            let open = account(&req, &ctx, &status).await?;
            let kept = retain(&req, &ctx, &status).await?;
            // The window (minutes) always closes before the retention period (an hour at least).
            Ok(open.map(Action::requeue).unwrap_or(kept))
        }
        Some(_) => retain(&req, &ctx, &status).await,
    }
}

/// Records on a request what its agent did under it (the writes it covered, reported by the audit
/// sink) and, for an action the agent performs itself, that it was not acted on once its window
/// closed (`records::account`). Returns how long the window is still open.
async fn account(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus) -> Result<Option<Duration>, Error> {
    let name = req.name_any();
    let Some(record) = records::Record::of(&name, &req.spec, status, Vec::new(), &ctx.stores.kinds.current()) else {
        return Ok(None);
    };
    let open_until = record.open_until();
    let uid = req.uid().unwrap_or_default();
    let agent_acts =
        ctx.stores.actions.get(&ObjectRef::new(&req.spec.action)).is_some_and(|a| a.spec.execution.is_none());
    let writes = ctx.performed.pending(&uid);
    let now = Timestamp::now();
    if let Some(execution) = records::account(status.execution.as_ref(), &writes, agent_acts, open_until, now) {
        let before = status.execution.as_ref().and_then(|e| e.state);
        let mut next = status.clone();
        next.execution = Some(execution.clone());
        write(req, ctx, &next).await?;
        ctx.performed.recorded(&uid, writes.len());
        if let Some((state, what)) = execution.state.filter(|s| Some(*s) != before).and_then(|s| Some((s, acted(s)?))) {
            let mut e = entry(req, what, execution.result.clone(), &[]);
            // Approved vs done: the tokens the agent's writes under the request were made with.
            e.credentials = identity::distinct_ids(writes.iter().filter_map(|w| w.credential), MAX_CREDENTIALS);
            ctx.decisions.record(&e);
            k8s::publish(&ctx.recorder, req, vec![(EventType::Normal, state.as_str(), execution.result.clone())]);
        }
    }
    let left = open_until.duration_since(now);
    Ok((agent_acts && left.is_positive()).then(|| Duration::from_secs(left.as_secs().max(0) as u64 + 1)))
}

/// Deletes a decided request (and its approvals) once its policy's retention period has passed;
/// otherwise looks again when it will have.
async fn retain(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus) -> Result<Action, Error> {
    let ns = req.namespace().unwrap_or_default();
    let policy = ctx
        .stores
        .agents
        .get(&ObjectRef::new(&req.spec.agent).within(&ns))
        .and_then(|a| ctx.stores.policy(&a.spec.policy_ref));
    let requests = policy.as_ref().map(|p| p.spec.requests.clone()).unwrap_or_default();
    let period = quota::period(&requests);
    let in_effect = req.finalizers().iter().any(|f| f == FINALIZER);
    let now = Timestamp::now();
    match quota::retention(status, in_effect, period, now) {
        quota::Retention::Open | quota::Retention::InEffect => Ok(Action::await_change()),
        quota::Retention::Until(t) => {
            Ok(Action::requeue(Duration::from_secs(t.duration_since(now).as_secs().max(1) as u64)))
        }
        quota::Retention::Delete if !evidence_carried(req, status, ctx, policy.as_deref()) => {
            // The agent's status counts it first (its reconcile carries what is due), then it goes.
            ctx.monitor.wake(&(ns, req.spec.agent.clone()));
            Ok(Action::requeue(Duration::from_secs(5)))
        }
        quota::Retention::Delete => {
            let name = req.name_any();
            let approvals: Api<Approval> = Api::namespaced(ctx.client.clone(), &ns);
            for a in ctx.stores.approvals.state_filter(|a| {
                a.namespace().as_deref() == Some(ns.as_str()) && a.spec.action_request.as_deref() == Some(name.as_str())
            }) {
                match approvals.delete(&a.name_any(), &Default::default()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
            }
            let dp = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions { uid: req.uid(), resource_version: None }),
                ..Default::default()
            };
            match api(req, ctx).delete(&name, &dp).await {
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            info!(retention = %requests.retention, "decided request deleted after its retention period");
            Ok(Action::await_change())
        }
    }
}

/// Whether deleting a decided request loses no promotion evidence: it is not shadow evidence of
/// its agent, or the agent's status already carries it (`promotion::shadow`).
fn evidence_carried(
    req: &ActionRequest,
    status: &ActionRequestStatus,
    ctx: &Context,
    policy: Option<&AutonomyPolicy>,
) -> bool {
    let ns = req.namespace().unwrap_or_default();
    let Some(agent) = ctx.stores.agents.get(&ObjectRef::new(&req.spec.agent).within(&ns)) else {
        return true;
    };
    let a = agent.status.as_ref();
    let (Some(current), Some(policy)) = (a.and_then(|s| s.effective_tier), policy) else {
        return true;
    };
    let (Some(next), Some(since)) =
        (current.next(), a.and_then(|s| s.tier_since.as_deref()).and_then(|t| t.parse::<Timestamp>().ok()))
    else {
        return true;
    };
    let Some(d) = decided(req, status, ctx) else {
        return true;
    };
    promotion::vote(&d, current, next, &policy.spec, since).is_none()
        || promotion::carried(a.and_then(|s| s.shadow.as_ref()), &d)
}

/// A decided request as promotion evidence sees it.
pub fn decided(req: &ActionRequest, status: &ActionRequestStatus, ctx: &Context) -> Option<promotion::Decided> {
    Some(promotion::Decided {
        tier: status.tier?,
        risk: ctx.stores.actions.get(&ObjectRef::new(&req.spec.action))?.spec.risk,
        decision: status.decision?,
        decided_at: status.decided_at.as_ref()?.parse().ok()?,
    })
}

pub fn error_policy(req: Arc<ActionRequest>, err: &Error, ctx: Arc<Requests>) -> Action {
    ctx.metrics.reconcile_errors.with_label_values(&["actionrequest", err.category()]).inc();
    warn!(request = %req.name_any(), namespace = ?req.namespace(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// One pass over the cached requests: the earlier requests of the same agent and action (for the
/// budgets), and what other requests' executions applied and may still hold (their rollback
/// removes it).
fn history(ctx: &Context, req: &ActionRequest) -> (Vec<Past>, Vec<gate::Applied>) {
    let (ns, uid) = (req.namespace(), req.uid());
    let (mut past, mut applied_by_others) = (Vec::new(), Vec::new());
    for r in ctx.stores.requests.state() {
        if r.uid() == uid {
            continue;
        }
        if r.namespace() == ns && r.spec.agent == req.spec.agent && r.spec.action == req.spec.action {
            // What this replica wrote counts even before the cache shows it.
            let shown = ctx.request_status_written.shown_by(r.as_ref(), r.status.as_ref());
            if let Some(s) = shown.as_ref()
                && let (Some(at), Some(decision)) = (s.decided_at.as_ref().and_then(|t| t.parse().ok()), s.decision)
            {
                past.push(Past { decided_at: at, decision, targets: gate::targets(&r.spec, &s.effect) });
            }
        }
        if r.meta().deletion_timestamp.is_none() {
            let applied = r.status.as_ref().and_then(|s| s.execution.as_ref()).map(|e| e.applied.as_slice());
            applied_by_others.extend(
                applied.unwrap_or(&[]).iter().map(|o| gate::Applied { request: r.name_any(), object: o.to_string() }),
            );
        }
    }
    (past, applied_by_others)
}

/// What the gate decides with, looked up in the caches.
struct LookedUp {
    agent: Option<Arc<SocAgent>>,
    action: Option<Arc<SocAction>>,
    policy: Option<Arc<AutonomyPolicy>>,
    approvals: Vec<Arc<Approval>>,
    past: Vec<Past>,
    applied_by_others: Vec<gate::Applied>,
}

impl LookedUp {
    fn of(req: &ActionRequest, ctx: &Context) -> Self {
        let ns = req.namespace().unwrap_or_default();
        let agent = ctx.stores.agents.get(&ObjectRef::new(&req.spec.agent).within(&ns));
        let action = ctx.stores.action(&req.spec.action);
        let policy = agent.as_ref().and_then(|a| ctx.stores.policy(&a.spec.policy_ref));
        let name = req.name_any();
        let approvals = ctx.stores.approvals.state_filter(|a| {
            a.namespace().as_deref() == Some(ns.as_str()) && a.spec.action_request.as_deref() == Some(name.as_str())
        });
        let (past, applied_by_others) = history(ctx, req);
        Self { agent, action, policy, approvals, past, applied_by_others }
    }
}

/// Settles an undecided request: look up → `gate::decide` (pure) → record → carry out.
async fn settle(req: &ActionRequest, ctx: &Requests) -> Result<Action, Error> {
    let _turn = ctx.turn(&req.namespace().unwrap_or_default(), &req.spec.agent).await;
    // Read in the turn: a decision written while this one waited leaves nothing to settle.
    let previous = shown(req, ctx);
    if previous.decision.is_some_and(|d| d != Decision::Pending) {
        return Ok(Action::await_change());
    }
    let l = LookedUp::of(req, ctx);
    let effect = effect_of(req, ctx, l.action.as_deref()).await?;
    let now = Timestamp::now();
    let approvals: Vec<&Approval> = l.approvals.iter().map(|a| a.as_ref()).collect();
    let kinds = ctx.stores.kinds.current();
    let inputs = gate::Inputs {
        request: req,
        key: &ctx.key,
        kinds: &kinds,
        agent: l.agent.as_deref(),
        action: l.action.as_ref().map(|a| &a.spec),
        unexecutable: l
            .action
            .as_ref()
            .and_then(|a| a.status.as_ref())
            .map(|s| s.unexecutable.as_slice())
            .unwrap_or(&[]),
        effect: &effect,
        applied_by_others: &l.applied_by_others,
        previous: Some(&previous),
        policy: l.policy.as_ref().map(|p| &p.spec),
        approvals: &approvals,
        past: &l.past,
        now,
    };
    let Some(v) = gate::decide(&inputs) else {
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    for (approval, why) in &v.ignored {
        // Said once per reconcile that sees it; these are rare and worth seeing.
        warn!(approval, why, "approval ignored");
    }
    let policy = l.policy.as_ref().map(|p| format!("{}@{}", p.name_any(), p.metadata.generation.unwrap_or(0)));
    let execution = l.action.as_ref().and_then(|a| a.spec.execution.as_ref());
    let uid = req.uid().unwrap_or_default();
    let plan = request::settle(
        &v,
        request::Settling {
            status: gate::status(&v, &req.spec, policy, execution, &previous, now),
            previous: &previous,
            execution,
            reversible: l.action.as_ref().is_some_and(|a| a.spec.reversible),
            created: req.metadata.creation_timestamp.as_ref().map(|t| t.0),
            told_expiring: ctx.memos.expiring_told.lock().unwrap_or_else(|p| p.into_inner()).contains(&uid),
            now,
        },
    );
    apply(req, ctx, plan, &previous).await
}

/// Applies a plan: the status written, what happened recorded or told, the execution run.
async fn apply(
    req: &ActionRequest,
    ctx: &Requests,
    plan: request::Plan,
    previous: &ActionRequestStatus,
) -> Result<Action, Error> {
    let request::Plan { status, records, run, again } = plan;
    match status {
        Some(decided) if decided.decision != Some(Decision::Pending) => {
            carry_out(req, ctx, decided, run, &records).await?;
            return Ok(Action::await_change());
        }
        Some(ref pending) => write(req, ctx, pending).await?,
        // Pending and unchanged: at most a notice that it is about to expire.
        None => {}
    }
    for r in &records {
        report(req, ctx, r, status.as_ref().unwrap_or(previous));
    }
    Ok(again.map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// The request's effect: what `effect::plan` knows from the request and the action, plus the pods
/// its objects select right now — the namespace's pods listed with their labels, and selected in
/// core by the selector read from the object that will be applied (never a selector string the API
/// server would parse). An API error leaves the request undecided (retried): the gate never decides
/// on a partial effect.
async fn effect_of(req: &ActionRequest, ctx: &Context, action: Option<&SocAction>) -> Result<Vec<EffectObject>, Error> {
    let Some(a) = action else { return Ok(vec![]) };
    // An effect that cannot be computed is none to show; the gate (precheck) rejects the request.
    let Ok(plan) = effect::plan(&a.spec, &req.spec, &req.name_any(), &ctx.stores.kinds.current()) else {
        return Ok(vec![]);
    };
    let mut out = plan.objects;
    for sel in &plan.selectors {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &sel.namespace);
        let listed = pods.list_metadata(&ListParams::default()).await?;
        let pods: Vec<(String, std::collections::BTreeMap<String, String>)> =
            listed.items.iter().map(|p| (p.name_any(), p.labels().clone())).collect();
        out.extend(effect::selected(sel, &pods));
    }
    Ok(out)
}

/// Records a decision and runs its execution, if it has one (see `request::Run`).
async fn carry_out(
    req: &ActionRequest,
    ctx: &Requests,
    status: ActionRequestStatus,
    run: Option<request::Run>,
    decided: &[request::Record],
) -> Result<(), Error> {
    still_leading(ctx, req)?;
    if run == Some(request::Run::Manifest { finalizer: true }) {
        // In place before anything is applied, so a deletion always rolls back.
        let rv = k8s::set_finalizer(&api(req, ctx), req, FINALIZER, true, k8s::Guard::None).await?;
        ctx.request_status_written.saw(&req.uid().unwrap_or_default(), rv.as_deref());
    }
    let record = |status: &ActionRequestStatus| decided.iter().for_each(|r| report(req, ctx, r, status));
    match run {
        Some(request::Run::Manifest { .. }) => {
            let (written, outcome) = tokio::join!(write(req, ctx, &status), run_execution(req, ctx, &status));
            written?;
            record(&status);
            finish(req, ctx, status, outcome).await
        }
        Some(request::Run::Http) => {
            write(req, ctx, &status).await?;
            record(&status);
            let outcome = run_execution(req, ctx, &status).await;
            finish(req, ctx, status, outcome).await
        }
        None => {
            write(req, ctx, &status).await?;
            record(&status);
            Ok(())
        }
    }
}

/// Reports what happened: a notice only (`told_only`), or a decision — behaviour of the agent, a
/// metric, a line of the decision log and an Event.
fn report(req: &ActionRequest, ctx: &Requests, r: &request::Record, status: &ActionRequestStatus) {
    let uid = req.uid().unwrap_or_default();
    if r.told_only {
        if r.what == Happened::Expiring {
            ctx.memos.expiring_told.lock().unwrap_or_else(|p| p.into_inner()).insert(uid);
        }
        ctx.decisions.notify(&line(req, r), Some(status));
        return;
    }
    ctx.memos.expiring_told.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
    if let Some(d) = status.decision {
        observe(req, ctx, d);
        ctx.metrics.action_requests.with_label_values(&[&req.spec.action, d.as_str()]).inc();
        if matches!(d, Decision::Approved | Decision::Denied)
            && let Some(created) = req.metadata.creation_timestamp.as_ref()
        {
            let secs = Timestamp::now().duration_since(created.0).as_secs_f64();
            ctx.metrics.approval_latency.observe(secs.max(0.0));
        }
    }
    announce(req, ctx, r);
}

/// A record's decision-log line (dated `r.at` when it says).
fn line(req: &ActionRequest, r: &request::Record) -> Entry {
    let mut e = entry(req, r.what, r.message.clone(), &r.approvers);
    e.policy = r.policy.clone();
    if let Some(at) = r.at {
        e.time = at.to_string();
    }
    e
}

/// Records a decision or an execution's outcome: its decision-log line and its Event.
fn announce(req: &ActionRequest, ctx: &Context, r: &request::Record) {
    ctx.decisions.record(&line(req, r));
    let type_ = if r.what.is_warning() { EventType::Warning } else { EventType::Normal };
    k8s::publish(&ctx.recorder, req, vec![(type_, r.what.as_str(), r.message.clone())]);
}

/// Feeds the agent's behaviour model with a decided request the agent filed itself: what others
/// file on its behalf is their behaviour, not the agent's.
fn observe(req: &ActionRequest, ctx: &Context, decision: Decision) {
    let ns = req.namespace().unwrap_or_default();
    if !identity::is_agent(&req.spec.requester, &ns, &req.spec.agent) {
        return;
    }
    let o = Observation::request(Timestamp::now(), &req.spec.action, &gate::target_key(&req.spec), decision);
    let key = (ns, req.spec.agent.clone());
    ctx.monitor.observe(vec![(key, o)], std::time::Instant::now(), Timestamp::now());
}

/// What an agent's use of its request came to (`records::account`): acted on, or not.
/// None: a state `records::account` never sets.
fn acted(state: ExecutionState) -> Option<Happened> {
    match state {
        ExecutionState::ActedOn => Some(Happened::ActedOn),
        ExecutionState::NotActedOn => Some(Happened::NotActedOn),
        _ => None,
    }
}

/// The decision-log line of a request's decision or execution.
fn entry(req: &ActionRequest, what: Happened, message: String, approvers: &[String]) -> Entry {
    let ns = req.namespace().unwrap_or_default();
    let mut e = Entry::new(what, &ns, &req.spec.agent, message);
    e.request = Some(req.name_any());
    e.action = Some(req.spec.action.clone());
    e.target = Some(gate::target_key(&req.spec));
    e.approvers = approvers.to_vec();
    e.traceparent = req.annotations().get(socwarden_core::mcp::TRACEPARENT_ANNOTATION).cloned();
    e
}

type Outcome = Result<(String, Vec<socwarden_api::AppliedObject>), execute::Error>;

/// Carries out the action (no status written). Safe to repeat: see the module comment.
async fn run_execution(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus) -> Outcome {
    let approvers: Vec<String> = status.approvals.iter().map(|a| a.approver.clone()).collect();
    let action = ctx.stores.action(&req.spec.action);
    let Some((e, a)) = action.as_ref().and_then(|a| a.spec.execution.as_ref().map(|e| (e, a))) else {
        return Err(execute::Error::Invalid(format!(
            "SocAction {} no longer exists or has no execution",
            req.spec.action
        )));
    };
    let decided_on = status.action_hash.as_deref();
    request::runnable(&req.spec.action, decided_on, &signature::action_hash(&a.spec))
        .map_err(execute::Error::Invalid)?;
    if let Some(tpl) = &e.manifest {
        let applied =
            execute::apply_manifest(&ctx.client, &ctx.discovery, tpl, req, a.spec.reversible, &ctx.delegable).await?;
        let names: Vec<String> = applied.iter().map(ToString::to_string).collect();
        return Ok((format!("applied {}", names.join(", ")), applied));
    }
    if let Some(http) = &e.http {
        let key = execute::secret_value(&ctx.client, &ctx.namespace, &http.secret_ref).await?;
        let body = execute::http_body(req, &a.spec, &approvers);
        let code = execute::call(http, &key, &req.uid().unwrap_or_default(), body).await?;
        return Ok((format!("{} answered {code}", http.url), vec![]));
    }
    Err(execute::Error::Invalid("execution names neither manifest nor http".into()))
}

/// Records how an execution ended (`request::finish`): status, decision log, Event, metrics. An
/// execution stopped only by an unreachable API server (a manifest half-applied, the HTTP key
/// unread) ran nothing that cannot be repeated: the request stays `Running` and is tried again,
/// not marked Failed.
async fn finish(
    req: &ActionRequest,
    ctx: &Requests,
    status: ActionRequestStatus,
    outcome: Outcome,
) -> Result<(), Error> {
    let outcome = match outcome {
        Err(execute::Error::Kube(e)) if k8s::transient(&e) => {
            warn!(error = %e, "execution interrupted by the API server; trying again");
            return Err(e.into());
        }
        Ok((what, applied)) => request::Outcome::Done(what, applied),
        Err(e) => request::Outcome::Failed(e.to_string()),
    };
    record_finish(req, ctx, request::finish(status, outcome, Timestamp::now())).await
}

/// Writes a finished execution and announces it. A finished execution whose status write fails
/// is kept (`Memos::unwritten`) and written by the next reconcile instead of running again.
async fn record_finish(req: &ActionRequest, ctx: &Requests, status: ActionRequestStatus) -> Result<(), Error> {
    let Some(r) = request::executed(&status) else { return Ok(()) };
    if let Err(e) = write(req, ctx, &status).await {
        ctx.memos.unwritten.lock().unwrap_or_else(|p| p.into_inner()).insert(req.uid().unwrap_or_default(), status);
        return Err(e);
    }
    ctx.metrics.executions.with_label_values(&[r.what.as_str()]).inc();
    info!(decision = r.what.as_str(), result = %r.message, "execution finished");
    announce(req, ctx, &r);
    Ok(())
}

/// Resumes an execution found `Running` (after a restart).
async fn execute(req: &ActionRequest, ctx: &Requests, status: ActionRequestStatus) -> Result<(), Error> {
    still_leading(ctx, req)?;
    let outcome = run_execution(req, ctx, &status).await;
    finish(req, ctx, status, outcome).await
}

/// Deleting the request of a reversible manifest action removes what it applied.
async fn roll_back(req: &ActionRequest, ctx: &Context) -> Result<(), Error> {
    let applied = req.status.as_ref().and_then(|s| s.execution.as_ref()).map(|e| e.applied.clone()).unwrap_or_default();
    if applied.is_empty() {
        return Ok(());
    }
    match execute::rollback(&ctx.client, &ctx.discovery, &applied, &req.uid().unwrap_or_default()).await {
        Ok(left) => {
            if !left.is_empty() {
                warn!(left = ?left, "rollback left objects another request or a person owns now");
            }
            let r = request::rolled_back(&applied, &left);
            ctx.decisions.record(&entry(req, r.what, r.message, &[]));
            ctx.metrics.executions.with_label_values(&[r.what.as_str()]).inc();
            Ok(())
        }
        Err(execute::Error::Kube(e)) => Err(e.into()),
        Err(other) => {
            // Nothing sensible to retry (the kind is gone, …): say so and let the deletion proceed.
            warn!(error = %other, "rollback failed");
            Ok(())
        }
    }
}
