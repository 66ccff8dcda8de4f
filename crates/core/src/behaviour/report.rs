//! What the DriftReport of an agent shows: the assessment, the baseline, the lists that filled,
//! and the `Drifted` condition. Kept apart from the SocAgent, which the agent can read (a score it
//! could read would be an oracle). Pure.

use crate::agent::plan::signals_in_words;
use jiff::Timestamp;
use socwarden_api::conditions::{self, reason};
use socwarden_api::drift::State;
use socwarden_api::{BaselineStatus, Condition, DriftReportStatus, DriftStatus};

type Verdict = (bool, &'static str, String);

fn drifted(drift: Option<&DriftStatus>) -> Verdict {
    let Some(d) = drift else {
        return (false, reason::LEARNING, "no behaviour observed yet".into());
    };
    match d.state {
        State::Drifting => {
            (true, reason::DRIFT, format!("drift score {:.2} ≥ {:.2}: {}", d.score, d.threshold, signals_in_words(d)))
        }
        State::Learning => (false, reason::LEARNING, "learning the baseline".to_string()),
        State::Inconclusive => (
            false,
            reason::INCONCLUSIVE,
            d.signals.first().map(|s| format!("{} (expected {})", s.observed, s.expected)).unwrap_or_default(),
        ),
        State::Normal => (false, reason::WITHIN_BASELINE, format!("drift score {:.2} < {:.2}", d.score, d.threshold)),
    }
}

/// The report's status; the condition keeps its transition time while it does not change.
pub fn status(
    previous: Option<&DriftReportStatus>,
    drift: Option<DriftStatus>,
    baseline: Option<BaselineStatus>,
    bounds: Vec<String>,
    now: Timestamp,
) -> DriftReportStatus {
    let mut conds = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    let (ok, reason, message) = drifted(drift.as_ref());
    let c = Condition {
        type_: conditions::DRIFTED.to_string(),
        status: conditions::status_str(ok).to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: now.to_string(),
        observed_generation: None,
    };
    conditions::set(&mut conds, c);
    DriftReportStatus { drift, baseline, bounds, conditions: conds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::drift::{Signal, SignalKind};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn drift(state: State, score: f64) -> DriftStatus {
        let signal = Signal {
            signal: SignalKind::Novelty,
            observed: "never seen: API call delete pods".into(),
            expected: "x".into(),
            score,
        };
        DriftStatus {
            state,
            score,
            threshold: 0.7,
            signals: vec![signal],
            credentials: vec![],
            evaluated_at: t(0).to_string(),
        }
    }

    #[test]
    fn the_drifted_condition_says_where_the_agent_stands() {
        let none = status(None, None, None, vec![], t(0));
        assert_eq!(none.conditions[0].reason, reason::LEARNING);
        let normal = status(Some(&none), Some(drift(State::Normal, 0.3)), None, vec![], t(1));
        assert_eq!(
            (normal.conditions[0].status.as_str(), normal.conditions[0].reason.as_str()),
            ("False", reason::WITHIN_BASELINE)
        );
        assert_eq!(normal.conditions[0].message, "drift score 0.30 < 0.70");
        let high = status(Some(&normal), Some(drift(State::Drifting, 0.8)), None, vec![], t(2));
        let c = &high.conditions[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason::DRIFT));
        assert!(c.message.contains("0.80 ≥ 0.70") && c.message.contains("delete pods"), "{}", c.message);
        assert_eq!(c.last_transition_time, t(2).to_string());
        let again = status(Some(&high), Some(drift(State::Drifting, 0.9)), None, vec![], t(3));
        assert_eq!(again.conditions[0].last_transition_time, t(2).to_string(), "kept while it holds");
    }
}
