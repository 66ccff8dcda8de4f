//! The action gate: what happens to an ActionRequest, decided deterministically and in a fixed
//! order — stamp, agent, catalog, parameters, scope, protection, budgets, then the tier and the
//! approvals. The admission webhook and the reconciler call the same functions. Pure.

use crate::admission::approvals::{self, Subject};
use crate::admission::effect::{self, Forbidden};
use crate::admission::identity::{self, is_service_account};
use crate::admission::kinds::Kinds;
use crate::admission::params;
use crate::admission::signature::{self, Key};
use crate::agent::policy;
use jiff::{SignedDuration, Timestamp};
use kube_core::ResourceExt;
use socwarden_api::duration;
use socwarden_api::{
    ActionRequest, ActionRequestSpec, ActionRequestStatus, Approval, ApprovalRecord, AutonomyPolicySpec, Decision,
    EffectObject, ExecutionState, ExecutionStatus, Phase, Risk, SocActionSpec, SocAgent, Tier,
};
use std::collections::BTreeSet;

/// A past request of the same agent and action, for the budgets.
#[derive(Clone, Debug, PartialEq)]
pub struct Past {
    pub decided_at: Timestamp,
    pub decision: Decision,
    /// `kind/namespace/name` of what it acted on: its declared target and the targets of its
    /// effect (`targets`).
    pub targets: Vec<String>,
}

pub fn target_key(spec: &ActionRequestSpec) -> String {
    let t = &spec.target;
    format!("{}/{}/{}", t.kind, t.namespace.as_deref().unwrap_or(""), t.name)
}

/// What a request acts on, for the target budgets: its declared target, the pods its objects
/// select and the targets its parameters name (not the objects it writes to do so).
pub fn targets(spec: &ActionRequestSpec, effect: &[EffectObject]) -> Vec<String> {
    let mut keys = vec![target_key(spec)];
    for o in effect.iter().filter(|o| o.via != "written") {
        let key = format!("{}/{}/{}", o.kind, o.namespace.as_deref().unwrap_or(""), o.name);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// An object another request's execution applied (and whose rollback would remove it).
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub request: String,
    /// `Kind namespace/name`.
    pub object: String,
}

/// Why the gate decided what it did: one value per check of the gate, in the gate's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NotStamped,
    ForeignServiceAccount,
    AgentNotFound,
    ActionNotAllowed,
    ActionNotFound,
    NotExecutable,
    InvalidParameters,
    OutOfScope,
    ProtectedTarget,
    TakeOver,
    BudgetExceeded,
    AgentPaused,
    AgentInvalid,
    PolicyNotFound,
    ObserveTier,
    Autonomous,
    Denied,
    Approved,
    Expired,
    AwaitingApproval,
}

/// A refusal: the decision (Rejected for deterministic checks) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal { reason, message: message.into() }
}

/// The checks that need no history and no approvals, in order: the agent lists the action, the
/// action exists, the parameters fit its schema, the target is in scope and not protected.
/// The webhook runs these at admission; the reconciler runs them again before deciding.
pub fn precheck(
    spec: &ActionRequestSpec,
    agent: Option<&SocAgent>,
    action: Option<&SocActionSpec>,
    kinds: &Kinds,
) -> Result<(), Refusal> {
    let agent = agent.ok_or_else(|| {
        refuse(Reason::AgentNotFound, format!("SocAgent {:?} does not exist in this namespace", spec.agent))
    })?;
    if !agent.spec.actions.contains(&spec.action) {
        return Err(refuse(
            Reason::ActionNotAllowed,
            format!(
                "action {:?} is not in the actions of SocAgent {} ({:?})",
                spec.action, spec.agent, agent.spec.actions
            ),
        ));
    }
    let action =
        action.ok_or_else(|| refuse(Reason::ActionNotFound, format!("SocAction {:?} does not exist", spec.action)))?;
    params::validate(&action.parameters, &spec.parameters).map_err(|e| refuse(Reason::InvalidParameters, e))?;
    if let Some(tpl) = action.execution.as_ref().and_then(|e| e.manifest.as_ref()) {
        // Refused when filed, not discovered after the approvers said yes.
        params::render(tpl, &spec.parameters, &spec.target, "request").map_err(|e| {
            refuse(
                Reason::InvalidParameters,
                format!("the manifest of {} cannot be rendered with these parameters: {e}", spec.action),
            )
        })?;
    }
    // The target is compared resolved: `pods`, `po` and `v1/pods` are `Pod`; `::ffff:10.0.0.7` is
    // `10.0.0.7`; an unknown kind is refused, never compared as text.
    let target = params::Resolved::target(kinds, &spec.target)
        .map_err(|e| refuse(Reason::InvalidParameters, format!("target {}: {e}", target_key(spec))))?;
    if let Some(why) = params::out_of_scope(&target, &agent.spec.scope.namespaces) {
        return Err(refuse(Reason::OutOfScope, format!("target {why} of SocAgent {}", spec.agent)));
    }
    if let Some(sel) = params::protected_by(&target, kinds, &action.protected_targets) {
        return Err(refuse(
            Reason::ProtectedTarget,
            format!(
                "target {target} is protected (protectedTargets: {}); no agent may {} it",
                effect::describe(sel),
                spec.action
            ),
        ));
    }
    // What its parameters name and its manifest writes must be known to be judged.
    effect::plan(action, spec, "request", kinds).map_err(|e| {
        refuse(Reason::InvalidParameters, format!("the effect of this request cannot be computed: {e}"))
    })?;
    Ok(())
}

/// An action whose execution leaves the safe envelope (`SocAction.status.unexecutable`, see
/// `envelope`) has its requests refused: the executor would refuse it anyway, after the approvers
/// said yes.
pub fn executable(spec: &ActionRequestSpec, unexecutable: &[String]) -> Result<(), Refusal> {
    if unexecutable.is_empty() {
        return Ok(());
    }
    Err(refuse(
        Reason::NotExecutable,
        format!("SocAction {} may not be executed: {}", spec.action, unexecutable.join("; ")),
    ))
}

/// Budgets over the last hour, counting what ran (auto-approved or approved); `this`: what this
/// request acts on (`targets`).
pub fn budget(
    action: &SocActionSpec,
    spec: &ActionRequestSpec,
    this: &[String],
    past: &[Past],
    now: Timestamp,
) -> Result<(), Refusal> {
    let Some(limits) = &action.limits else { return Ok(()) };
    let hour_ago = now.checked_sub(SignedDuration::from_hours(1)).unwrap_or(Timestamp::MIN);
    let recent: Vec<&Past> = past.iter().filter(|p| p.decision.runs() && p.decided_at > hour_ago).collect();
    if let Some(max) = limits.max_executions_per_hour
        && recent.len() as u32 >= max
    {
        return Err(refuse(
            Reason::BudgetExceeded,
            format!("{} executions of {} in the last hour; the budget is {max} per hour", recent.len(), spec.action),
        ));
    }
    if let Some(max) = limits.max_targets_per_hour {
        let mut targets: BTreeSet<&str> = recent.iter().flat_map(|p| p.targets.iter().map(String::as_str)).collect();
        targets.extend(this.iter().map(String::as_str));
        if targets.len() as u32 > max {
            return Err(refuse(
                Reason::BudgetExceeded,
                format!(
                    "{} distinct targets of {} in the last hour with this one; the budget is {max}",
                    targets.len(),
                    spec.action
                ),
            ));
        }
    }
    Ok(())
}

/// Approvals a request of this risk needs.
pub fn required_approvals(agent: &SocAgent, policy: &AutonomyPolicySpec, risk: Risk) -> u32 {
    let r = &policy.approvals.required;
    let by_risk = match risk {
        Risk::Low => r.low,
        Risk::Medium => r.medium,
        Risk::High => r.high,
        Risk::Critical => r.critical,
    };
    by_risk.max(agent.spec.approvers.min_approvals).max(1)
}

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: Reason,
    pub message: String,
    pub approvals: Vec<ApprovalRecord>,
    /// Approvals that did not count, and why.
    pub ignored: Vec<(String, String)>,
    pub required: Option<u32>,
    pub expires_at: Option<Timestamp>,
    pub tier: Option<Tier>,
    /// The request's effect it was decided on.
    pub effect: Vec<EffectObject>,
    /// The content of the SocAction it was decided on (`signature::action_hash`).
    pub action_hash: Option<String>,
    /// The SocAction changed since the request was last looked at.
    pub action_changed: bool,
}

impl Verdict {
    fn new(decision: Decision, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            decision,
            reason,
            message: message.into(),
            approvals: vec![],
            ignored: vec![],
            required: None,
            expires_at: None,
            tier: None,
            effect: vec![],
            action_hash: None,
            action_changed: false,
        }
    }

    fn refused(r: Refusal) -> Self {
        Self::new(Decision::Rejected, r.reason, r.message)
    }
}

pub struct Inputs<'a> {
    pub request: &'a ActionRequest,
    pub key: &'a Key,
    /// The kinds the API server serves (discovery), to resolve targets and effects.
    pub kinds: &'a Kinds,
    pub agent: Option<&'a SocAgent>,
    pub action: Option<&'a SocActionSpec>,
    /// Why the action's execution may not run (its status), if it may not.
    pub unexecutable: &'a [String],
    /// The request's effect (`effect::plan`, with the selected pods listed now).
    pub effect: &'a [EffectObject],
    /// Objects other requests' executions applied (see `Applied`).
    pub applied_by_others: &'a [Applied],
    /// What the request showed before this decision (a Pending request's frozen requirements).
    pub previous: Option<&'a ActionRequestStatus>,
    pub policy: Option<&'a AutonomyPolicySpec>,
    /// Approvals that name this request.
    pub approvals: &'a [&'a Approval],
    /// Earlier requests of the same agent and action.
    pub past: &'a [Past],
    pub now: Timestamp,
}

/// Decides a request that is not decided yet. `None`: the agent has not been reconciled yet (no
/// effective tier to decide with); look again shortly.
pub fn decide(i: &Inputs) -> Option<Verdict> {
    let spec = &i.request.spec;
    let checked = stamp(i)
        .and_then(|()| precheck(spec, i.agent, i.action, i.kinds))
        .and_then(|()| executable(spec, i.unexecutable))
        .and_then(|()| reach(spec, i));
    if let Err(r) = checked {
        let mut v = Verdict::refused(r);
        v.effect = i.effect.to_vec();
        return Some(v);
    }
    let (agent, action) = (i.agent?, i.action?);
    let tier = agent.status.as_ref().and_then(|s| s.effective_tier)?;
    let checks = usable(agent).and_then(|()| {
        let policy = i.policy.ok_or_else(|| {
            refuse(Reason::PolicyNotFound, format!("AutonomyPolicy {:?} does not exist", agent.spec.policy_ref))
        })?;
        budget(action, spec, &targets(spec, i.effect), i.past, i.now).map(|()| policy)
    });
    let policy_spec = match checks {
        Ok(p) => p,
        Err(r) => return Some(Verdict::refused(r)),
    };
    let ns = i.request.namespace().unwrap_or_default();
    // Someone filing on the agent's behalf does not borrow its autonomy.
    let by_agent = identity::is_agent(&spec.requester, &ns, &spec.agent);
    // Once it waited for humans, it waits for humans: lowering the action's risk or raising the
    // tier meanwhile does not let it run alone.
    let was_pending = i.previous.and_then(|p| p.decision) == Some(Decision::Pending);
    let mut v = if tier == Tier::Observe {
        Verdict::new(
            Decision::Recommended,
            Reason::ObserveTier,
            format!("SocAgent {} is at the observe tier: recorded as a recommendation, never executed", spec.agent),
        )
    } else if by_agent && !was_pending && policy::runs_alone(policy_spec, tier, action.risk) {
        Verdict::new(
            Decision::AutoApproved,
            Reason::Autonomous,
            format!("{} risk runs without approval at tier {tier}", action.risk),
        )
    } else {
        gated(i, agent, action, policy_spec, by_agent)
    };
    v.tier = Some(tier);
    v.effect = i.effect.to_vec();
    v.action_hash = Some(signature::action_hash(action));
    Some(v)
}

/// Scope and protected targets over the whole effect, not only the declared target; and nothing
/// another request applied is taken over (its rollback, or this one's, would undo the other).
fn reach(spec: &ActionRequestSpec, i: &Inputs) -> Result<(), Refusal> {
    for o in i.effect.iter().filter(|o| o.via == "written") {
        let key = format!("{} {}/{}", o.kind, o.namespace.as_deref().unwrap_or(""), o.name);
        if let Some(a) = i.applied_by_others.iter().find(|a| a.object == key) {
            return Err(refuse(
                Reason::TakeOver,
                format!(
                    "its execution would take over {key}, which request {} applied; an execution never takes over another's (delete that request to lift it first)",
                    a.request
                ),
            ));
        }
    }
    let (Some(agent), Some(action)) = (i.agent, i.action) else { return Ok(()) };
    match effect::first_forbidden(i.effect, i.kinds, &agent.spec.scope.namespaces, &action.protected_targets) {
        None => Ok(()),
        Some(Forbidden::Unresolved(m)) => Err(refuse(Reason::InvalidParameters, m)),
        Some(Forbidden::OutOfScope(m)) => Err(refuse(Reason::OutOfScope, m)),
        Some(Forbidden::Protected(m)) => {
            Err(refuse(Reason::ProtectedTarget, format!("{m}; no agent may {} it", spec.action)))
        }
    }
}

/// The webhook's stamp: a valid signature, and a ServiceAccount requester only for its own agent.
fn stamp(i: &Inputs) -> Result<(), Refusal> {
    let spec = &i.request.spec;
    let ns = i.request.namespace().unwrap_or_default();
    let name = i.request.name_any();
    if spec.signature.is_empty() || !i.key.verify(&signature::request_message(&ns, &name, spec), &spec.signature) {
        return Err(refuse(
            Reason::NotStamped,
            "the request was not stamped by the admission webhook (missing or invalid signature); it is ignored",
        ));
    }
    match i.agent {
        Some(a)
            if is_service_account(&spec.requester, &spec.requester_groups)
                && spec.requester != identity::agent_user(&ns, &a.name_any()) =>
        {
            Err(refuse(
                Reason::ForeignServiceAccount,
                format!("{} is a ServiceAccount but not the one of SocAgent {}", spec.requester, spec.agent),
            ))
        }
        _ => Ok(()),
    }
}

/// A paused agent, or one whose spec is invalid, has nothing decided for it.
fn usable(agent: &SocAgent) -> Result<(), Refusal> {
    let name = agent.name_any();
    match agent.status.as_ref().and_then(|s| s.phase) {
        Some(Phase::Paused) => Err(refuse(Reason::AgentPaused, format!("SocAgent {name} is paused"))),
        Some(Phase::Error) => {
            Err(refuse(Reason::AgentInvalid, format!("SocAgent {name} has an invalid spec and fails closed")))
        }
        _ => Ok(()),
    }
}

fn gated(
    i: &Inputs,
    agent: &SocAgent,
    action: &SocActionSpec,
    policy_spec: &AutonomyPolicySpec,
    by_agent: bool,
) -> Verdict {
    let req = i.request;
    let spec = &req.spec;
    // Never fewer approvals than it asked for when it first waited.
    let frozen = i.previous.and_then(|p| p.required_approvals).unwrap_or(0);
    let required = required_approvals(agent, policy_spec, action.risk).max(frozen);
    let hash = signature::action_hash(action);
    let changed_now = i.previous.and_then(|p| p.action_hash.as_deref()).is_some_and(|h| h != hash);
    let changed_before = i.previous.is_some_and(|p| {
        socwarden_api::conditions::find(&p.conditions, socwarden_api::conditions::ACTION_CHANGED).is_some()
    });
    let changed = changed_now || changed_before;
    let timeout = duration::parse(&policy_spec.approvals.timeout).unwrap_or(std::time::Duration::from_secs(900));
    let created = req.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(i.now);
    let timeout = SignedDuration::try_from(timeout).unwrap_or(SignedDuration::from_mins(15));
    let expires = created.checked_add(timeout).unwrap_or(Timestamp::MAX);
    let (uid, binding) = (req.uid().unwrap_or_default(), signature::approved_content(spec, &hash));
    let subject = Subject::Request { uid: &uid, binding: &binding, requester: &spec.requester, expires };
    let approvals::Tally { approved: counted, denied: deny, ignored } =
        approvals::tally(i.approvals, agent, &subject, i.key, i.now);

    let mut v = if let Some(d) = deny {
        let msg = format!("denied by {}", d.approver);
        let mut v = Verdict::new(Decision::Denied, Reason::Denied, msg);
        v.approvals = vec![d];
        v
    } else if counted.len() as u32 >= required {
        let who: Vec<&str> = counted.iter().map(|c| c.approver.as_str()).collect();
        let mut v = Verdict::new(Decision::Approved, Reason::Approved, format!("approved by {}", who.join(", ")));
        v.approvals = counted;
        v
    } else if i.now >= expires {
        let mut v = Verdict::new(
            Decision::Expired,
            Reason::Expired,
            format!(
                "{} of {required} approvals before the {} timeout; never executed",
                counted.len(),
                policy_spec.approvals.timeout
            ),
        );
        v.approvals = counted;
        v
    } else {
        let why = if changed {
            format!(
                "SocAction {} changed while this request waited, so approvals given before no longer count; it needs",
                spec.action
            )
        } else if by_agent {
            format!("{} risk needs", action.risk)
        } else {
            format!(
                "filed by {} on behalf of SocAgent {}: a request the agent did not file needs",
                spec.requester, spec.agent
            )
        };
        let mut v = Verdict::new(
            Decision::Pending,
            Reason::AwaitingApproval,
            format!(
                "{why} {required} approval(s) from the agent's approvers (users {:?}, groups {:?}), has {}",
                agent.spec.approvers.users,
                agent.spec.approvers.groups,
                counted.len()
            ),
        );
        v.approvals = counted;
        v
    };
    v.required = Some(required);
    v.expires_at = Some(expires);
    v.action_changed = changed_now;
    v.ignored = ignored;
    v
}

/// The status a request shows for verdict `v`. A decision that runs an `execution` is recorded
/// together with `execution: Running`, before anything runs (so a restart finds it and repeats
/// only idempotent work); a decision that runs without one is carried out by the agent itself.
pub fn status(
    v: &Verdict,
    spec: &ActionRequestSpec,
    policy: Option<String>,
    execution: Option<&socwarden_api::Execution>,
    previous: &ActionRequestStatus,
    now: Timestamp,
) -> ActionRequestStatus {
    let decided = v.decision != Decision::Pending;
    let mut status = ActionRequestStatus {
        decision: Some(v.decision),
        message: v.message.clone(),
        approvals: v.approvals.clone(),
        required_approvals: v.required,
        binding: Some(signature::request_binding(spec)),
        action_hash: v.action_hash.clone(),
        expires_at: v.expires_at.map(|t| t.to_string()),
        decided_at: decided.then(|| now.to_string()),
        policy,
        tier: v.tier,
        execution: None,
        effect: v.effect.clone(),
        conditions: previous.conditions.clone(),
    };
    if v.action_changed {
        socwarden_api::conditions::set(
            &mut status.conditions,
            socwarden_api::Condition {
                type_: socwarden_api::conditions::ACTION_CHANGED.into(),
                status: "True".into(),
                reason: "ContentChanged".into(),
                message: format!(
                    "SocAction {} changed while this request waited; approvals given before no longer count",
                    spec.action
                ),
                last_transition_time: now.to_string(),
                observed_generation: None,
            },
        );
    }
    if decided && v.decision.runs() {
        match execution {
            Some(_) => {
                status.execution = Some(ExecutionStatus {
                    state: Some(ExecutionState::Running),
                    started_at: Some(now.to_string()),
                    ..Default::default()
                })
            }
            None => status.message = format!("{}; carried out by the agent with its own grants", status.message),
        }
    }
    status
}

/// A verdict built for the tests of what follows it (`request`).
#[cfg(test)]
pub(crate) fn testing_verdict(decision: Decision, message: &str) -> Verdict {
    Verdict::new(decision, Reason::Approved, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, NS, agent, ts};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use socwarden_api::ApprovalDecision;
    use socwarden_api::{ActionRequestSpec, Limits, Target, TargetSelector};

    fn action(risk: Risk) -> SocActionSpec {
        SocActionSpec { risk, ..Default::default() }
    }

    fn request(key: &Key, requester: &str) -> ActionRequest {
        let mut spec = ActionRequestSpec {
            agent: "bot".into(),
            action: "isolate".into(),
            parameters: Default::default(),
            target: Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) },
            justification: "alert 42".into(),
            requester: requester.into(),
            requester_groups: vec![],
            nonce: "n1".into(),
            signature: String::new(),
        };
        spec.signature = key.sign(&signature::request_message(NS, "r1", &spec));
        let mut r = ActionRequest::new("r1", spec);
        r.metadata.namespace = Some(NS.into());
        r.metadata.uid = Some("req-uid".into());
        r.metadata.creation_timestamp = Some(Time(ts("2026-01-01T10:00:00Z")));
        r
    }

    /// An approval of `req` (UID "req-uid"), named `name`, stamped as the webhook stamps one.
    #[allow(clippy::too_many_arguments)]
    fn approval(
        key: &Key,
        req: &ActionRequest,
        action: &SocActionSpec,
        name: &str,
        who: &str,
        groups: &[&str],
        d: ApprovalDecision,
        at: &str,
    ) -> Approval {
        let binding = signature::approved_content(&req.spec, &signature::action_hash(action));
        let subject =
            Subject::Request { uid: "req-uid", binding: &binding, requester: &req.spec.requester, expires: ts(at) };
        let mut a = testing::approval(key, &agent(Tier::Supervised), &subject, who, groups, d, ts(at));
        // The stamp covers the name: signed as the webhook signs an Approval of that name.
        a.metadata.name = Some(name.into());
        a.spec.signature = key.sign(&signature::approval_message(NS, name, &a.spec));
        a
    }

    struct Case {
        agent: SocAgent,
        action: SocActionSpec,
        policy: AutonomyPolicySpec,
        approvals: Vec<Approval>,
        past: Vec<Past>,
        unexecutable: Vec<String>,
        effect: Vec<EffectObject>,
        previous: Option<ActionRequestStatus>,
        applied_by_others: Vec<Applied>,
        now: Timestamp,
    }

    fn case(tier: Tier, risk: Risk) -> Case {
        Case {
            agent: agent(tier),
            action: action(risk),
            policy: AutonomyPolicySpec::default(),
            approvals: vec![],
            past: vec![],
            unexecutable: vec![],
            effect: vec![],
            previous: None,
            applied_by_others: vec![],
            now: ts("2026-01-01T10:01:00Z"),
        }
    }

    fn run(c: &Case, req: &ActionRequest, key: &Key) -> Verdict {
        let approvals: Vec<&Approval> = c.approvals.iter().collect();
        decide(&Inputs {
            request: req,
            key,
            kinds: &Kinds::builtin(),
            agent: Some(&c.agent),
            action: Some(&c.action),
            unexecutable: &c.unexecutable,
            effect: &c.effect,
            applied_by_others: &c.applied_by_others,
            previous: c.previous.as_ref(),
            policy: Some(&c.policy),
            approvals: &approvals,
            past: &c.past,
            now: c.now,
        })
        .unwrap()
    }

    #[test]
    fn the_tier_decides_what_runs_alone() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let table = [
            (Tier::Observe, Risk::Low, Decision::Recommended),
            (Tier::Assist, Risk::Low, Decision::Pending),
            (Tier::Supervised, Risk::Low, Decision::AutoApproved),
            (Tier::Supervised, Risk::Medium, Decision::Pending),
            (Tier::Autonomous, Risk::Medium, Decision::AutoApproved),
            (Tier::Autonomous, Risk::High, Decision::Pending),
            (Tier::Autonomous, Risk::Critical, Decision::Pending),
        ];
        for (tier, risk, want) in table {
            assert_eq!(run(&case(tier, risk), &req, &key).decision, want, "{tier} {risk}");
        }
    }

    #[test]
    fn a_request_someone_else_files_never_runs_alone() {
        let key = Key::new(b"k");
        for requester in ["analyst", "lead-a"] {
            let req = request(&key, requester);
            for (tier, want) in [
                (Tier::Observe, Decision::Recommended),
                (Tier::Supervised, Decision::Pending),
                (Tier::Autonomous, Decision::Pending),
            ] {
                let v = run(&case(tier, Risk::Low), &req, &key);
                assert_eq!(v.decision, want, "{requester} at {tier}");
                if want == Decision::Pending {
                    assert!(
                        v.message.contains(&format!("filed by {requester} on behalf of SocAgent bot")),
                        "{}",
                        v.message
                    );
                    assert_eq!(v.required, Some(2), "the quorum of the agent's approvers, at least one");
                }
            }
        }
        // The filer never counts towards its own quorum.
        let req = request(&key, "lead-a");
        let mut c = case(Tier::Autonomous, Risk::Low);
        c.agent.spec.approvers.min_approvals = 1;
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "own",
            "lead-a",
            &["leads"],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:30Z",
        ));
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.ignored.len()), (Decision::Pending, 1));
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "b",
            "lead-b",
            &["leads"],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:40Z",
        ));
        assert_eq!(run(&c, &req, &key).decision, Decision::Approved);
    }

    #[test]
    fn what_waited_for_humans_keeps_its_requirements_and_approvals_bind_the_actions_content() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let mut c = case(Tier::Supervised, Risk::High);
        let first = run(&c, &req, &key);
        assert_eq!((first.decision, first.required), (Decision::Pending, Some(2)));
        let shown = status(&first, &req.spec, None, None, &ActionRequestStatus::default(), c.now);
        assert_eq!(shown.action_hash, Some(signature::action_hash(&c.action)));
        c.previous = Some(shown);
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a1",
            "alice",
            &[],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:30Z",
        ));

        // The catalog lowers the risk: the request does not start running alone, still needs two,
        // and the approval given for the high-risk content no longer counts.
        c.action.risk = Risk::Low;
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.required), (Decision::Pending, Some(2)), "{}", v.message);
        assert!(v.message.contains("SocAction isolate changed while this request waited"), "{}", v.message);
        assert_eq!(v.ignored.len(), 1, "{:?}", v.ignored);
        assert!(v.ignored[0].1.contains("the action changed since you looked"), "{:?}", v.ignored);
        assert_eq!(v.action_hash, Some(signature::action_hash(&c.action)));
        // Said for as long as it waits, not only at the reconcile that noticed.
        c.previous = Some(status(&v, &req.spec, None, None, c.previous.as_ref().unwrap(), c.now));
        assert!(run(&c, &req, &key).message.contains("changed while this request waited"));

        // Approvals of the content as it is now count.
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a2",
            "alice",
            &[],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:40Z",
        ));
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a3",
            "bob",
            &["leads"],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:41Z",
        ));
        assert_eq!(run(&c, &req, &key).decision, Decision::Approved);
    }

    #[test]
    fn quorum_deny_and_expiry() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let mut c = case(Tier::Supervised, Risk::High);
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.required), (Decision::Pending, Some(2)));
        assert!(v.message.contains("needs 2 approval(s)") && v.message.contains("has 0"), "{}", v.message);

        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a1",
            "alice",
            &[],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:30Z",
        ));
        assert_eq!(run(&c, &req, &key).decision, Decision::Pending);
        // The same approver twice does not make a quorum.
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a2",
            "alice",
            &[],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:31Z",
        ));
        let v = run(&c, &req, &key);
        assert_eq!(v.decision, Decision::Pending);
        assert_eq!(v.ignored.len(), 1);
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a3",
            "bob",
            &["leads"],
            ApprovalDecision::Approve,
            "2026-01-01T10:00:40Z",
        ));
        let v = run(&c, &req, &key);
        assert_eq!(v.decision, Decision::Approved);
        assert_eq!(v.message, "approved by alice, bob");

        // One deny wins over any number of approvals.
        c.approvals.push(approval(
            &key,
            &req,
            &c.action,
            "a4",
            "carol",
            &["leads"],
            ApprovalDecision::Deny,
            "2026-01-01T10:00:50Z",
        ));
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.message.as_str()), (Decision::Denied, "denied by carol"));

        // Nobody decides in time: expired.
        let mut late = case(Tier::Supervised, Risk::High);
        late.now = ts("2026-01-01T10:15:00Z");
        let v = run(&late, &req, &key);
        assert_eq!(v.decision, Decision::Expired);
        // An approval after the expiry does not count.
        late.approvals.push(approval(
            &key,
            &req,
            &late.action,
            "a1",
            "alice",
            &[],
            ApprovalDecision::Approve,
            "2026-01-01T10:16:00Z",
        ));
        late.approvals.push(approval(
            &key,
            &req,
            &late.action,
            "a2",
            "bob",
            &["leads"],
            ApprovalDecision::Approve,
            "2026-01-01T10:16:00Z",
        ));
        late.now = ts("2026-01-01T10:17:00Z");
        assert_eq!(run(&late, &req, &key).decision, Decision::Expired);
    }

    #[test]
    fn approvals_that_do_not_count() {
        let key = Key::new(b"k");
        let req = request(&key, "alice");
        let mut c = case(Tier::Supervised, Risk::Medium);
        c.agent.spec.approvers.min_approvals = 1;
        let forged = {
            let mut a = approval(
                &key,
                &req,
                &c.action,
                "forged",
                "bob",
                &["leads"],
                ApprovalDecision::Approve,
                "2026-01-01T10:00:10Z",
            );
            a.spec.signature = Key::new(b"attacker").sign("x");
            a
        };
        let unsigned = {
            let mut a = approval(
                &key,
                &req,
                &c.action,
                "unsigned",
                "bob",
                &["leads"],
                ApprovalDecision::Approve,
                "2026-01-01T10:00:10Z",
            );
            a.spec.signature.clear();
            a
        };
        let other_request = {
            let mut a = approval(
                &key,
                &req,
                &c.action,
                "other",
                "bob",
                &["leads"],
                ApprovalDecision::Approve,
                "2026-01-01T10:00:10Z",
            );
            a.spec.bound_to = signature::bound_to_request("other-uid", "x");
            a.spec.signature = key.sign(&signature::approval_message(NS, &a.name_any(), &a.spec));
            a
        };
        c.approvals = vec![
            forged,
            unsigned,
            other_request,
            approval(&key, &req, &c.action, "self", "alice", &[], ApprovalDecision::Approve, "2026-01-01T10:00:10Z"),
            approval(
                &key,
                &req,
                &c.action,
                "sa",
                "system:serviceaccount:agents:x",
                &["system:serviceaccounts", "leads"],
                ApprovalDecision::Approve,
                "2026-01-01T10:00:10Z",
            ),
            approval(
                &key,
                &req,
                &c.action,
                "analyst",
                "dave",
                &["analysts"],
                ApprovalDecision::Approve,
                "2026-01-01T10:00:10Z",
            ),
        ];
        let v = run(&c, &req, &key);
        assert_eq!(v.decision, Decision::Pending);
        let why = |name: &str| v.ignored.iter().find(|(n, _)| n == name).map(|(_, w)| w.clone()).unwrap_or_default();
        assert_eq!(v.ignored.len(), 6, "{:?}", v.ignored);
        assert!(why("forged").contains("not stamped"));
        assert!(why("unsigned").contains("not stamped"));
        assert!(why("other").contains("bound to another request"));
        assert!(why("self").contains("requested this action"));
        assert!(why("sa").contains("is a ServiceAccount"));
        assert!(why("analyst").contains("dave is not an approver"));
    }

    #[test]
    fn deterministic_refusals_come_first() {
        let key = Key::new(b"k");
        let sa = "system:serviceaccount:agents:warden-bot";
        let base = request(&key, sa);
        let c = case(Tier::Autonomous, Risk::Low);

        let mut tampered = base.clone();
        tampered.spec.target.name = "web-2".into();
        assert_eq!(run(&c, &tampered, &key).reason, Reason::NotStamped);

        let resign = |mut r: ActionRequest| {
            r.spec.signature = key.sign(&signature::request_message(NS, &r.name_any(), &r.spec));
            r
        };
        let mut r = base.clone();
        r.spec.action = "block".into();
        assert_eq!(run(&c, &resign(r), &key).reason, Reason::ActionNotAllowed);
        let mut r = base.clone();
        r.spec.target.namespace = Some("kube-system".into());
        assert_eq!(run(&c, &resign(r), &key).reason, Reason::OutOfScope);
        let mut r = base.clone();
        r.spec.parameters.insert("x".into(), serde_json::json!(1));
        assert_eq!(run(&c, &resign(r), &key).reason, Reason::InvalidParameters);
        let mut unrenderable = case(Tier::Autonomous, Risk::Low);
        unrenderable.action.execution = Some(socwarden_api::Execution {
            manifest: Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"x-${note}\"}\n".into()),
            http: None,
        });
        let v = run(&unrenderable, &base, &key);
        assert_eq!(v.reason, Reason::InvalidParameters);
        assert!(v.message.contains("cannot be rendered with these parameters: no value for ${note}"), "{}", v.message);
        let mut r = base.clone();
        r.spec.requester = "system:serviceaccount:agents:warden-other".into();
        assert_eq!(run(&c, &resign(r), &key).reason, Reason::ForeignServiceAccount);

        let mut p = case(Tier::Autonomous, Risk::Low);
        p.action.protected_targets =
            vec![TargetSelector { kind: Some("Pod".into()), name: Some("web-1".into()), ..Default::default() }];
        assert_eq!(run(&p, &base, &key).reason, Reason::ProtectedTarget);

        let mut outside = case(Tier::Autonomous, Risk::Low);
        outside.unexecutable = vec!["rbac.authorization.k8s.io/v1 RoleBinding is never executable".into()];
        let v = run(&outside, &base, &key);
        assert_eq!((v.decision, v.reason), (Decision::Rejected, Reason::NotExecutable));
        assert!(v.message.contains("SocAction isolate may not be executed: rbac"), "{}", v.message);

        let mut reaching = case(Tier::Autonomous, Risk::Low);
        reaching.action.protected_targets =
            vec![TargetSelector { kind: Some("Pod".into()), name_pattern: Some("dc-.*".into()), ..Default::default() }];
        reaching.effect = vec![EffectObject {
            kind: "Pod".into(),
            namespace: Some("web".into()),
            name: "dc-1".into(),
            via: "selected by NetworkPolicy isolate-dc".into(),
        }];
        let v = run(&reaching, &base, &key);
        assert_eq!((v.decision, v.reason), (Decision::Rejected, Reason::ProtectedTarget));
        assert!(
            v.message.starts_with("its effect reaches Pod web/dc-1 (selected by NetworkPolicy isolate-dc)"),
            "{}",
            v.message
        );
        assert_eq!(v.effect, reaching.effect, "the effect is shown on the refusal too");

        let mut paused = case(Tier::Autonomous, Risk::Low);
        paused.agent.status.as_mut().unwrap().phase = Some(Phase::Paused);
        assert_eq!(run(&paused, &base, &key).reason, Reason::AgentPaused);
    }

    #[test]
    fn budgets_over_the_last_hour() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let mut c = case(Tier::Autonomous, Risk::Low);
        c.action.limits = Some(Limits { max_executions_per_hour: Some(2), max_targets_per_hour: Some(2) });
        let past = |at: &str, d: Decision, t: &str| Past {
            decided_at: ts(at),
            decision: d,
            targets: vec![format!("Pod/web/{t}")],
        };
        c.past = vec![
            past("2026-01-01T09:30:00Z", Decision::AutoApproved, "a"),
            past("2026-01-01T09:40:00Z", Decision::Rejected, "b"),
        ];
        assert_eq!(run(&c, &req, &key).decision, Decision::AutoApproved);
        c.past.push(past("2026-01-01T09:50:00Z", Decision::Approved, "web-1"));
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.reason), (Decision::Rejected, Reason::BudgetExceeded));
        assert!(v.message.contains("2 executions"), "{}", v.message);
        // Older than an hour: forgotten.
        c.past = vec![
            past("2026-01-01T08:59:00Z", Decision::AutoApproved, "a"),
            past("2026-01-01T09:00:00Z", Decision::AutoApproved, "b"),
        ];
        assert_eq!(run(&c, &req, &key).decision, Decision::AutoApproved);
        // Distinct targets.
        c.action.limits = Some(Limits { max_executions_per_hour: None, max_targets_per_hour: Some(2) });
        c.past = vec![
            past("2026-01-01T09:30:00Z", Decision::AutoApproved, "a"),
            past("2026-01-01T09:31:00Z", Decision::AutoApproved, "b"),
        ];
        assert!(run(&c, &req, &key).message.contains("3 distinct targets"));
        c.past = vec![
            past("2026-01-01T09:30:00Z", Decision::AutoApproved, "web-1"),
            past("2026-01-01T09:31:00Z", Decision::AutoApproved, "a"),
        ];
        assert_eq!(run(&c, &req, &key).decision, Decision::AutoApproved, "the same target again is not a new one");
    }

    #[test]
    fn target_budgets_count_the_effect_and_nothing_is_taken_over() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let pod = |name: &str, via: &str| EffectObject {
            kind: "Pod".into(),
            namespace: Some("web".into()),
            name: name.into(),
            via: via.into(),
        };
        let mut c = case(Tier::Autonomous, Risk::Low);
        c.action.limits = Some(Limits { max_executions_per_hour: None, max_targets_per_hour: Some(2) });
        // One request whose selector reaches three pods is three targets, not one.
        c.effect = vec![
            pod("db-1", "selected by NetworkPolicy isolate-db"),
            pod("db-2", "selected by NetworkPolicy isolate-db"),
        ];
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.reason), (Decision::Rejected, Reason::BudgetExceeded));
        assert!(v.message.contains("3 distinct targets"), "{}", v.message);
        // What it writes to do so is not a target.
        c.effect = vec![EffectObject { kind: "NetworkPolicy".into(), via: "written".into(), ..pod("isolate-db", "") }];
        assert_eq!(run(&c, &req, &key).decision, Decision::AutoApproved);
        // …but it must not be another request's.
        c.applied_by_others =
            vec![Applied { request: "approved".into(), object: "NetworkPolicy web/isolate-db".into() }];
        let v = run(&c, &req, &key);
        assert_eq!((v.decision, v.reason), (Decision::Rejected, Reason::TakeOver));
        assert!(
            v.message.contains("would take over NetworkPolicy web/isolate-db, which request approved applied"),
            "{}",
            v.message
        );
    }

    #[test]
    fn arbitrary_requests_and_approvals_always_get_a_verdict_with_a_reason() {
        use crate::testing::{Rng, random_value};
        let key = Key::new(b"k");
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let base = request(&key, "system:serviceaccount:agents:warden-bot");
        let schema = vec![socwarden_api::ParameterSpec {
            required: false,
            pattern: Some("[a-z0-9-]+".into()),
            ..socwarden_api::ParameterSpec::new("pod", socwarden_api::ParameterType::String)
        }];
        for i in 0..3000 {
            let mut r = base.clone();
            for _ in 0..rng.below(3) {
                r.spec.parameters.insert(["pod", "x", ""][rng.below(3)].into(), random_value(&mut rng, 0));
            }
            if rng.below(3) == 0 {
                r.spec.target.namespace = [None, Some("web".to_string()), Some("".to_string())][rng.below(3)].clone();
            }
            if rng.below(2) == 0 {
                r.spec.signature = key.sign(&signature::request_message(NS, &r.name_any(), &r.spec));
            }
            let tier = Tier::ALL[rng.below(4)];
            let risk = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical][rng.below(4)];
            let mut c = case(tier, risk);
            c.action.parameters = schema.clone();
            c.now = Timestamp::from_second(1_767_261_600 + rng.below(4000) as i64).unwrap();
            for j in 0..rng.below(4) {
                let d = if rng.below(4) == 0 { ApprovalDecision::Deny } else { ApprovalDecision::Approve };
                let mut a = approval(
                    &key,
                    &r,
                    &c.action,
                    &format!("a{j}"),
                    ["alice", "bob", "", "system:serviceaccount:x:y"][rng.below(4)],
                    &["leads"],
                    d,
                    "2026-01-01T10:00:30Z",
                );
                if rng.below(3) == 0 {
                    a.spec.signature = format!("{:x}", rng.next_u64());
                }
                c.approvals.push(a);
            }
            let v = run(&c, &r, &key);
            assert!(!v.message.is_empty(), "case {i}: a verdict without a reason");
            if v.decision == Decision::Approved {
                assert!(v.approvals.len() as u32 >= v.required.unwrap_or(1), "case {i}: approved short of quorum");
                assert!(
                    v.approvals
                        .iter()
                        .all(|a| a.approver != r.spec.requester && !a.approver.starts_with("system:serviceaccount:"))
                );
            }
        }
    }

    #[test]
    fn an_unreconciled_agent_defers_the_decision() {
        let key = Key::new(b"k");
        let req = request(&key, "system:serviceaccount:agents:warden-bot");
        let mut c = case(Tier::Autonomous, Risk::Low);
        c.agent.status = None;
        let approvals: Vec<&Approval> = vec![];
        let i = Inputs {
            request: &req,
            key: &key,
            kinds: &Kinds::builtin(),
            agent: Some(&c.agent),
            action: Some(&c.action),
            unexecutable: &c.unexecutable,
            effect: &c.effect,
            applied_by_others: &c.applied_by_others,
            previous: c.previous.as_ref(),
            policy: Some(&c.policy),
            approvals: &approvals,
            past: &[],
            now: c.now,
        };
        assert!(decide(&i).is_none());
    }

    #[test]
    fn the_status_records_the_decision_and_a_running_execution_before_anything_runs() {
        let spec = ActionRequestSpec { agent: "bot".into(), action: "isolate".into(), ..Default::default() };
        let now = ts("2026-01-01T10:00:00Z");
        let manifest = socwarden_api::Execution { manifest: Some("kind: NetworkPolicy".into()), http: None };
        let prev = ActionRequestStatus::default();
        let pending = status(
            &Verdict::new(Decision::Pending, Reason::AwaitingApproval, "waits"),
            &spec,
            None,
            Some(&manifest),
            &prev,
            now,
        );
        assert_eq!((pending.decided_at, pending.execution), (None, None), "nothing decided, nothing runs");
        let auto = Verdict::new(Decision::AutoApproved, Reason::Autonomous, "low risk");
        let s = status(&auto, &spec, Some("default@1".into()), Some(&manifest), &prev, now);
        assert_eq!(s.decided_at.as_deref(), Some("2026-01-01T10:00:00Z"));
        assert_eq!(s.execution.and_then(|e| e.state), Some(ExecutionState::Running));
        assert_eq!(s.policy.as_deref(), Some("default@1"));
        let by_agent = status(&auto, &spec, None, None, &prev, now);
        assert_eq!(by_agent.execution, None);
        assert!(by_agent.message.ends_with("carried out by the agent with its own grants"), "{}", by_agent.message);
        let denied = status(
            &Verdict::new(Decision::Denied, Reason::Denied, "denied by alice"),
            &spec,
            None,
            Some(&manifest),
            &prev,
            now,
        );
        assert_eq!((denied.execution, denied.message.as_str()), (None, "denied by alice"), "a denial never runs");
    }
}
