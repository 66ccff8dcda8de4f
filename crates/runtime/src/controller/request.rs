//! The ActionRequest reconciler: look up (caches only) → `gate::decide` (pure) → record the
//! decision (status, Event, decision log, metrics) → execute what runs, exactly once in effect:
//! the decision and `execution: Running` are written before anything runs, and a restart repeats
//! only idempotent work (server-side apply, or an HTTP call with the same idempotency key).

use crate::context::Context;
use crate::decisionlog::{self, Entry};
use crate::execute;
use crate::k8s;
use crate::watch::malformed;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use socwarden_api::{
    ActionRequest, ActionRequestStatus, Approval, Decision, ExecutionState, ExecutionStatus, SocAgent,
};
use socwarden_core::admission::gate::{self, Past};
use socwarden_core::admission::signature;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, instrument, warn};

/// Keeps an executed reversible manifest action until its rollback has run.
pub const FINALIZER: &str = "socwarden.io/rollback";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => k8s::category(e),
        }
    }
}

fn now_str() -> String {
    Timestamp::now().to_string()
}

/// The status the request shows (see `StatusMemo`).
fn shown(req: &ActionRequest, ctx: &Context) -> ActionRequestStatus {
    ctx.request_status_written.shown_by(req, req.status.as_ref()).unwrap_or_default()
}

async fn write(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus) -> Result<(), Error> {
    // Always written (a decision, then its execution), hence no `shown` to compare with.
    k8s::write_status(&api(req, ctx), req, &ctx.request_status_written, None, status).await?;
    Ok(())
}

fn api(req: &ActionRequest, ctx: &Context) -> Api<ActionRequest> {
    Api::namespaced(ctx.client.clone(), &req.namespace().unwrap_or_default())
}

#[instrument(skip_all, fields(request = %req.name_any(), namespace = req.namespace().unwrap_or_default()))]
pub async fn reconcile(req: Arc<ActionRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leading() {
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
        None | Some(Decision::Pending) => decide(&req, &ctx, status).await,
        Some(d) if d.runs() && status.execution.as_ref().and_then(|e| e.state) == Some(ExecutionState::Running) => {
            // Found mid-execution (a restart): confirm with a fresh read before doing it again.
            let api: Api<ActionRequest> = Api::namespaced(ctx.client.clone(), &req.namespace().unwrap_or_default());
            let fresh = api.get(&req.name_any()).await?;
            let state = fresh.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| e.state);
            if state == Some(ExecutionState::Running) {
                execute(&fresh, &ctx, fresh.status.clone().unwrap_or_default()).await?;
            }
            Ok(Action::await_change())
        }
        Some(_) => Ok(Action::await_change()),
    }
}

pub fn error_policy(req: Arc<ActionRequest>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_errors.with_label_values(&["actionrequest", err.category()]).inc();
    warn!(request = %req.name_any(), namespace = ?req.namespace(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

fn past_requests(ctx: &Context, req: &ActionRequest) -> Vec<Past> {
    let ns = req.namespace();
    let uid = req.uid();
    ctx.stores
        .requests
        .state_filter(|r| {
            r.namespace() == ns && r.spec.agent == req.spec.agent && r.spec.action == req.spec.action && r.uid() != uid
        })
        .iter()
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            Some(Past {
                decided_at: s.decided_at.as_ref()?.parse().ok()?,
                decision: s.decision?,
                target: gate::target_key(&r.spec),
            })
        })
        .collect()
}

async fn decide(req: &ActionRequest, ctx: &Context, previous: ActionRequestStatus) -> Result<Action, Error> {
    let now = Timestamp::now();
    let ns = req.namespace().unwrap_or_default();
    let agent: Option<Arc<SocAgent>> = ctx.stores.agents.get(&ObjectRef::new(&req.spec.agent).within(&ns));
    let action = ctx.stores.actions.get(&ObjectRef::new(&req.spec.action)).filter(|a| malformed(a.as_ref()).is_none());
    let policy = agent
        .as_ref()
        .and_then(|a| ctx.stores.policies.get(&ObjectRef::new(&a.spec.policy_ref)))
        .filter(|p| malformed(p.as_ref()).is_none());
    let name = req.name_any();
    let approvals: Vec<Arc<Approval>> = ctx.stores.approvals.state_filter(|a| {
        a.namespace().as_deref() == Some(ns.as_str()) && a.spec.action_request.as_deref() == Some(name.as_str())
    });
    let approval_refs: Vec<&Approval> = approvals.iter().map(|a| a.as_ref()).collect();
    let past = past_requests(ctx, req);
    let inputs = gate::Inputs {
        request: req,
        key: &ctx.key,
        agent: agent.as_deref(),
        action: action.as_ref().map(|a| &a.spec),
        policy: policy.as_ref().map(|p| &p.spec),
        approvals: &approval_refs,
        past: &past,
        now,
    };
    let Some(v) = gate::decide(&inputs) else {
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    for (approval, why) in &v.ignored {
        // Said once per reconcile that sees it; these are rare and worth seeing.
        warn!(approval, why, "approval ignored");
    }

    let mut status = ActionRequestStatus {
        decision: Some(v.decision),
        message: v.message.clone(),
        approvals: v.approvals.clone(),
        required_approvals: v.required,
        binding: Some(signature::request_binding(&req.spec)),
        expires_at: v.expires_at.map(|t| t.to_string()),
        decided_at: None,
        policy: policy.as_ref().map(|p| format!("{}@{}", p.name_any(), p.metadata.generation.unwrap_or(0))),
        tier: v.tier,
        execution: None,
        conditions: previous.conditions.clone(),
    };

    if v.decision == Decision::Pending {
        if previous != status {
            write(req, ctx, &status).await?;
        }
        let wait = v.expires_at.map(|e| e.duration_since(now).as_secs().max(1) as u64).unwrap_or(60);
        return Ok(Action::requeue(Duration::from_secs(wait)));
    }

    status.decided_at = Some(now.to_string());
    let execution = action.as_ref().and_then(|a| a.spec.execution.clone());
    let runs = v.decision.runs();
    if runs {
        match &execution {
            Some(e) => {
                if e.manifest.is_some() && action.as_ref().is_some_and(|a| a.spec.reversible) {
                    // In place before anything is applied, so a deletion always rolls back.
                    k8s::set_finalizer(&api(req, ctx), req, FINALIZER, true, k8s::Guard::None).await?;
                }
                status.execution = Some(ExecutionStatus {
                    state: Some(ExecutionState::Running),
                    started_at: Some(now.to_string()),
                    ..Default::default()
                });
            }
            None => status.message = format!("{}; carried out by the agent with its own grants", status.message),
        }
    }
    let approvers: Vec<String> = v.approvals.iter().map(|a| a.approver.clone()).collect();
    match &execution {
        // A manifest is applied with server-side apply: doing it again changes nothing, so it may
        // go out together with the status that records the decision.
        Some(e) if runs && e.http.is_none() => {
            let (written, outcome) = tokio::join!(write(req, ctx, &status), run_execution(req, ctx, &approvers));
            written?;
            record_decision(req, ctx, &status, &approvers);
            finish(req, ctx, status, outcome).await?;
        }
        // An HTTP call is not idempotent by nature: the decision and `Running` are recorded first,
        // and the call carries the request's UID as its idempotency key.
        Some(_) if runs => {
            write(req, ctx, &status).await?;
            record_decision(req, ctx, &status, &approvers);
            let outcome = run_execution(req, ctx, &approvers).await;
            finish(req, ctx, status, outcome).await?;
        }
        _ => {
            write(req, ctx, &status).await?;
            record_decision(req, ctx, &status, &approvers);
        }
    }
    Ok(Action::await_change())
}

fn record_decision(req: &ActionRequest, ctx: &Context, status: &ActionRequestStatus, approvers: &[String]) {
    let decision = status.decision.map(|d| d.as_str()).unwrap_or("Pending");
    if let Some(d) = status.decision {
        // Every decided request is behaviour of the agent: rates, mix, targets, refusals.
        let o = socwarden_core::behaviour::drift::Observation {
            at: Timestamp::now(),
            kind: socwarden_core::behaviour::drift::Kind::Request {
                action: req.spec.action.clone(),
                target: gate::target_key(&req.spec),
                decision: d,
            },
        };
        let key = (req.namespace().unwrap_or_default(), req.spec.agent.clone());
        ctx.monitor.observe(vec![(key, o)], std::time::Instant::now(), Timestamp::now());
    }
    ctx.metrics.action_requests.with_label_values(&[&req.spec.action, decision]).inc();
    if matches!(status.decision, Some(Decision::Approved | Decision::Denied)) {
        if let Some(created) = req.metadata.creation_timestamp.as_ref() {
            let secs = Timestamp::now().duration_since(created.0).as_secs_f64();
            ctx.metrics.approval_latency.observe(secs.max(0.0));
        }
    }
    let ns = req.namespace().unwrap_or_default();
    let mut e = Entry::new(decisionlog::phase_of(decision), decision, &ns, &req.spec.agent, status.message.clone());
    e.request = Some(req.name_any());
    e.action = Some(req.spec.action.clone());
    e.target = Some(gate::target_key(&req.spec));
    e.approvers = approvers.to_vec();
    e.policy = status.policy.clone();
    ctx.decisions.record(&e);
    let type_ = match status.decision {
        Some(Decision::Rejected | Decision::Denied | Decision::Expired) => EventType::Warning,
        _ => EventType::Normal,
    };
    k8s::publish(&ctx.recorder, req, vec![(type_, decision, status.message.clone())]);
}

type Outcome = Result<(String, Vec<socwarden_api::AppliedObject>), execute::Error>;

/// Carries out the action (no status written). Safe to repeat: see the module comment.
async fn run_execution(req: &ActionRequest, ctx: &Context, approvers: &[String]) -> Outcome {
    let action = ctx.stores.actions.get(&ObjectRef::new(&req.spec.action)).filter(|a| malformed(a.as_ref()).is_none());
    let Some((e, a)) = action.as_ref().and_then(|a| a.spec.execution.as_ref().map(|e| (e, a))) else {
        return Err(execute::Error::Invalid(format!(
            "SocAction {} no longer exists or has no execution",
            req.spec.action
        )));
    };
    if let Some(tpl) = &e.manifest {
        let applied = execute::apply_manifest(&ctx.client, &ctx.discovery, tpl, req).await?;
        let names: Vec<String> = applied.iter().map(|o| format!("{} {}/{}", o.kind, o.namespace, o.name)).collect();
        return Ok((format!("applied {}", names.join(", ")), applied));
    }
    if let Some(http) = &e.http {
        let key = execute::http_key(&ctx.client, &ctx.namespace, http).await?;
        let body = execute::http_body(req, &a.spec, approvers);
        let code = execute::call(http, &key, &req.uid().unwrap_or_default(), body).await?;
        return Ok((format!("{} answered {code}", http.url), vec![]));
    }
    Err(execute::Error::Invalid("execution names neither manifest nor http".into()))
}

/// Records how an execution ended: status, decision log, Event, metrics.
async fn finish(
    req: &ActionRequest,
    ctx: &Context,
    mut status: ActionRequestStatus,
    outcome: Outcome,
) -> Result<(), Error> {
    let approvers: Vec<String> = status.approvals.iter().map(|a| a.approver.clone()).collect();
    let exec_status = status.execution.get_or_insert_with(Default::default);
    exec_status.finished_at = Some(now_str());
    let (decision, type_) = match outcome {
        Ok((what, applied)) => {
            exec_status.state = Some(ExecutionState::Succeeded);
            exec_status.result = what;
            exec_status.applied = applied;
            ("Executed", EventType::Normal)
        }
        Err(e) => {
            exec_status.state = Some(ExecutionState::Failed);
            exec_status.result = e.to_string();
            ("ExecutionFailed", EventType::Warning)
        }
    };
    let result_text = exec_status.result.clone();
    ctx.metrics.executions.with_label_values(&[decision]).inc();
    write(req, ctx, &status).await?;
    info!(decision, result = %result_text, "execution finished");
    let ns = req.namespace().unwrap_or_default();
    let mut e = Entry::new(decisionlog::Phase::Respond, decision, &ns, &req.spec.agent, result_text.clone());
    e.request = Some(req.name_any());
    e.action = Some(req.spec.action.clone());
    e.target = Some(gate::target_key(&req.spec));
    e.approvers = approvers;
    ctx.decisions.record(&e);
    k8s::publish(&ctx.recorder, req, vec![(type_, decision, result_text)]);
    Ok(())
}

/// Resumes an execution found `Running` (after a restart).
async fn execute(req: &ActionRequest, ctx: &Context, status: ActionRequestStatus) -> Result<(), Error> {
    let approvers: Vec<String> = status.approvals.iter().map(|a| a.approver.clone()).collect();
    let outcome = run_execution(req, ctx, &approvers).await;
    finish(req, ctx, status, outcome).await
}

/// Deleting the request of a reversible manifest action removes what it applied.
async fn roll_back(req: &ActionRequest, ctx: &Context) -> Result<(), Error> {
    let applied = req.status.as_ref().and_then(|s| s.execution.as_ref()).map(|e| e.applied.clone()).unwrap_or_default();
    if applied.is_empty() {
        return Ok(());
    }
    match execute::rollback(&ctx.client, &ctx.discovery, &applied).await {
        Ok(()) => {
            let ns = req.namespace().unwrap_or_default();
            let what: Vec<String> = applied.iter().map(|o| format!("{} {}/{}", o.kind, o.namespace, o.name)).collect();
            let mut e = Entry::new(
                decisionlog::Phase::Recover,
                "RolledBack",
                &ns,
                &req.spec.agent,
                format!("removed {}", what.join(", ")),
            );
            e.request = Some(req.name_any());
            e.action = Some(req.spec.action.clone());
            ctx.decisions.record(&e);
            ctx.metrics.executions.with_label_values(&["RolledBack"]).inc();
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
