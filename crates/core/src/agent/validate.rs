//! What is wrong with an agent's spec, said so that a human can fix it. Pure.

use crate::agent::credentials::{MAX_TTL, MIN_TTL};
use crate::agent::policy;
use crate::agent::rbac::{self, Rule};
use socwarden_api::conditions::reason;
use socwarden_api::duration;
use socwarden_api::{AutonomyPolicySpec, SocActionSpec, SocAgentSpec, WorkloadRef};
use std::collections::BTreeMap;
use std::time::Duration;

/// One problem: a CamelCase reason for machines and a message for humans that says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// Everything an agent's validity depends on, looked up by the reconciler.
pub struct Inputs<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub spec: &'a SocAgentSpec,
    /// The SocActions the agent lists that exist, by name.
    pub actions: &'a BTreeMap<String, SocActionSpec>,
    /// The policy named by `spec.policyRef`, if it exists.
    pub policy: Option<&'a AutonomyPolicySpec>,
    pub delegable: &'a [Rule],
    /// Whether the workload named by `spec.workloadRef` exists (None when there is none).
    pub workload_exists: Option<bool>,
    /// Why the stored spec could not be decoded, if it could not (see `watch`).
    pub malformed: Option<&'a str>,
}

/// Label values and the names derived from the agent name must fit in 63 characters.
pub const MAX_NAME: usize = 63;

pub fn name_problem(name: &str) -> Option<Problem> {
    (name.len() > MAX_NAME).then(|| {
        Problem::new(
            reason::INVALID_NAME,
            format!(
                "the agent name is {} characters long; SOC Warden labels every object it issues with it, so it must be at most {MAX_NAME}: recreate the agent under a shorter name",
                name.len()
            ),
        )
    })
}

/// The token lifetime of the spec, or the problem with it.
pub fn ttl(spec: &SocAgentSpec) -> Result<Duration, Problem> {
    let raw = &spec.credentials.ttl;
    let bad = |why: &str| {
        Problem::new(
            reason::INVALID_CREDENTIALS,
            format!("spec.credentials.ttl {raw:?} {why}; use a duration such as 1h"),
        )
    };
    match duration::parse(raw) {
        None => Err(bad("is not a duration (forms: 10m, 1h, 1h30m, 900s)")),
        Some(d) if d < MIN_TTL => Err(bad("is shorter than 10m, the shortest token the API server issues")),
        Some(d) if d > MAX_TTL => Err(bad("is longer than 24h; tokens are meant to be short-lived")),
        Some(d) => Ok(d),
    }
}

/// Every problem with the agent, in a stable order. Empty means valid.
pub fn agent(i: &Inputs) -> Vec<Problem> {
    let mut problems: Vec<Problem> = name_problem(i.name).into_iter().collect();
    if let Some(why) = i.malformed {
        problems.push(Problem::new(
            reason::MALFORMED,
            format!(
                "the stored spec could not be read ({why}); re-apply a valid manifest (kubectl explain socagent.spec)"
            ),
        ));
        return problems;
    }
    if let Err(p) = ttl(i.spec) {
        problems.push(p);
    }

    let unknown: Vec<&str> =
        i.spec.actions.iter().filter(|a| !i.actions.contains_key(a.as_str())).map(String::as_str).collect();
    if !unknown.is_empty() {
        problems.push(Problem::new(
            reason::UNKNOWN_ACTION,
            format!(
                "spec.actions names SocActions that do not exist: {}; create them (kubectl get socactions lists the catalog) or remove them from spec.actions",
                unknown.join(", ")
            ),
        ));
    }

    for (name, action) in i.actions {
        let missing: Vec<String> = action.grants.iter().flat_map(|g| rbac::undelegable(i.delegable, g)).collect();
        if !missing.is_empty() {
            problems.push(Problem::new(
                reason::UNDELEGABLE_GRANT,
                format!(
                    "SocAction {name} grants what SOC Warden may not delegate ({}); narrow the action's grants, or add the permission to the operator's delegable rules (chart value `delegable`) and its ClusterRole",
                    missing.join(", ")
                ),
            ));
        }
    }

    match i.policy {
        None => problems.push(Problem::new(
            reason::POLICY_NOT_FOUND,
            format!(
                "AutonomyPolicy {:?} (spec.policyRef) does not exist; create it or point spec.policyRef at an existing policy (kubectl get autonomypolicies)",
                i.spec.policy_ref
            ),
        )),
        Some(p) => {
            if let Err(e) = policy::validate(p) {
                problems.push(Problem::new(
                    reason::POLICY_INVALID,
                    format!("AutonomyPolicy {:?} is invalid: {e}", i.spec.policy_ref),
                ));
            }
        }
    }

    if let (Some(WorkloadRef { kind, name }), Some(false)) = (&i.spec.workload_ref, i.workload_exists) {
        problems.push(Problem::new(
            reason::WORKLOAD_NOT_FOUND,
            format!(
                "{} {name} (spec.workloadRef) does not exist in namespace {}; create it, or fix or remove spec.workloadRef (it is what a pause scales to zero)",
                kind.as_str(),
                i.namespace
            ),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::{Ceiling, Risk, Scope, WorkloadKind};

    fn spec(actions: &[&str]) -> SocAgentSpec {
        SocAgentSpec {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            scope: Scope { namespaces: vec!["web".into()] },
            policy_ref: "default".into(),
            ..Default::default()
        }
    }

    fn action(resource: &str) -> SocActionSpec {
        crate::testing::action(Risk::Low, resource)
    }

    fn check(
        spec: &SocAgentSpec,
        actions: &BTreeMap<String, SocActionSpec>,
        policy: Option<&AutonomyPolicySpec>,
        workload: Option<bool>,
    ) -> Vec<&'static str> {
        let delegable = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let i = Inputs {
            name: "bot",
            namespace: "agents",
            spec,
            actions,
            policy,
            delegable: &delegable,
            workload_exists: workload,
            malformed: None,
        };
        agent(&i).into_iter().map(|p| p.reason).collect()
    }

    #[test]
    fn table_of_bad_inputs() {
        let pol = AutonomyPolicySpec::default();
        let mut bad_pol = AutonomyPolicySpec::default();
        bad_pol.autonomy.assist = Ceiling::High;
        let pods = BTreeMap::from([("read-pods".to_string(), action("pods"))]);
        let secrets = BTreeMap::from([("read-secrets".to_string(), action("secrets"))]);
        let mut long_ttl = spec(&["read-pods"]);
        long_ttl.credentials.ttl = "48h".into();
        let mut with_workload = spec(&["read-pods"]);
        with_workload.workload_ref = Some(WorkloadRef { kind: WorkloadKind::Deployment, name: "bot".into() });

        let none: Vec<&str> = vec![];
        assert_eq!(check(&spec(&["read-pods"]), &pods, Some(&pol), None), none);
        assert_eq!(check(&spec(&["read-pods", "typo"]), &pods, Some(&pol), None), vec![reason::UNKNOWN_ACTION]);
        assert_eq!(check(&spec(&["read-secrets"]), &secrets, Some(&pol), None), vec![reason::UNDELEGABLE_GRANT]);
        assert_eq!(check(&spec(&["read-pods"]), &pods, None, None), vec![reason::POLICY_NOT_FOUND]);
        assert_eq!(check(&spec(&["read-pods"]), &pods, Some(&bad_pol), None), vec![reason::POLICY_INVALID]);
        assert_eq!(check(&long_ttl, &pods, Some(&pol), None), vec![reason::INVALID_CREDENTIALS]);
        assert_eq!(check(&with_workload, &pods, Some(&pol), Some(false)), vec![reason::WORKLOAD_NOT_FOUND]);
        assert_eq!(check(&with_workload, &pods, Some(&pol), Some(true)), none);
        // Several problems are all reported.
        assert_eq!(
            check(&spec(&["read-secrets", "typo"]), &secrets, None, None),
            vec![reason::UNKNOWN_ACTION, reason::UNDELEGABLE_GRANT, reason::POLICY_NOT_FOUND]
        );
    }

    #[test]
    fn messages_say_how_to_fix() {
        let delegable = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let s = spec(&["read-secrets"]);
        let secrets = BTreeMap::from([("read-secrets".to_string(), action("secrets"))]);
        let i = Inputs {
            name: "bot",
            namespace: "agents",
            spec: &s,
            actions: &secrets,
            policy: None,
            delegable: &delegable,
            workload_exists: None,
            malformed: None,
        };
        let msgs: Vec<String> = agent(&i).into_iter().map(|p| p.message).collect();
        assert!(
            msgs[0].contains("SocAction read-secrets grants what SOC Warden may not delegate (get secrets)"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("AutonomyPolicy \"default\" (spec.policyRef) does not exist; create it"),
            "{}",
            msgs[1]
        );
    }

    #[test]
    fn a_malformed_spec_is_the_only_problem_reported() {
        let s = spec(&["typo"]);
        let delegable = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let none = BTreeMap::new();
        let i = Inputs {
            name: "bot",
            namespace: "agents",
            spec: &s,
            actions: &none,
            policy: None,
            delegable: &delegable,
            workload_exists: None,
            malformed: Some("spec: unknown variant"),
        };
        let p = agent(&i);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].reason, reason::MALFORMED);
        assert!(p[0].message.contains("unknown variant"));
    }

    #[test]
    fn ttl_bounds() {
        let mut s = spec(&[]);
        for (raw, ok) in [("10m", true), ("24h", true), ("1h30m", true), ("9m", false), ("25h", false), ("soon", false)]
        {
            s.credentials.ttl = raw.into();
            assert_eq!(ttl(&s).is_ok(), ok, "{raw}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        assert!(name_problem(&"a".repeat(63)).is_none());
        assert_eq!(name_problem(&"a".repeat(64)).unwrap().reason, reason::INVALID_NAME);
    }
}
