//! Which tier is enforced: a lower `spec.tier` at once; a higher one only one step at a time, and
//! only when dwell time, a clean record, the approvers and the shadow evidence all agree. Pure.

use crate::admission::approvals::{self, Subject};
use crate::admission::signature::Key;
use crate::agent::policy;
use jiff::{SignedDuration, Timestamp};
use socwarden_api::AutonomyPolicySpec;
use socwarden_api::duration;
use socwarden_api::{
    Approval, CarriedEvidence, Decision, PromotionCheck, PromotionRule, PromotionRules, PromotionStatus, Risk,
    ShadowStatus, SocAgent, Tier,
};

/// A past decision of the agent, for the shadow evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    /// The tier the agent had when the request was decided.
    pub tier: Tier,
    pub risk: Risk,
    pub decision: Decision,
    pub decided_at: Timestamp,
}

/// Whether a past decision is shadow evidence at tier `current` for `next`, counting from
/// `since`: a human decision on a request `current` did not run alone and `next` would have.
/// `Some(true)` when it approved (agreed with running it), `Some(false)` when it denied.
pub fn vote(d: &Decided, current: Tier, next: Tier, policy: &AutonomyPolicySpec, since: Timestamp) -> Option<bool> {
    let shadowed = d.tier == current
        && d.decided_at >= since
        && !policy::runs_alone(policy, current, d.risk)
        && policy::runs_alone(policy, next, d.risk);
    match d.decision {
        Decision::Approved if shadowed => Some(true),
        Decision::Denied if shadowed => Some(false),
        _ => None,
    }
}

/// The shadow evidence for `next` at tier `current` (held since `since`): the carried part of
/// `previous` (counted before; retention may have deleted those requests) plus the decisions in
/// `history` after it. Decisions whose requests retention may delete now (`due`) join the carried
/// part, with every decision before them, so that deleting them loses nothing: the evidence lives
/// in the agent's status as counters, not in the requests.
pub fn shadow(
    history: &[Decided],
    current: Tier,
    next: Tier,
    policy: &AutonomyPolicySpec,
    since: Timestamp,
    previous: Option<&ShadowStatus>,
    due: impl Fn(&Decided) -> bool,
) -> ShadowStatus {
    let carried = previous
        .filter(|p| p.tier == Some(next))
        .and_then(|p| p.carried.as_ref())
        .filter(|c| c.since.parse::<Timestamp>().ok() == Some(since))
        .and_then(|c| Some((c.through.parse::<Timestamp>().ok()?, c.decisions, c.agreed)));
    let (mut through, mut decisions, mut agreed) = match carried {
        Some((t, d, a)) => (Some(t), d, a),
        None => (None, 0, 0),
    };
    let votes: Vec<(&Decided, bool)> =
        history.iter().filter_map(|d| Some((d, vote(d, current, next, policy, since)?))).collect();
    let after = |d: &Decided, through: Option<Timestamp>| through.is_none_or(|t| d.decided_at > t);
    let newly_due = votes.iter().filter(|(d, _)| after(d, through) && due(d)).map(|(d, _)| d.decided_at).max();
    if let Some(t) = newly_due {
        for (_, agree) in votes.iter().filter(|(d, _)| after(d, through) && d.decided_at <= t) {
            decisions += 1;
            agreed += u32::from(*agree);
        }
        through = Some(t);
    }
    let carried =
        through.map(|t| CarriedEvidence { since: since.to_string(), through: t.to_string(), decisions, agreed });
    for (_, agree) in votes.iter().filter(|(d, _)| after(d, through)) {
        decisions += 1;
        agreed += u32::from(*agree);
    }
    ShadowStatus { tier: Some(next), decisions, agreed, carried }
}

/// Whether decision `d` is already counted in the carried part of `shadow` (so its request may go).
pub fn carried(shadow: Option<&ShadowStatus>, d: &Decided) -> bool {
    shadow
        .and_then(|s| s.carried.as_ref())
        .and_then(|c| c.through.parse::<Timestamp>().ok())
        .is_some_and(|t| d.decided_at <= t)
}

pub struct Inputs<'a> {
    pub agent: &'a SocAgent,
    /// The agent's status as last written (the cache may be behind the operator's own write).
    /// Also the drift-pause history (`lastDriftPause`, `resumedAt`) the clean window and the
    /// cooling-off are measured from: read here, so no caller can forget to pass it.
    pub status: Option<&'a socwarden_api::SocAgentStatus>,
    pub key: &'a Key,
    pub rules: &'a PromotionRules,
    /// Approvals in the agent's namespace that name a promotion of this agent.
    pub approvals: &'a [&'a Approval],
    pub shadow: &'a ShadowStatus,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The tier to enforce.
    pub effective: Tier,
    /// Whether the effective tier changes now (and so `tierSince`).
    pub changed: bool,
    /// While a promotion waits: every rule, met or not (the checklist people see).
    pub checklist: Option<PromotionStatus>,
    /// Approvers whose approval counted for a promotion that took effect.
    pub approvers: Vec<String>,
}

impl Outcome {
    /// While a promotion waits: exactly what is missing, in one sentence.
    pub fn pending(&self) -> Option<String> {
        self.checklist.as_ref().map(|list| waiting(self.effective, list))
    }
}

/// "promotion <current> → <next> waits: <what each unmet rule misses>".
pub fn waiting(current: Tier, list: &PromotionStatus) -> String {
    let missing: Vec<&str> = list.checks.iter().filter(|c| !c.met).map(|c| c.missing.as_str()).collect();
    format!("promotion {current} → {} waits: {}", list.to, missing.join("; "))
}

fn dur(s: &str, default_hours: i64) -> SignedDuration {
    duration::parse(s)
        .and_then(|d| SignedDuration::try_from(d).ok())
        .unwrap_or(SignedDuration::from_hours(default_hours))
}

fn human(d: SignedDuration) -> String {
    duration::format(std::time::Duration::from_secs(d.as_secs().max(0) as u64))
}

/// The tier to enforce. A new agent starts at its declared tier (creating it was itself the
/// reviewed change) and a demotion takes effect at once; a promotion takes one step when every
/// rule holds, and otherwise says exactly what is missing.
pub fn evaluate(i: &Inputs) -> Outcome {
    let declared = i.agent.spec.tier;
    let Some(current) = i.status.and_then(|s| s.effective_tier) else {
        return Outcome { effective: declared, changed: true, checklist: None, approvers: vec![] };
    };
    if declared <= current {
        return Outcome { effective: declared, changed: declared != current, checklist: None, approvers: vec![] };
    }
    let next = current.next().unwrap_or(current);
    let since = i.status.and_then(|s| s.tier_since.as_ref()).and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(i.now);
    // Approvals for exactly this step, given since the agent reached its current tier.
    let tally = approvals::tally(i.approvals, i.agent, &Subject::Promotion { tier: next, since }, i.key, i.now);
    let approvers = tally.approvers();
    let checks: Vec<PromotionCheck> = [
        (PromotionRule::OneStep, one_step(current, next, declared)),
        (PromotionRule::Dwell, dwell(i, current, since)),
        (PromotionRule::CleanWindow, clean_window(i)),
        (PromotionRule::CoolingOff, cooling_off(i)),
        (PromotionRule::Approvals, approved(i, next, &approvers, tally.denied.as_ref().map(|d| d.approver.as_str()))),
        (PromotionRule::ShadowEvidence, shadow_evidence(i.rules, i.shadow)),
    ]
    .into_iter()
    .map(|(rule, missing)| PromotionCheck { rule, met: missing.is_none(), missing: missing.unwrap_or_default() })
    .collect();
    if checks.iter().all(|c| c.met) {
        return Outcome { effective: next, changed: true, checklist: None, approvers };
    }
    Outcome {
        effective: current,
        changed: false,
        checklist: Some(PromotionStatus { to: next, checks }),
        approvers: vec![],
    }
}

// Each rule: what is missing for it, or `None` when it holds.

fn one_step(current: Tier, next: Tier, declared: Tier) -> Option<String> {
    (declared > next).then(|| format!("promotions go one tier at a time: {current} → {next} first, then {declared}"))
}

fn dwell(i: &Inputs, current: Tier, since: Timestamp) -> Option<String> {
    let at_tier = i.now.duration_since(since);
    (at_tier < dur(&i.rules.min_dwell, 24))
        .then(|| format!("dwell {} of {} at {current}", human(at_tier), i.rules.min_dwell))
}

fn status_time(t: Option<&String>) -> Option<Timestamp> {
    t.and_then(|t| t.parse::<Timestamp>().ok())
}

fn last_drift_pause(i: &Inputs) -> Option<Timestamp> {
    status_time(i.status.and_then(|s| s.last_drift_pause.as_ref()))
}

fn clean_window(i: &Inputs) -> Option<String> {
    let p = last_drift_pause(i)?;
    (i.now.duration_since(p) < dur(&i.rules.clean_window, 24))
        .then(|| format!("paused for drift at {p}, within the clean window of {}", i.rules.clean_window))
}

fn cooling_off(i: &Inputs) -> Option<String> {
    last_drift_pause(i)?;
    let resumed = status_time(i.status.and_then(|s| s.resumed_at.as_ref()))?;
    let cooling = dur(&i.rules.cooling_off, 72);
    (i.now.duration_since(resumed) < cooling).then(|| match resumed.checked_add(cooling) {
        Ok(until) => format!("cooling off after the drift pause until {until}"),
        Err(_) => format!("cooling off for {} after the drift pause", i.rules.cooling_off),
    })
}

fn approved(i: &Inputs, next: Tier, approvers: &[String], denied_by: Option<&str>) -> Option<String> {
    if let Some(who) = denied_by {
        return Some(format!("promotion to {next} denied by {who}"));
    }
    let need = i.agent.spec.approvers.min_approvals.max(1);
    if approvers.len() as u32 >= need {
        return None;
    }
    let a = &i.agent.spec.approvers;
    let from = match (a.users.is_empty(), a.groups.is_empty()) {
        (false, false) => format!("{} or {}", a.users.join(", "), a.groups.join(", ")),
        (false, true) => a.users.join(", "),
        (true, _) => a.groups.join(", "),
    };
    let noun = if need == 1 { "approval" } else { "approvals" };
    Some(format!("needs {need} {noun} from {from}, has {}", approvers.len()))
}

fn shadow_evidence(rules: &PromotionRules, sh: &ShadowStatus) -> Option<String> {
    let agreement = if sh.decisions == 0 { 0.0 } else { f64::from(sh.agreed) / f64::from(sh.decisions) };
    if sh.decisions < rules.min_shadow_decisions {
        Some(format!("shadow evidence: {} decisions of the {} needed", sh.decisions, rules.min_shadow_decisions))
    } else if sh.decisions > 0 && agreement < rules.min_shadow_agreement {
        Some(format!(
            "shadow agreement {agreement:.2} < {:.2} over {} decisions",
            rules.min_shadow_agreement, sh.decisions
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, ts};
    use socwarden_api::ApprovalDecision;
    use socwarden_api::{Approvers, SocAgentSpec, SocAgentStatus};

    fn agent(declared: Tier, effective: Option<Tier>, since: &str) -> SocAgent {
        let mut a = SocAgent::new(
            "bot",
            SocAgentSpec {
                tier: declared,
                approvers: Approvers { users: vec![], groups: vec!["soc-leads".into()], min_approvals: 2 },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some("agents".into());
        a.metadata.uid = Some("u1".into());
        a.status = effective.map(|t| SocAgentStatus {
            effective_tier: Some(t),
            tier_since: Some(since.into()),
            ..Default::default()
        });
        a
    }

    /// A promotion approval by `who` of soc-leads, stamped as the webhook stamps one.
    fn approval(key: &Key, who: &str, tier: Tier, d: ApprovalDecision, at: &str) -> Approval {
        let subject = Subject::Promotion { tier, since: ts(at) };
        testing::approval(key, &agent(tier, None, ""), &subject, who, &["soc-leads"], d, ts(at))
    }

    fn eval(a: &SocAgent, approvals: &[Approval], shadow: ShadowStatus, now: &str) -> Outcome {
        eval_with(a, approvals, shadow, &PromotionRules::default(), now)
    }

    fn eval_with(
        a: &SocAgent,
        approvals: &[Approval],
        shadow: ShadowStatus,
        rules: &PromotionRules,
        now: &str,
    ) -> Outcome {
        let key = Key::new(b"k");
        let refs: Vec<&Approval> = approvals.iter().collect();
        evaluate(&Inputs {
            agent: a,
            status: a.status.as_ref(),
            key: &key,
            rules,
            approvals: &refs,
            shadow: &shadow,
            now: ts(now),
        })
    }

    fn evidence(decisions: u32, agreed: u32) -> ShadowStatus {
        ShadowStatus { tier: Some(Tier::Autonomous), decisions, agreed, carried: None }
    }

    #[test]
    fn new_agents_and_demotions_take_effect_at_once() {
        let o = eval(&agent(Tier::Autonomous, None, ""), &[], evidence(0, 0), "2026-01-02T00:00:00Z");
        assert_eq!((o.effective, o.changed), (Tier::Autonomous, true));
        let o = eval(
            &agent(Tier::Assist, Some(Tier::Autonomous), "2026-01-01T00:00:00Z"),
            &[],
            evidence(0, 0),
            "2026-01-01T00:00:01Z",
        );
        assert_eq!((o.effective, o.changed, o.pending()), (Tier::Assist, true, None));
        let o = eval(
            &agent(Tier::Supervised, Some(Tier::Supervised), "2026-01-01T00:00:00Z"),
            &[],
            evidence(0, 0),
            "2026-01-03T00:00:00Z",
        );
        assert_eq!((o.effective, o.changed), (Tier::Supervised, false));
    }

    #[test]
    fn a_promotion_waits_and_says_exactly_what_is_missing() {
        let key = Key::new(b"k");
        let a = agent(Tier::Autonomous, Some(Tier::Supervised), "2026-01-01T00:00:00Z");
        let one = vec![approval(&key, "lead-a", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z")];
        let o = eval(&a, &one, evidence(20, 17), "2026-01-01T06:00:00Z");
        assert_eq!(o.effective, Tier::Supervised);
        let list = o.checklist.clone().expect("a waiting promotion carries its checklist");
        assert_eq!(list.to, Tier::Autonomous);
        let unmet: Vec<PromotionRule> = list.checks.iter().filter(|c| !c.met).map(|c| c.rule).collect();
        assert_eq!(unmet, [PromotionRule::Dwell, PromotionRule::Approvals, PromotionRule::ShadowEvidence]);
        assert_eq!(list.checks.len(), 6, "every rule is listed, met or not");
        assert!(list.checks.iter().all(|c| c.met == c.missing.is_empty()));
        let msg = o.pending().unwrap();
        assert!(msg.contains("dwell 6h of 24h"), "{msg}");
        assert!(msg.contains("needs 2 approvals from soc-leads, has 1"), "{msg}");
        assert!(msg.contains("shadow agreement 0.85 < 0.90 over 20 decisions"), "{msg}");

        let two = vec![
            approval(&key, "lead-a", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
            approval(&key, "lead-b", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
        ];
        let o = eval(&a, &two, evidence(20, 19), "2026-01-02T06:00:00Z");
        assert_eq!((o.effective, o.changed, o.pending()), (Tier::Autonomous, true, None));
        assert_eq!(o.approvers, vec!["lead-a", "lead-b"]);

        let o = eval(&a, &two, evidence(5, 5), "2026-01-02T06:00:00Z");
        assert!(o.pending().unwrap().contains("5 decisions of the 20 needed"));

        // A policy that asks for no shadow evidence does not hold a promotion for lack of it.
        let rules = PromotionRules { min_shadow_decisions: 0, ..Default::default() };
        assert_eq!(eval_with(&a, &two, evidence(0, 0), &rules, "2026-01-02T06:00:00Z").pending(), None);
    }

    #[test]
    fn one_step_at_a_time_and_stale_or_forged_approvals_do_not_count() {
        let key = Key::new(b"k");
        let a = agent(Tier::Autonomous, Some(Tier::Assist), "2026-01-01T00:00:00Z");
        let o = eval(&a, &[], evidence(50, 50), "2026-01-05T00:00:00Z");
        assert!(o.pending().unwrap().contains("one tier at a time: assist → supervised first"));

        let a = agent(Tier::Autonomous, Some(Tier::Supervised), "2026-01-01T00:00:00Z");
        let mut forged = approval(&key, "lead-b", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z");
        forged.spec.approver = "lead-c".into();
        let approvals = vec![
            approval(&key, "lead-a", Tier::Autonomous, ApprovalDecision::Approve, "2025-12-31T12:00:00Z"), // before tierSince
            forged,
            approval(&key, "lead-b", Tier::Supervised, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"), // wrong tier
        ];
        let o = eval(&a, &approvals, evidence(50, 50), "2026-01-05T00:00:00Z");
        assert!(o.pending().unwrap().contains("has 0"));

        let deny = vec![
            approval(&key, "lead-a", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
            approval(&key, "lead-b", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
            approval(&key, "lead-c", Tier::Autonomous, ApprovalDecision::Deny, "2026-01-01T12:00:00Z"),
        ];
        assert!(
            eval(&a, &deny, evidence(50, 50), "2026-01-05T00:00:00Z").pending().unwrap().contains("denied by lead-c")
        );
    }

    #[test]
    fn drift_pauses_hold_promotions() {
        let key = Key::new(b"k");
        let mut a = agent(Tier::Autonomous, Some(Tier::Supervised), "2026-01-01T00:00:00Z");
        let history = a.status.as_mut().expect("status");
        history.last_drift_pause = Some("2026-01-04T20:00:00Z".into());
        history.resumed_at = Some("2026-01-04T21:00:00Z".into());
        let two = [
            approval(&key, "lead-a", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
            approval(&key, "lead-b", Tier::Autonomous, ApprovalDecision::Approve, "2026-01-01T12:00:00Z"),
        ];
        let msg = eval(&a, &two, evidence(30, 30), "2026-01-05T00:00:00Z").pending().unwrap();
        assert!(msg.contains("within the clean window"), "{msg}");
        assert!(msg.contains("cooling off"), "{msg}");
        // Past the clean window (24h) and the cooling-off (72h from the resume), both are met.
        let o = eval(&a, &two, evidence(30, 30), "2026-01-08T00:00:00Z");
        assert_eq!(o.pending(), None, "every rule holds 3 days after the resume");
        assert_eq!(o.effective, Tier::Autonomous);
        // Between the two: the clean window is over, the cooling-off is not.
        let msg = eval(&a, &two, evidence(30, 30), "2026-01-06T00:00:00Z").pending().unwrap();
        assert!(!msg.contains("clean window") && msg.contains("cooling off"), "{msg}");
    }

    #[test]
    fn shadow_counts_only_what_the_next_tier_would_run_alone() {
        let p = AutonomyPolicySpec::default();
        let d = |tier, risk, decision, at: &str| Decided { tier, risk, decision, decided_at: ts(at) };
        let h = vec![
            d(Tier::Supervised, Risk::Medium, Decision::Approved, "2026-01-02T00:00:00Z"),
            d(Tier::Supervised, Risk::Medium, Decision::Denied, "2026-01-02T00:00:00Z"),
            d(Tier::Supervised, Risk::Medium, Decision::Expired, "2026-01-02T00:00:00Z"), // no human decision
            d(Tier::Supervised, Risk::Low, Decision::AutoApproved, "2026-01-02T00:00:00Z"), // already alone
            d(Tier::Supervised, Risk::High, Decision::Approved, "2026-01-02T00:00:00Z"),  // gated at next too
            d(Tier::Assist, Risk::Medium, Decision::Approved, "2026-01-02T00:00:00Z"),    // another tier
            d(Tier::Supervised, Risk::Medium, Decision::Approved, "2025-12-01T00:00:00Z"), // before since
        ];
        let s = shadow(&h, Tier::Supervised, Tier::Autonomous, &p, ts("2026-01-01T00:00:00Z"), None, |_| false);
        assert_eq!((s.decisions, s.agreed), (2, 1));
        assert_eq!(s.carried, None, "nothing due, nothing carried");
    }

    #[test]
    fn evidence_outlives_the_requests_retention_deletes() {
        let p = AutonomyPolicySpec::default();
        let since = ts("2026-01-01T00:00:00Z");
        let vote = |r: Decision, at: &str| Decided {
            tier: Tier::Supervised,
            risk: Risk::Medium,
            decision: r,
            decided_at: ts(at),
        };
        let (sup, auto) = (Tier::Supervised, Tier::Autonomous);
        let h = vec![
            vote(Decision::Approved, "2026-01-02T00:00:00Z"),
            vote(Decision::Denied, "2026-01-03T00:00:00Z"),
            vote(Decision::Approved, "2026-01-04T00:00:00Z"),
        ];
        // Retention may delete the first two: they are carried (with everything before them).
        let due = |d: &Decided| d.decided_at < ts("2026-01-03T12:00:00Z");
        let s1 = shadow(&h, sup, auto, &p, since, None, due);
        assert_eq!((s1.decisions, s1.agreed), (3, 2));
        let c = s1.carried.clone().unwrap();
        assert_eq!((c.decisions, c.agreed, c.through.as_str()), (2, 1, "2026-01-03T00:00:00Z"));
        assert!(carried(Some(&s1), &h[1]) && !carried(Some(&s1), &h[2]));
        // They are deleted; a new decision comes. Nothing is lost, nothing counted twice.
        let h2 = vec![h[2].clone(), vote(Decision::Approved, "2026-01-05T00:00:00Z")];
        let s2 = shadow(&h2, sup, auto, &p, since, Some(&s1), |_| false);
        assert_eq!((s2.decisions, s2.agreed), (4, 3));
        assert_eq!(s2.carried, s1.carried);
        // A request still cached but already carried is not counted again.
        let s3 = shadow(&h, sup, auto, &p, since, Some(&s1), due);
        assert_eq!((s3.decisions, s3.agreed), (3, 2));
        // A new tier (or a new period at the tier) starts from nothing.
        let later = ts("2026-01-03T06:00:00Z");
        let s4 = shadow(&h2, sup, auto, &p, later, Some(&s1), |_| false);
        assert_eq!((s4.decisions, s4.agreed, s4.carried), (2, 2, None));
    }
}
