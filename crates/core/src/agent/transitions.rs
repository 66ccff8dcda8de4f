//! Which Events and decision-log lines a change of an agent's status produces: one per
//! transition, never one per reconcile. Pure: the status before and after in, the list out; the
//! runtime publishes them (and counts the ones that are metrics).

use crate::admission::identity::CredentialId;
use crate::agent::credentials::{self, IssueReason};
use crate::agent::pause::PauseReason;
use crate::decisionlog::{Entry, Happened};
use socwarden_api::conditions;
use socwarden_api::drift::{SignalKind, State};
use socwarden_api::{DriftStatus, Phase, SocAgentStatus};

/// The Event reasons an agent's transitions carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    DriftReported,
    DriftDetected,
    InvalidSpec,
    Paused,
    Resumed,
    CredentialsIssued,
    TokenRotated,
    Promoted,
    Demoted,
    PromotionPending,
    GrantsChanged,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DriftReported => "DriftReported",
            Reason::DriftDetected => "DriftDetected",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Paused => "Paused",
            Reason::Resumed => "Resumed",
            Reason::CredentialsIssued => "CredentialsIssued",
            Reason::TokenRotated => "TokenRotated",
            Reason::Promoted => "Promoted",
            Reason::Demoted => "Demoted",
            Reason::PromotionPending => "PromotionPending",
            Reason::GrantsChanged => "GrantsChanged",
        }
    }

    /// Whether the Event is a warning (something a human should look at) or normal.
    pub fn is_warning(self) -> bool {
        matches!(self, Reason::DriftReported | Reason::DriftDetected | Reason::InvalidSpec | Reason::Paused)
    }
}

/// One transition: an Event, and the decision-log line when it is a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub reason: Reason,
    pub note: String,
    pub log: Option<Entry>,
}

/// What else changed in this reconcile, besides the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// The pause being applied, if any.
    pub pause: Option<PauseReason>,
    /// The approver whose resume lifted a drift pause in this reconcile.
    pub resumed_by: Option<String>,
    /// Why a token was issued in this reconcile.
    pub issued: Option<IssueReason>,
    /// The drift assessment the DriftReport showed before, and shows now.
    pub drift_before: Option<DriftStatus>,
    pub drift_after: Option<DriftStatus>,
}

/// The transitions from `before` to `after` of agent `name` in `namespace`.
pub fn transitions(
    namespace: &str,
    name: &str,
    before: Option<&SocAgentStatus>,
    after: &SocAgentStatus,
    changes: &Changes,
) -> Vec<Transition> {
    let entry = |what: Happened, note: &str| Entry::new(what, namespace, name, note);
    let mut out = Vec::new();
    out.extend(drift(name, changes.drift_before.as_ref(), changes.drift_after.as_ref(), &entry));
    out.extend(invalid_spec(before, after));
    out.extend(pause(before, after, changes, &entry));
    out.extend(token(name, after, changes.issued, &entry));
    out.extend(tier(before, after, &entry));
    out.extend(promotion_pending(before, after));
    out.extend(grants(before, after, changes));
    out
}

fn drifting(d: Option<&DriftStatus>) -> bool {
    d.is_some_and(|d| d.state == State::Drifting)
}

fn signal_kinds(d: Option<&DriftStatus>) -> Vec<SignalKind> {
    d.map(|d| d.signals.iter().map(|x| x.signal).collect()).unwrap_or_default()
}

/// The tokens an assessment's calls were made with (the DriftReport shows them as the API server
/// writes them; the monitor wrote them, so each parses).
fn credentials_of(d: &DriftStatus) -> Vec<CredentialId> {
    d.credentials.iter().filter_map(|c| CredentialId::parse(c)).collect()
}

/// Drift crossing the threshold (detected), or new kinds of signals below it (reported only).
/// The Event names no score and no signal detail (an agent granted to read Events in its own
/// namespace must not learn how close it is to the threshold): the decision log and the
/// DriftReport, which agents cannot read, have them.
fn drift(
    name: &str,
    before: Option<&DriftStatus>,
    after: Option<&DriftStatus>,
    entry: &dyn Fn(Happened, &str) -> Entry,
) -> Option<Transition> {
    let d = after?;
    if drifting(after) {
        if drifting(before) {
            return None;
        }
        let signals: Vec<String> = d.signals.iter().map(|s| format!("{}: {}", s.signal, s.observed)).collect();
        let log = format!("drift score {:.2} ≥ {:.2}: {}", d.score, d.threshold, signals.join("; "));
        let log = Entry { credentials: credentials_of(d), ..entry(Happened::DriftDetected, &log) };
        return Some(Transition {
            reason: Reason::DriftDetected,
            log: Some(log),
            note: format!("behaviour crossed the drift threshold; the DriftReport {name} explains it"),
        });
    }
    let known = signal_kinds(before);
    let new = signal_kinds(after).into_iter().any(|k| !known.contains(&k) && k != SignalKind::Silence);
    if !new {
        return None;
    }
    let signals: Vec<String> =
        d.signals.iter().map(|s| format!("{}: {} (expected {})", s.signal, s.observed, s.expected)).collect();
    let log = format!("drift score {:.2} < {:.2}, reported only: {}", d.score, d.threshold, signals.join("; "));
    let log = Entry { credentials: credentials_of(d), ..entry(Happened::DriftReported, &log) };
    Some(Transition {
        reason: Reason::DriftReported,
        log: Some(log),
        note: format!("new drift signals below the threshold, reported only; the DriftReport {name} explains them"),
    })
}

/// An invalid spec, when it first appears or its message changes.
fn invalid_spec(before: Option<&SocAgentStatus>, after: &SocAgentStatus) -> Option<Transition> {
    let now = conditions::find(&after.conditions, conditions::INVALID_SPEC).filter(|c| c.status == "True")?;
    let was = before.and_then(|s| conditions::find(&s.conditions, conditions::INVALID_SPEC)).map(|c| &c.message);
    let was_error = before.and_then(|s| s.phase) == Some(Phase::Error);
    (was != Some(&now.message) || !was_error).then(|| Transition {
        reason: Reason::InvalidSpec,
        note: now.message.clone(),
        log: None,
    })
}

/// Entering or leaving the Paused phase.
fn pause(
    before: Option<&SocAgentStatus>,
    after: &SocAgentStatus,
    changes: &Changes,
    entry: &dyn Fn(Happened, &str) -> Entry,
) -> Option<Transition> {
    match (before.and_then(|s| s.phase), after.phase) {
        (Some(Phase::Paused), Some(Phase::Paused)) => None,
        (_, Some(Phase::Paused)) => {
            let c = conditions::find(&after.conditions, conditions::PAUSED);
            let note = c.map(|c| c.message.clone()).unwrap_or_default();
            let mut e = entry(Happened::Paused, &note);
            e.policy = c.map(|c| c.reason.clone());
            // A drift pause names the tokens of the calls that tripped it.
            if changes.pause == Some(PauseReason::Drift) {
                let tripped = changes.drift_after.as_ref().filter(|d| d.state == State::Drifting);
                e.credentials = tripped.map(credentials_of).unwrap_or_default();
            }
            Some(Transition { reason: Reason::Paused, note, log: Some(e) })
        }
        (Some(Phase::Paused), _) => {
            let note = match &changes.resumed_by {
                Some(who) => format!("drift pause lifted by {who}; fresh credentials issued"),
                None => "fresh credentials issued".to_string(),
            };
            let mut e = entry(Happened::Resumed, &note);
            e.approvers = changes.resumed_by.iter().cloned().collect();
            // Why it had been paused (as the pause's line says why it was).
            e.policy = before.and_then(|s| s.pause.as_ref()).map(|p| p.reason.clone());
            Some(Transition { reason: Reason::Resumed, note, log: Some(e) })
        }
        _ => None,
    }
}

/// A token issued: the first one, or a rotation (with why). The decision log names the token
/// (`credentials`), so that a line naming the token of a call leads back to its issue.
fn token(
    name: &str,
    after: &SocAgentStatus,
    issued: Option<IssueReason>,
    entry: &dyn Fn(Happened, &str) -> Entry,
) -> Option<Transition> {
    let (reason, what, note) = match issued? {
        IssueReason::First => (
            Reason::CredentialsIssued,
            Happened::CredentialsIssued,
            format!("token in Secret {}", credentials::secret_name(name)),
        ),
        why => (Reason::TokenRotated, Happened::TokenRotated, why.as_str().to_string()),
    };
    let held = after.credentials.as_ref();
    let secret = credentials::secret_name(name);
    let message = match (reason, held.and_then(|c| c.expires_at.as_deref())) {
        (_, None) => note.clone(),
        (Reason::CredentialsIssued, Some(at)) => format!("token in Secret {secret}, expires at {at}"),
        (_, Some(at)) => format!("{note}: new token in Secret {secret}, expires at {at}"),
    };
    let mut log = entry(what, &message);
    log.credentials = held.and_then(|c| c.credential_id.as_deref()).and_then(CredentialId::parse).into_iter().collect();
    Some(Transition { reason, note, log: Some(log) })
}

/// The effective tier going up (every promotion rule holds) or down (spec.tier lowered).
fn tier(
    before: Option<&SocAgentStatus>,
    after: &SocAgentStatus,
    entry: &dyn Fn(Happened, &str) -> Entry,
) -> Option<Transition> {
    let (was, now) = (before.and_then(|s| s.effective_tier)?, after.effective_tier?);
    if was == now {
        return None;
    }
    let (reason, what, note) = if now > was {
        (Reason::Promoted, Happened::Promoted, format!("effective tier {was} → {now}: every promotion rule holds"))
    } else {
        (Reason::Demoted, Happened::Demoted, format!("effective tier {was} → {now}: spec.tier was lowered"))
    };
    Some(Transition { reason, log: Some(entry(what, &note)), note })
}

/// A promotion starting to wait (not every change of what it waits for).
fn promotion_pending(before: Option<&SocAgentStatus>, after: &SocAgentStatus) -> Option<Transition> {
    let pending = |s: &SocAgentStatus| {
        conditions::find(&s.conditions, conditions::PROMOTION_PENDING).filter(|c| c.status == "True").cloned()
    };
    let now = pending(after)?;
    before.and_then(pending).is_none().then_some(Transition {
        reason: Reason::PromotionPending,
        note: now.message,
        log: None,
    })
}

/// The notice a transition sends that is no decision-log line: a promotion now waiting (its
/// approvers are asked for their approvals, and told what else it needs).
pub fn notice(namespace: &str, name: &str, t: &Transition) -> Option<Entry> {
    (t.reason == Reason::PromotionPending && t.log.is_none())
        .then(|| Entry::new(Happened::PromotionPending, namespace, name, &t.note))
}

/// What runs without approval changed (not while paused: nothing runs then).
fn grants(before: Option<&SocAgentStatus>, after: &SocAgentStatus, changes: &Changes) -> Option<Transition> {
    let was = &before?.autonomous_actions;
    (was != &after.autonomous_actions && changes.pause.is_none()).then(|| Transition {
        reason: Reason::GrantsChanged,
        note: format!("actions that run without approval: [{}]", after.autonomous_actions.join(", ")),
        log: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisionlog::Phase as NistPhase;
    use socwarden_api::drift::Signal;
    use socwarden_api::{Condition, DriftStatus, Tier};

    fn status(phase: Phase, tier: Tier) -> SocAgentStatus {
        SocAgentStatus { phase: Some(phase), effective_tier: Some(tier), ..Default::default() }
    }

    fn condition(type_: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    fn drift(state: State, kinds: &[SignalKind]) -> Option<DriftStatus> {
        Some(DriftStatus {
            state,
            score: 0.8,
            threshold: 0.7,
            signals: kinds
                .iter()
                .map(|k| Signal { signal: *k, observed: "x".into(), expected: "y".into(), score: 0.5 })
                .collect(),
            credentials: vec![],
            evaluated_at: String::new(),
        })
    }

    fn reasons(t: &[Transition]) -> Vec<Reason> {
        t.iter().map(|t| t.reason).collect()
    }

    fn run(before: Option<&SocAgentStatus>, after: &SocAgentStatus, changes: &Changes) -> Vec<Transition> {
        transitions("agents", "bot", before, after, changes)
    }

    #[test]
    fn nothing_changes_nothing_is_said() {
        let s = status(Phase::Active, Tier::Supervised);
        assert_eq!(run(Some(&s), &s, &Changes::default()), vec![]);
    }

    const ID: &str = "JTI=0f8fad5b-d9cb-469f-a165-70867728950e";

    fn id() -> CredentialId {
        CredentialId::parse(ID).unwrap()
    }

    fn holding(id: Option<&str>) -> SocAgentStatus {
        SocAgentStatus {
            credentials: Some(socwarden_api::CredentialStatus {
                service_account: "warden-bot".into(),
                secret_name: "warden-bot-token".into(),
                issued_at: Some("2026-01-01T10:00:00Z".into()),
                expires_at: Some("2026-01-01T11:00:00Z".into()),
                credential_id: id.map(String::from),
            }),
            ..status(Phase::Active, Tier::Assist)
        }
    }

    #[test]
    fn a_new_agent_gets_its_credentials() {
        let after = holding(Some(ID));
        let t = run(None, &after, &Changes { issued: Some(IssueReason::First), ..Default::default() });
        assert_eq!(reasons(&t), vec![Reason::CredentialsIssued]);
        assert_eq!(t[0].note, "token in Secret warden-bot-token");
        // The decision log names the token, so a line naming it as the token of a call leads here.
        let log = t[0].log.as_ref().expect("an issue is a decision");
        assert_eq!((log.phase, log.credentials.clone()), (NistPhase::Protect, vec![id()]));
        assert_eq!(log.message, "token in Secret warden-bot-token, expires at 2026-01-01T11:00:00Z");
        let t = run(Some(&after), &after, &Changes { issued: Some(IssueReason::Rotation), ..Default::default() });
        assert_eq!((t[0].reason, t[0].note.as_str()), (Reason::TokenRotated, "token past 80% of its lifetime"));
        let log = t[0].log.as_ref().expect("a rotation is a decision");
        assert_eq!((log.decision.as_str(), log.credentials.clone()), ("TokenRotated", vec![id()]));
        assert!(log.message.starts_with("token past 80% of its lifetime: new token"), "{}", log.message);
        // A token whose claims carry no id (or an id that does not parse) is logged without one.
        for held in [None, Some("JTI=nope")] {
            let t = run(None, &holding(held), &Changes { issued: Some(IssueReason::First), ..Default::default() });
            assert_eq!(t[0].log.as_ref().unwrap().credentials, vec![], "{held:?}");
        }
        assert!(run(Some(&after), &after, &Changes::default()).is_empty(), "no token issued, nothing said");
    }

    #[test]
    fn a_drift_pause_names_the_tokens_that_tripped_it_a_manual_one_none() {
        let active = status(Phase::Active, Tier::Supervised);
        let paused = status(Phase::Paused, Tier::Supervised);
        let mut tripped = drift(State::Drifting, &[SignalKind::Unrecorded]);
        tripped.as_mut().unwrap().credentials = vec![ID.into()];
        let changes = Changes { pause: Some(PauseReason::Drift), drift_after: tripped.clone(), ..Default::default() };
        let t = run(Some(&active), &paused, &changes);
        assert_eq!(reasons(&t), vec![Reason::DriftDetected, Reason::Paused]);
        for tr in &t {
            assert_eq!(tr.log.as_ref().unwrap().credentials, vec![id()], "{:?}", tr.reason);
        }
        assert!(!t[1].note.contains(ID) && !t[0].note.contains(ID), "Events carry the detail no more than before");
        // A manual pause (or the kill switch) comes from no call: it names no token, whatever the
        // assessment shows.
        for reason in [PauseReason::Manual, PauseReason::KillSwitch] {
            let manual = Changes { pause: Some(reason), drift_after: tripped.clone(), ..Default::default() };
            let t = run(Some(&active), &paused, &manual);
            let pause = t.iter().find(|t| t.reason == Reason::Paused).unwrap();
            assert_eq!(pause.log.as_ref().unwrap().credentials, vec![], "{reason:?}");
        }
        // A drift pause re-applied without a drifting assessment (kept by the DriftReport, the
        // agent created again) names none either.
        let kept = Changes { pause: Some(PauseReason::Drift), ..Default::default() };
        assert_eq!(run(Some(&active), &paused, &kept)[0].log.as_ref().unwrap().credentials, vec![]);
    }

    #[test]
    fn pause_and_resume_are_logged_with_their_phase() {
        let active = status(Phase::Active, Tier::Supervised);
        let mut paused = status(Phase::Paused, Tier::Supervised);
        paused.conditions = vec![condition(conditions::PAUSED, conditions::reason::DRIFT, "drift score 0.80")];
        let changes = Changes { pause: Some(PauseReason::Drift), ..Default::default() };
        let t = run(Some(&active), &paused, &changes);
        assert_eq!(reasons(&t), vec![Reason::Paused]);
        let log = t[0].log.as_ref().expect("a decision");
        assert_eq!((log.phase, log.policy.as_deref()), (NistPhase::Respond, Some("Drift")));
        assert!(run(Some(&paused), &paused, &changes).is_empty(), "a pause that continues says nothing");

        let resumed = Changes { resumed_by: Some("lead-a".into()), ..Default::default() };
        let t = run(Some(&paused), &active, &resumed);
        assert_eq!(reasons(&t), vec![Reason::Resumed]);
        assert_eq!(t[0].note, "drift pause lifted by lead-a; fresh credentials issued");
        let log = t[0].log.as_ref().expect("a decision");
        assert_eq!((log.phase, log.approvers.clone()), (NistPhase::Recover, vec!["lead-a".to_string()]));
    }

    #[test]
    fn tier_changes_are_governance_decisions() {
        let sup = status(Phase::Active, Tier::Supervised);
        let aut = status(Phase::Active, Tier::Autonomous);
        for (before, after, reason, words) in [
            (&sup, &aut, Reason::Promoted, "every promotion rule holds"),
            (&aut, &sup, Reason::Demoted, "spec.tier was lowered"),
        ] {
            let t = run(Some(before), after, &Changes::default());
            assert_eq!(reasons(&t), vec![reason]);
            assert!(t[0].note.contains(words), "{}", t[0].note);
            assert_eq!(t[0].log.as_ref().map(|l| l.phase), Some(NistPhase::Govern));
        }
    }

    #[test]
    fn drift_is_detected_once_and_reported_per_new_kind_of_signal() {
        let calm = status(Phase::Active, Tier::Supervised);
        let seen = |before: Option<DriftStatus>, after: Option<DriftStatus>| Changes {
            drift_before: before,
            drift_after: after,
            ..Default::default()
        };
        let high = drift(State::Drifting, &[SignalKind::OutOfScope]);
        let t = run(Some(&calm), &calm, &seen(None, high.clone()));
        assert_eq!(reasons(&t), vec![Reason::DriftDetected]);
        assert_eq!(t[0].log.as_ref().map(|l| l.phase), Some(NistPhase::Detect));
        assert!(t[0].log.as_ref().unwrap().message.contains("0.80 ≥ 0.70"), "the decision log has the detail");
        assert!(!t[0].note.contains("0.8") && !t[0].note.contains("outOfScope"), "the Event has none: {}", t[0].note);
        assert!(run(Some(&calm), &calm, &seen(high.clone(), high)).is_empty(), "still drifting: said once");

        let low = drift(State::Normal, &[SignalKind::Novelty]);
        assert_eq!(reasons(&run(Some(&calm), &calm, &seen(None, low.clone()))), vec![Reason::DriftReported]);
        assert!(run(Some(&calm), &calm, &seen(low.clone(), low)).is_empty(), "the same kind again: nothing new");
        let silent = drift(State::Inconclusive, &[SignalKind::Silence]);
        assert!(run(Some(&calm), &calm, &seen(None, silent)).is_empty(), "silence is not reported");
    }

    #[test]
    fn invalid_specs_promotions_and_grants() {
        let ok = status(Phase::Active, Tier::Supervised);
        let mut bad = status(Phase::Error, Tier::Supervised);
        bad.conditions = vec![condition(conditions::INVALID_SPEC, "UnknownAction", "action x does not exist")];
        assert_eq!(reasons(&run(Some(&ok), &bad, &Changes::default())), vec![Reason::InvalidSpec]);
        assert!(run(Some(&bad), &bad, &Changes::default()).is_empty(), "the same problem is said once");
        let mut worse = bad.clone();
        worse.conditions[0].message = "action y does not exist".into();
        assert_eq!(reasons(&run(Some(&bad), &worse, &Changes::default())), vec![Reason::InvalidSpec]);

        let mut waiting = ok.clone();
        waiting.conditions = vec![condition(conditions::PROMOTION_PENDING, "Waiting", "needs 2 approvals, has 0")];
        let started = run(Some(&ok), &waiting, &Changes::default());
        assert_eq!(reasons(&started), vec![Reason::PromotionPending]);
        let told = notice("ns", "bot", &started[0]).expect("a waiting promotion is told to the approvers");
        assert_eq!((told.decision.as_str(), told.message.as_str()), ("PromotionPending", "needs 2 approvals, has 0"));
        let bad_t = run(Some(&ok), &bad, &Changes::default());
        assert_eq!(notice("ns", "bot", &bad_t[0]), None, "an invalid spec is an Event, not a notice");
        let mut closer = waiting.clone();
        closer.conditions[0].message = "needs 2 approvals, has 1".into();
        assert!(run(Some(&waiting), &closer, &Changes::default()).is_empty(), "said when it starts to wait");

        let mut more = ok.clone();
        more.autonomous_actions = vec!["enrich".into()];
        let t = run(Some(&ok), &more, &Changes::default());
        assert_eq!(
            (t[0].reason, t[0].note.as_str()),
            (Reason::GrantsChanged, "actions that run without approval: [enrich]")
        );
        let paused = Changes { pause: Some(PauseReason::Manual), ..Default::default() };
        assert!(!reasons(&run(Some(&ok), &more, &paused)).contains(&Reason::GrantsChanged));
    }
}
