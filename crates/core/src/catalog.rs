//! Whether the catalog can be used: a SocAction whose grants exceed what the operator may delegate,
//! or an AutonomyPolicy whose ceilings decrease with the tier, says so on its status (and agents
//! using it fail closed). Pure.

use crate::agent::policy;
use crate::agent::rbac::{self, Rule};
use crate::decisionlog::{Entry, Happened};
use jiff::Timestamp;
use kube_core::Resource;
use socwarden_api::conditions::{self, reason};
use socwarden_api::{
    AutonomyPolicy, AutonomyPolicyStatus, Condition, Notifier, NotifierStatus, SocAction, SocActionStatus,
};

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: conditions::status_str(ok).into(),
        reason: reason.into(),
        message,
        last_transition_time: now.to_string(),
        observed_generation: generation,
    }
}

/// The status of a SocAction: whether every grant is within what the operator may delegate, and
/// whether its execution stays within the safe envelope (`unexecutable`: why not, from
/// `envelope::problem` over the manifest's resolved kinds). `malformed`: why its stored spec could
/// not be decoded, if it could not.
pub fn action_status(
    action: &SocAction,
    malformed: Option<&str>,
    delegable: &[Rule],
    unexecutable: &[String],
    now: Timestamp,
) -> SocActionStatus {
    let generation = action.meta().generation;
    let mut conds = action.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let undelegable: Vec<String> = match malformed {
        Some(_) => Vec::new(),
        None => action.spec.grants.iter().flat_map(|g| rbac::undelegable(delegable, g)).collect(),
    };
    let c = match malformed {
        Some(why) => condition(
            conditions::DELEGABLE,
            false,
            reason::MALFORMED,
            format!("the stored spec could not be read ({why}); agents listing this action fail closed"),
            generation,
            now,
        ),
        None if undelegable.is_empty() => condition(
            conditions::DELEGABLE,
            true,
            reason::WITHIN_DELEGATION,
            "every grant is within what SOC Warden may delegate".into(),
            generation,
            now,
        ),
        None => condition(
            conditions::DELEGABLE,
            false,
            reason::UNDELEGABLE_GRANT,
            format!(
                "SOC Warden may not delegate: {}. Agents listing this action fail closed until the grants are narrowed or the operator's delegable rules are extended",
                undelegable.join(", ")
            ),
            generation,
            now,
        ),
    };
    conditions::set(&mut conds, c);
    let manifest = action.spec.execution.as_ref().is_some_and(|e| e.manifest.is_some());
    let e = match (malformed, unexecutable.is_empty()) {
        (Some(_), _) => None,
        (None, true) => Some(condition(
            conditions::EXECUTABLE,
            true,
            reason::WITHIN_ENVELOPE,
            if manifest {
                "every object the manifest writes is within the safe envelope of executions".into()
            } else {
                "no manifest: nothing is written with the operator's identity".into()
            },
            generation,
            now,
        )),
        (None, false) => Some(condition(
            conditions::EXECUTABLE,
            false,
            reason::OUTSIDE_ENVELOPE,
            format!(
                "the execution may not run: {}. Requests for this action are Rejected until the manifest writes only what SOC Warden may delegate",
                unexecutable.join("; ")
            ),
            generation,
            now,
        )),
    };
    if let Some(e) = e {
        conditions::set(&mut conds, e);
    }
    SocActionStatus {
        conditions: conds,
        undelegable,
        unexecutable: if malformed.is_some() { vec![] } else { unexecutable.to_vec() },
        observed_generation: generation,
    }
}

/// The status of an AutonomyPolicy: whether it can be used.
pub fn policy_status(p: &AutonomyPolicy, malformed: Option<&str>, now: Timestamp) -> AutonomyPolicyStatus {
    let generation = p.meta().generation;
    let mut conds = p.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let c = match (malformed, policy::validate(&p.spec)) {
        (Some(why), _) => condition(
            conditions::VALID,
            false,
            reason::MALFORMED,
            format!("the stored spec could not be read ({why}); agents using this policy fail closed"),
            generation,
            now,
        ),
        (None, Ok(())) => {
            condition(conditions::VALID, true, reason::VALID, "the policy can be used".into(), generation, now)
        }
        (None, Err(e)) => condition(
            conditions::VALID,
            false,
            if e.starts_with("ceilings") { reason::CEILINGS_DECREASE } else { reason::INVALID_SPEC },
            format!("{e}; agents using this policy fail closed"),
            generation,
            now,
        ),
    };
    conditions::set(&mut conds, c);
    let on = p.spec.kill_switch;
    let (why, message) = match on {
        true => {
            (reason::SWITCHED_ON, "every agent is paused: credentials revoked, workloads scaled to zero".to_string())
        }
        false => (reason::SWITCHED_OFF, "agents run as their own specs say".to_string()),
    };
    conditions::set(&mut conds, condition(conditions::KILL_SWITCH, on, why, message, generation, now));
    AutonomyPolicyStatus { conditions: conds, observed_generation: generation }
}

/// A Notifier's status: `Valid` when it can deliver as configured, else what to fix
/// (`notify::problems`), or that its stored spec cannot be read.
pub fn notifier_status(n: &Notifier, malformed: Option<&str>, now: Timestamp) -> NotifierStatus {
    let generation = n.meta().generation;
    let mut conds = n.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let problems = crate::notify::problems(&n.spec);
    let c = match malformed {
        Some(why) => {
            (false, reason::MALFORMED, format!("the stored spec could not be read ({why}); nothing is sent to it"))
        }
        None if problems.is_empty() => (true, reason::VALID, "notices are delivered as configured".to_string()),
        None => (false, reason::INVALID_SPEC, format!("{}; nothing is sent to it until fixed", problems.join("; "))),
    };
    conditions::set(&mut conds, condition(conditions::VALID, c.0, c.1, c.2, generation, now));
    NotifierStatus { conditions: conds, observed_generation: generation }
}

/// The decision-log line (and notice) of a kill switch turned on or off: when the policy's
/// KillSwitch condition changes, or first appears switched on. Once per transition, restarts
/// included (the condition is kept in the status).
pub fn kill_switch_entry(
    name: &str,
    before: Option<&AutonomyPolicyStatus>,
    after: &AutonomyPolicyStatus,
) -> Option<Entry> {
    let on =
        |s: &AutonomyPolicyStatus| conditions::find(&s.conditions, conditions::KILL_SWITCH).map(|c| c.status == "True");
    let now = on(after)?;
    let was = before.and_then(on).unwrap_or(false);
    if now == was {
        return None;
    }
    let (decision, note) = match now {
        true => (Happened::KillSwitchOn, format!("kill switch on (AutonomyPolicy {name}): every agent is paused")),
        false => (
            Happened::KillSwitchOff,
            format!("kill switch off (AutonomyPolicy {name}): agents resume as their specs say"),
        ),
    };
    let mut e = Entry::new(decision, "", "", &note);
    e.policy = Some(name.to_string());
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::{Grant, Risk, SocActionSpec, Verb};

    fn action(resource: &str) -> SocAction {
        let mut a = SocAction::new(
            "a",
            SocActionSpec {
                risk: Risk::Low,
                reversible: false,
                description: String::new(),
                grants: vec![Grant {
                    api_groups: vec!["".into()],
                    resources: vec![resource.into()],
                    verbs: vec![Verb::Get, Verb::List],
                    resource_names: vec![],
                }],
                ..Default::default()
            },
        );
        a.metadata.generation = Some(3);
        a
    }

    #[test]
    fn action_status_reports_undelegable_grants() {
        let d = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let now = Timestamp::UNIX_EPOCH;
        let ok = action_status(&action("pods"), None, &d, &[], now);
        assert!(conditions::is_true(&ok.conditions, conditions::DELEGABLE));
        assert!(ok.undelegable.is_empty());
        let bad = action_status(&action("secrets"), None, &d, &[], now);
        assert!(!conditions::is_true(&bad.conditions, conditions::DELEGABLE));
        assert_eq!(bad.undelegable, vec!["get secrets", "list secrets"]);
        assert_eq!(bad.observed_generation, Some(3));
        let unreadable = action_status(&action("pods"), Some("spec: invalid type"), &d, &[], now);
        let c = conditions::find(&unreadable.conditions, conditions::DELEGABLE).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::MALFORMED));
        assert!(c.message.contains("spec: invalid type") && c.message.contains("fail closed"), "{}", c.message);
    }

    #[test]
    fn action_status_reports_an_execution_outside_the_envelope() {
        let d = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let now = Timestamp::UNIX_EPOCH;
        let ok = action_status(&action("pods"), None, &d, &[], now);
        let c = conditions::find(&ok.conditions, conditions::EXECUTABLE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("True", "no manifest: nothing is written with the operator's identity")
        );
        let why = ["rbac.authorization.k8s.io/v1 RoleBinding is never executable".to_string()];
        let bad = action_status(&action("pods"), None, &d, &why, now);
        let c = conditions::find(&bad.conditions, conditions::EXECUTABLE).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::OUTSIDE_ENVELOPE));
        assert!(
            c.message.contains("RoleBinding is never executable") && c.message.contains("Rejected"),
            "{}",
            c.message
        );
        assert_eq!(bad.unexecutable, why);
        assert!(conditions::is_true(&bad.conditions, conditions::DELEGABLE), "the grants are another matter");
    }

    #[test]
    fn policy_status_explains_invalid_ceilings() {
        let mut p = AutonomyPolicy::new("default", Default::default());
        let now = Timestamp::UNIX_EPOCH;
        assert!(conditions::is_true(&policy_status(&p, None, now).conditions, conditions::VALID));
        p.spec.autonomy.assist = socwarden_api::Ceiling::High;
        let s = policy_status(&p, None, now);
        let c = conditions::find(&s.conditions, conditions::VALID).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason::CEILINGS_DECREASE));
    }

    #[test]
    fn a_notifier_says_what_to_fix() {
        let now = Timestamp::UNIX_EPOCH;
        let spec = |y: &str| -> socwarden_api::NotifierSpec { serde_yaml::from_str(y).unwrap() };
        let cases = [
            ("format: slack\nurlSecretRef: {name: chat, key: url}\n", None),
            ("format: webhook\nurl: https://soar.example/hook\nsecretRef: {name: k, key: k}\n", None),
            ("format: webhook\nurl: https://soar.example/hook\n", Some("format webhook needs secretRef")),
            ("format: teams\n", Some("set url, or urlSecretRef")),
            ("format: slack\nurl: https://x\nurlSecretRef: {name: chat, key: url}\n", Some("not both")),
            ("format: slack\nurl: ftp://x\n", Some("not an http:// or https:// URL")),
            (
                "format: webhook\nurl: https://x\nsecretRef: {name: socwarden-signing-key, key: key}\n",
                Some("the operator's own Secret"),
            ),
            ("format: slack\nurl: https://x\nconsoleUrl: javascript:alert(1)\n", Some("consoleUrl")),
        ];
        for (yaml, want) in cases {
            let n = Notifier::new("n", spec(yaml));
            let c = conditions::find(&notifier_status(&n, None, now).conditions, conditions::VALID).cloned().unwrap();
            match want {
                None => assert_eq!(c.status, "True", "{yaml}: {}", c.message),
                Some(w) => assert!(c.status == "False" && c.message.contains(w), "{yaml}: {}", c.message),
            }
        }
        let broken = notifier_status(&Notifier::new("n", spec("format: slack\nurl: https://x\n")), Some("bad"), now);
        assert_eq!(conditions::find(&broken.conditions, conditions::VALID).unwrap().reason, reason::MALFORMED);
    }

    #[test]
    fn the_kill_switch_is_told_once_per_flip() {
        let now = Timestamp::UNIX_EPOCH;
        let mut p = AutonomyPolicy::new("default", Default::default());
        let off = policy_status(&p, None, now);
        assert!(!conditions::is_true(&off.conditions, conditions::KILL_SWITCH));
        assert_eq!(kill_switch_entry("default", None, &off), None, "a new policy with the switch off is no news");
        p.spec.kill_switch = true;
        p.status = Some(off.clone());
        let on = policy_status(&p, None, now);
        let e = kill_switch_entry("default", Some(&off), &on).expect("switched on");
        assert_eq!((e.decision.as_str(), e.policy.as_deref()), ("KillSwitchOn", Some("default")));
        assert_eq!(kill_switch_entry("default", None, &on).map(|e| e.decision), Some(Happened::KillSwitchOn));
        assert_eq!(
            kill_switch_entry("default", Some(&on), &on),
            None,
            "a reconcile that changes nothing tells nothing"
        );
        p.spec.kill_switch = false;
        p.status = Some(on.clone());
        let back = policy_status(&p, None, now);
        assert_eq!(kill_switch_entry("default", Some(&on), &back).map(|e| e.decision), Some(Happened::KillSwitchOff));
        // An old status without the condition (written before it existed) counts as off.
        let legacy = AutonomyPolicyStatus::default();
        assert_eq!(kill_switch_entry("default", Some(&legacy), &back), None);
    }
}
