//! What an agent should have right now, and the status that says so. Pure: the reconciler looks
//! up the inputs, calls `plan`, applies the result, then calls `status`.

use crate::agent::credentials;
use crate::agent::pause::{self, PauseReason};
use crate::agent::policy;
use crate::agent::promotion;
use crate::agent::rbac::{self, Rule};
use crate::agent::validate::{self, Inputs, Problem};
use jiff::Timestamp;
use socwarden_api::conditions::{self, reason};
use socwarden_api::{CredentialStatus, Phase, PromotionStatus, ShadowStatus, SocActionSpec, SocAgentStatus, Tier};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct TokenPlan {
    pub ttl: Duration,
    pub audiences: Vec<String>,
    /// Recorded on the Secret; a different value re-issues the token.
    pub spec: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub problems: Vec<Problem>,
    pub pause: Option<PauseReason>,
    pub effective_tier: Tier,
    pub autonomous: Vec<String>,
    pub gated: Vec<String>,
    /// The Role per namespace. `None`: the agent gets no objects at all (its name is unusable).
    pub roles: Option<BTreeMap<String, Vec<Rule>>>,
    /// The token to hold. `None`: no token (paused, or the lifetime is invalid).
    pub token: Option<TokenPlan>,
    /// While a promotion waits: each rule, met or what it misses.
    pub promotion: Option<PromotionStatus>,
    /// Whether the effective tier changes with this plan.
    pub tier_changed: bool,
    /// Shadow evidence for the next tier.
    pub shadow: Option<ShadowStatus>,
    pub monitoring: Monitoring,
}

impl Plan {
    pub fn valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The tier to enforce, as decided by `promotion::evaluate`, and the shadow evidence for the next.
#[derive(Clone, Debug, PartialEq)]
pub struct TierDecision {
    pub outcome: promotion::Outcome,
    pub shadow: Option<ShadowStatus>,
}

impl TierDecision {
    /// The declared tier, enforced as is (no promotion machinery involved).
    pub fn declared(tier: Tier) -> Self {
        Self {
            outcome: promotion::Outcome { effective: tier, changed: false, checklist: None, approvers: vec![] },
            shadow: None,
        }
    }
}

/// What behaviour monitoring says about the agent (see `monitor`, `drift`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Monitoring {
    /// A drift pause holds (decided now, or recorded and not lifted).
    pub drift_paused: bool,
    /// A valid resume approval lifts the recorded drift pause now (its approver).
    pub resumed_by: Option<String>,
    /// The assessment that paused it (named in the Paused condition); shown in the DriftReport.
    pub drift: Option<socwarden_api::DriftStatus>,
}

/// Decides grants, token and pause for one agent. An invalid spec fails closed: the agent keeps
/// only the base rules (it can still read its SocAgent and see why) until the spec is fixed.
pub fn plan(i: &Inputs, kill_switch: Option<&str>, tier: &TierDecision, watch: &Monitoring) -> Plan {
    let problems = validate::agent(i);
    let pause = pause::decide(i.spec.paused, kill_switch, watch.drift_paused);
    let effective_tier = tier.outcome.effective;

    let (mut autonomous, mut gated) = (Vec::new(), Vec::new());
    let mut grants = Vec::new();
    if let Some(pol) = i.policy {
        for name in &i.spec.actions {
            let Some(action) = i.actions.get(name) else {
                continue;
            };
            if policy::runs_alone(pol, effective_tier, action.risk) {
                autonomous.push(name.clone());
                grants.extend(action.grants.iter().cloned());
            } else {
                gated.push(name.clone());
            }
        }
    }
    if !problems.is_empty() {
        grants.clear();
    }

    // An agent the audit sink cannot see gets nothing at all, not even its base rights: no
    // ServiceAccount, Role or token is written where it stands (`unseen`: what it had is revoked).
    let unseen = validate::namespace_problem(i.namespace, i.unobserved).is_some();
    let roles = (validate::name_problem(i.name).is_none() && !unseen)
        .then(|| rbac::desired_roles(i.name, i.namespace, &i.spec.scope.namespaces, &grants));
    let token = match (pause, &roles, validate::ttl(i.spec)) {
        (None, Some(_), Ok(ttl)) if i.malformed.is_none() => Some(TokenPlan {
            ttl,
            audiences: credentials::audiences(&i.spec.credentials.audiences),
            spec: credentials::token_spec(ttl, &credentials::audiences(&i.spec.credentials.audiences)),
        }),
        _ => None,
    };
    Plan {
        problems,
        pause,
        effective_tier,
        autonomous,
        gated,
        roles,
        token,
        promotion: tier.outcome.checklist.clone(),
        tier_changed: tier.outcome.changed,
        shadow: tier.shadow.clone(),
        monitoring: watch.clone(),
    }
}

/// What the reconciler achieved, fed back into the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The token now held, if any.
    pub token: Option<credentials::IssuedToken>,
}

/// One condition's verdict: whether it holds, its reason and its message.
type Verdict = (bool, &'static str, String);

/// The status an agent should show after `plan` was applied. Conditions keep their transition
/// times when nothing changed, so a no-op reconcile produces an identical status.
pub fn status(
    name: &str,
    generation: Option<i64>,
    plan: &Plan,
    applied: &Applied,
    previous: Option<&SocAgentStatus>,
    now: Timestamp,
) -> SocAgentStatus {
    let phase = phase(plan, applied.token.is_some());
    let pause = plan.pause.map(|r| pause::record(r, previous.and_then(|s| s.pause.as_ref()), now));
    let mut conds = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    for (type_, (ok, reason, message)) in [
        (conditions::INVALID_SPEC, invalid_spec(plan)),
        (conditions::PAUSED, paused(plan, pause.as_ref(), previous)),
        (conditions::CREDENTIALS_ISSUED, credentials_issued(name, plan, applied)),
        (conditions::PROMOTION_PENDING, promotion_pending(plan)),
        (conditions::READY, ready(plan, phase)),
    ] {
        let c = socwarden_api::Condition {
            type_: type_.to_string(),
            status: conditions::status_str(ok).to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now.to_string(),
            observed_generation: generation,
        };
        conditions::set(&mut conds, c);
    }
    let (last_drift_pause, resumed_at) = drift_pause_history(plan, previous, now);
    SocAgentStatus {
        phase: Some(phase),
        effective_tier: Some(plan.effective_tier),
        tier_since: Some(tier_since(plan, previous, now)),
        shadow: plan.shadow.clone(),
        promotion: plan.promotion.clone(),
        conditions: conds,
        credentials: plan.roles.as_ref().map(|_| CredentialStatus {
            service_account: credentials::service_account_name(name),
            secret_name: credentials::secret_name(name),
            issued_at: applied.token.as_ref().map(|t| t.issued_at.to_string()),
            expires_at: applied.token.as_ref().map(|t| t.expires_at.to_string()),
            credential_id: applied.token.as_ref().and_then(|t| t.id).map(|i| i.to_string()),
        }),
        pause,
        autonomous_actions: if plan.valid() { plan.autonomous.clone() } else { Vec::new() },
        gated_actions: plan.gated.clone(),
        observed_generation: generation,
        last_drift_pause,
        resumed_at,
    }
}

/// Paused wins, then an invalid spec; otherwise Active once a token is held.
fn phase(plan: &Plan, issued: bool) -> Phase {
    match (&plan.pause, plan.valid(), issued) {
        (Some(_), _, _) => Phase::Paused,
        (None, false, _) => Phase::Error,
        (None, true, true) => Phase::Active,
        (None, true, false) => Phase::Pending,
    }
}

fn invalid_spec(plan: &Plan) -> Verdict {
    match &plan.problems[..] {
        [] => (false, reason::VALID, "the spec is valid".into()),
        [first, ..] => (
            true,
            first.reason,
            format!(
                "{}. Until this is fixed the agent holds no action grants.",
                plan.problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
            ),
        ),
    }
}

/// While a pause holds (same id), its condition keeps saying what caused it: the assessment that
/// contained the agent, not whatever the model says later.
fn paused(plan: &Plan, pause: Option<&socwarden_api::PauseStatus>, previous: Option<&SocAgentStatus>) -> Verdict {
    let held = |p: &socwarden_api::PauseStatus, reason: &str| {
        let before = previous?;
        let same = before.pause.as_ref().is_some_and(|b| b.id == p.id);
        let c = conditions::find(&before.conditions, conditions::PAUSED)?;
        (same && c.status == "True" && c.reason == reason).then(|| c.message.clone())
    };
    match (plan.pause, pause) {
        (Some(r), Some(p)) => {
            let message =
                held(p, r.as_str()).unwrap_or_else(|| pause_message(r, &p.id, plan.monitoring.drift.as_ref()));
            (true, r.as_str(), message)
        }
        _ => (false, reason::NOT_PAUSED, "the agent is not paused".into()),
    }
}

fn credentials_issued(name: &str, plan: &Plan, applied: &Applied) -> Verdict {
    match (&applied.token, plan.pause) {
        (Some(t), _) => (
            true,
            reason::ISSUED,
            format!("token in Secret {} expires at {}", credentials::secret_name(name), t.expires_at),
        ),
        (None, Some(_)) => (
            false,
            reason::REVOKED,
            "RoleBindings deleted (the ServiceAccount is authorized for nothing) and the token Secret deleted (every token SOC Warden issued is dead)".into(),
        ),
        (None, None) => match plan.problems.first() {
            Some(p) if plan.token.is_none() => (false, p.reason, p.message.clone()),
            _ => (false, "Pending", "the token has not been issued yet".to_string()),
        },
    }
}

pub fn signals_in_words(d: &socwarden_api::DriftStatus) -> String {
    let signals: Vec<String> =
        d.signals.iter().map(|s| format!("{}: {} (expected {})", s.signal, s.observed, s.expected)).collect();
    signals.join("; ")
}

fn promotion_pending(plan: &Plan) -> Verdict {
    match &plan.promotion {
        Some(p) => (true, reason::AWAITING_EVIDENCE, promotion::waiting(plan.effective_tier, p)),
        None => (false, reason::NONE_PENDING, format!("tier {} is enforced", plan.effective_tier)),
    }
}

fn ready(plan: &Plan, phase: Phase) -> Verdict {
    let (reason, message) = match phase {
        Phase::Active => (
            reason::RECONCILED,
            format!(
                "{} action(s) run without approval at tier {}, {} need approval",
                plan.autonomous.len(),
                plan.effective_tier,
                plan.gated.len()
            ),
        ),
        Phase::Paused => ("Paused", "the agent is paused; see the Paused condition".to_string()),
        Phase::Error => (
            plan.problems.first().map(|p| p.reason).unwrap_or(reason::INVALID_SPEC),
            "the spec is invalid; see the InvalidSpec condition".to_string(),
        ),
        Phase::Pending => ("Pending", "credentials are being issued".to_string()),
    };
    (phase == Phase::Active, reason, message)
}

/// (lastDriftPause, resumedAt): set when an approver lifts a drift pause, kept otherwise. The
/// promotion's clean window and cooling-off are measured from them.
fn drift_pause_history(
    plan: &Plan,
    previous: Option<&SocAgentStatus>,
    now: Timestamp,
) -> (Option<String>, Option<String>) {
    match (&plan.monitoring.resumed_by, previous) {
        (Some(_), Some(prev)) => (prev.pause.as_ref().map(|p| p.since.clone()), Some(now.to_string())),
        (_, prev) => (prev.and_then(|s| s.last_drift_pause.clone()), prev.and_then(|s| s.resumed_at.clone())),
    }
}

/// When the agent reached its effective tier: kept while the tier holds.
fn tier_since(plan: &Plan, previous: Option<&SocAgentStatus>, now: Timestamp) -> String {
    match previous.and_then(|s| s.tier_since.clone()) {
        Some(t) if !plan.tier_changed && previous.and_then(|s| s.effective_tier) == Some(plan.effective_tier) => t,
        _ => now.to_string(),
    }
}

fn pause_message(r: PauseReason, id: &str, drift: Option<&socwarden_api::DriftStatus>) -> String {
    match r {
        PauseReason::Drift => {
            let why = drift
                .map(|d| format!("drift score {:.2} ≥ {:.2} — {}", d.score, d.threshold, signals_in_words(d)))
                .unwrap_or_else(|| "drift from the baseline".into());
            format!(
                "paused for drift ({why}): RoleBindings deleted, token revoked, workload scaled to zero; an approver resumes it with an Approval whose spec.resume is {{agent, pauseId: {id}}}"
            )
        }
        PauseReason::Manual => {
            "paused by spec.paused: credentials revoked and workload scaled to zero; set spec.paused to false to resume with a fresh token".into()
        }
        PauseReason::KillSwitch => {
            "paused by the kill switch (killSwitch: true on an AutonomyPolicy): credentials revoked and workload scaled to zero; every agent resumes when it is set back to false".into()
        }
    }
}

/// The actions (by name) a plan needs, looked up by the reconciler.
pub fn wanted_actions(
    actions: &[String],
    lookup: impl Fn(&str) -> Option<SocActionSpec>,
) -> BTreeMap<String, SocActionSpec> {
    actions.iter().filter_map(|n| lookup(n).map(|a| (n.clone(), a))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::action;
    use socwarden_api::{AutonomyPolicySpec, Risk, Scope, SocAgentSpec};

    struct Fixture {
        spec: SocAgentSpec,
        actions: BTreeMap<String, SocActionSpec>,
        policy: Option<AutonomyPolicySpec>,
        delegable: Vec<Rule>,
    }

    impl Fixture {
        fn new(tier: Tier) -> Self {
            Self {
                spec: SocAgentSpec {
                    tier,
                    actions: vec!["read-pods".into(), "read-services".into()],
                    scope: Scope { namespaces: vec!["web".into()] },
                    policy_ref: "default".into(),
                    ..Default::default()
                },
                actions: BTreeMap::from([
                    ("read-pods".to_string(), action(Risk::Low, "pods")),
                    ("read-services".to_string(), action(Risk::Medium, "services")),
                ]),
                policy: Some(AutonomyPolicySpec::default()),
                delegable: rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap(),
            }
        }
        fn plan(&self, kill: Option<&str>) -> Plan {
            let i = Inputs {
                name: "bot",
                namespace: "agents",
                spec: &self.spec,
                actions: &self.actions,
                policy: self.policy.as_ref(),
                delegable: &self.delegable,
                workload_exists: None,
                malformed: None,
                unobserved: &std::collections::BTreeSet::new(),
            };
            plan(&i, kill, &TierDecision::declared(self.spec.tier), &Monitoring::default())
        }
    }

    fn resources(p: &Plan, ns: &str) -> Vec<String> {
        p.roles.as_ref().unwrap()[ns].iter().flat_map(|r| r.resources.clone()).collect()
    }

    #[test]
    fn grants_follow_the_tier() {
        let table = [
            (Tier::Observe, vec![], vec!["read-pods", "read-services"]),
            (Tier::Assist, vec![], vec!["read-pods", "read-services"]),
            (Tier::Supervised, vec!["read-pods"], vec!["read-services"]),
            (Tier::Autonomous, vec!["read-pods", "read-services"], vec![]),
        ];
        for (tier, auto, gated) in table {
            let p = Fixture::new(tier).plan(None);
            assert_eq!(p.autonomous, auto, "{tier}");
            assert_eq!(p.gated, gated, "{tier}");
            let want: Vec<String> = auto.iter().map(|a| a.trim_start_matches("read-").to_string()).collect();
            assert_eq!(resources(&p, "web"), want, "{tier}");
            assert!(p.token.is_some());
        }
    }

    #[test]
    fn invalid_spec_fails_closed_but_keeps_base_rules() {
        let mut f = Fixture::new(Tier::Autonomous);
        f.spec.actions.push("no-such-action".into());
        let p = f.plan(None);
        assert!(!p.valid());
        assert!(resources(&p, "web").is_empty());
        assert_eq!(p.roles.as_ref().unwrap()["agents"], rbac::base_rules("bot"));
        assert!(p.token.is_some(), "the agent still gets a token for its base rules");
        let s = status("bot", Some(1), &p, &Applied::default(), None, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase, Some(Phase::Error));
        assert!(s.autonomous_actions.is_empty());
        let c = conditions::find(&s.conditions, conditions::INVALID_SPEC).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason::UNKNOWN_ACTION));
        assert!(c.message.contains("no-such-action"));
    }

    #[test]
    fn missing_policy_fails_closed() {
        let mut f = Fixture::new(Tier::Autonomous);
        f.policy = None;
        let p = f.plan(None);
        assert!(resources(&p, "web").is_empty());
        assert_eq!(p.problems[0].reason, reason::POLICY_NOT_FOUND);
    }

    #[test]
    fn pause_holds_no_token_and_says_why() {
        let mut f = Fixture::new(Tier::Supervised);
        f.spec.paused = true;
        let p = f.plan(None);
        assert_eq!(p.pause, Some(PauseReason::Manual));
        assert!(p.token.is_none());
        let s = status("bot", Some(2), &p, &Applied::default(), None, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase, Some(Phase::Paused));
        assert_eq!(s.pause.as_ref().unwrap().reason, "Manual");
        assert!(!conditions::is_true(&s.conditions, conditions::READY));
        assert_eq!(conditions::find(&s.conditions, conditions::CREDENTIALS_ISSUED).unwrap().reason, reason::REVOKED);

        let k = Fixture::new(Tier::Supervised).plan(Some("default"));
        assert_eq!(k.pause, Some(PauseReason::KillSwitch));
    }

    #[test]
    fn long_names_get_nothing() {
        let f = Fixture::new(Tier::Supervised);
        let long = "x".repeat(64);
        let i = Inputs {
            name: &long,
            namespace: "agents",
            spec: &f.spec,
            actions: &f.actions,
            policy: f.policy.as_ref(),
            delegable: &f.delegable,
            workload_exists: None,
            malformed: None,
            unobserved: &std::collections::BTreeSet::new(),
        };
        let p = plan(&i, None, &TierDecision::declared(f.spec.tier), &Monitoring::default());
        assert!(p.roles.is_none() && p.token.is_none());
    }

    /// Declared where the audit sink cannot see it (the webhook bypassed): no grants, no token.
    #[test]
    fn an_agent_in_an_unaudited_namespace_gets_nothing() {
        let f = Fixture::new(Tier::Autonomous);
        let unobserved = crate::agent::validate::unobserved("soc-warden-system", &[]);
        for (ns, refused) in [("kube-system", true), ("soc-warden-system", true), ("agents", false)] {
            let i = Inputs {
                name: "bot",
                namespace: ns,
                spec: &f.spec,
                actions: &f.actions,
                policy: f.policy.as_ref(),
                delegable: &f.delegable,
                workload_exists: None,
                malformed: None,
                unobserved: &unobserved,
            };
            let p = plan(&i, None, &TierDecision::declared(f.spec.tier), &Monitoring::default());
            assert_eq!(p.token.is_none(), refused, "{ns}: token");
            assert_eq!(p.roles.is_none(), refused, "{ns}: not even the base rights");
            assert_eq!(
                p.problems.iter().any(|p| p.reason == socwarden_api::conditions::reason::UNOBSERVED_NAMESPACE),
                refused,
                "{ns}: problem"
            );
        }
    }

    #[test]
    fn a_second_identical_status_is_identical() {
        let f = Fixture::new(Tier::Supervised);
        let p = f.plan(None);
        let t: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let applied = Applied {
            token: Some(credentials::IssuedToken {
                issued_at: t,
                expires_at: t,
                spec: p.token.as_ref().unwrap().spec.clone(),
                id: None,
            }),
        };
        let s1 = status("bot", Some(1), &p, &applied, None, t);
        assert_eq!(s1.phase, Some(Phase::Active));
        assert!(conditions::is_true(&s1.conditions, conditions::READY));
        let later: Timestamp = "2026-01-01T11:00:00Z".parse().unwrap();
        let s2 = status("bot", Some(1), &p, &applied, Some(&s1), later);
        assert_eq!(s1, s2);
    }
}
