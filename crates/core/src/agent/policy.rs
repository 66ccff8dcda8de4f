//! Which tier lets which risk run without approval. Pure functions over an AutonomyPolicy.

use socwarden_api::{AutonomyPolicySpec, Ceiling, Risk, Tier};

/// The highest risk that runs without approval at `tier`.
pub fn ceiling(policy: &AutonomyPolicySpec, tier: Tier) -> Ceiling {
    match tier {
        Tier::Observe => Ceiling::None,
        Tier::Assist => policy.autonomy.assist,
        Tier::Supervised => policy.autonomy.supervised,
        Tier::Autonomous => policy.autonomy.autonomous,
    }
}

/// Whether an action of `risk` runs without approval at `tier`. `critical` never does, and nothing
/// runs at `observe`.
pub fn runs_alone(policy: &AutonomyPolicySpec, tier: Tier, risk: Risk) -> bool {
    risk != Risk::Critical && ceiling(policy, tier).allows(risk)
}

/// A policy is usable when its ceilings do not decrease as the tier rises.
pub fn validate(policy: &AutonomyPolicySpec) -> Result<(), String> {
    let a = &policy.autonomy;
    let pairs =
        [("assist", a.assist, "supervised", a.supervised), ("supervised", a.supervised, "autonomous", a.autonomous)];
    for (lo_name, lo, hi_name, hi) in pairs {
        if lo > hi {
            return Err(format!(
                "ceilings must not decrease with the tier: autonomy.{lo_name} is {} but autonomy.{hi_name} is {}; \
                 raise autonomy.{hi_name} or lower autonomy.{lo_name}",
                name(lo),
                name(hi)
            ));
        }
    }
    let durations = [
        ("approvals.timeout", &policy.approvals.timeout),
        ("requests.retention", &policy.requests.retention),
        ("promotion.minDwell", &policy.promotion.min_dwell),
        ("promotion.cleanWindow", &policy.promotion.clean_window),
        ("promotion.coolingOff", &policy.promotion.cooling_off),
    ];
    for (field, value) in durations {
        if socwarden_api::duration::parse(value).is_none() {
            return Err(format!(
                "{field} {value:?} is not a duration of at most {} (write e.g. 15m, 24h, 7d)",
                socwarden_api::duration::format(socwarden_api::duration::MAX)
            ));
        }
    }
    Ok(())
}

pub fn name(c: Ceiling) -> &'static str {
    c.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::Ceilings;

    #[test]
    fn defaults_follow_the_design() {
        let p = AutonomyPolicySpec::default();
        // tier -> the risks that run alone
        let table = [
            (Tier::Observe, [false, false, false, false]),
            (Tier::Assist, [false, false, false, false]),
            (Tier::Supervised, [true, false, false, false]),
            (Tier::Autonomous, [true, true, false, false]),
        ];
        for (tier, want) in table {
            for (risk, w) in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical].into_iter().zip(want) {
                assert_eq!(runs_alone(&p, tier, risk), w, "{tier} {risk}");
            }
        }
    }

    #[test]
    fn critical_never_runs_alone_and_observe_never_runs() {
        let p = AutonomyPolicySpec {
            autonomy: Ceilings { assist: Ceiling::High, supervised: Ceiling::High, autonomous: Ceiling::High },
            ..Default::default()
        };
        for tier in Tier::ALL {
            assert!(!runs_alone(&p, tier, Risk::Critical));
        }
        assert!(!runs_alone(&p, Tier::Observe, Risk::Low));
        assert!(runs_alone(&p, Tier::Assist, Risk::High));
    }

    #[test]
    fn decreasing_ceilings_are_invalid_with_a_fix() {
        let mut p = AutonomyPolicySpec::default();
        assert!(validate(&p).is_ok());
        p.autonomy.supervised = Ceiling::High;
        let err = validate(&p).unwrap_err();
        assert!(err.contains("autonomy.supervised is high but autonomy.autonomous is medium"), "{err}");
        p.autonomy = Ceilings { assist: Ceiling::Low, supervised: Ceiling::None, autonomous: Ceiling::None };
        assert!(validate(&p).unwrap_err().contains("autonomy.assist is low"));
    }

    #[test]
    fn durations_beyond_ten_years_are_invalid_with_the_field() {
        let mut p = AutonomyPolicySpec::default();
        p.approvals.timeout = "99999999999d".into();
        let err = validate(&p).unwrap_err();
        assert!(err.contains("approvals.timeout \"99999999999d\" is not a duration of at most 3650d"), "{err}");
        p.approvals.timeout = "15m".into();
        p.promotion.cooling_off = "3651d".into();
        assert!(validate(&p).unwrap_err().contains("promotion.coolingOff"));
    }
}
