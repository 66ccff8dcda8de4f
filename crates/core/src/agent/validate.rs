//! What is wrong with an agent's spec, said so that a human can fix it. Pure.

use crate::agent::credentials::{MAX_TTL, MIN_TTL};
use crate::agent::policy;
use crate::agent::rbac::{self, Rule};
use socwarden_api::conditions::reason;
use socwarden_api::duration;
use socwarden_api::{AutonomyPolicySpec, SocActionSpec, SocAgentSpec, WorkloadRef};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Namespaces the audit policy does not cover (see `unobserved`).
    pub unobserved: &'a BTreeSet<String>,
}

/// The namespace every Kubernetes control plane's own ServiceAccounts live in.
pub const KUBE_SYSTEM: &str = "kube-system";

/// The namespaces whose ServiceAccounts the audit policy does not cover, so that an agent there
/// would act unseen by the audit sink: always the operator's own and `kube-system` (the
/// recommended policy leaves both out), plus those the operator is told of (`--unaudited-namespaces`,
/// chart value `audit.unauditedNamespaces`: keep it in line with your audit policy).
pub fn unobserved(operator_namespace: &str, configured: &[String]) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = configured.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    set.insert(operator_namespace.to_string());
    set.insert(KUBE_SYSTEM.to_string());
    set
}

/// An agent declared where the audit sink cannot see its ServiceAccount is refused: none of its
/// writes could be matched with a record, and drift would judge it on its requests alone. The
/// webhook refuses it at creation; the reconciler fails it closed in case the webhook was bypassed.
pub fn namespace_problem(namespace: &str, unobserved: &BTreeSet<String>) -> Option<Problem> {
    unobserved.contains(namespace).then(|| {
        Problem::new(
            reason::UNOBSERVED_NAMESPACE,
            format!(
                "namespace {namespace} is not audited (the audit policy leaves out its ServiceAccounts, and the operator's own namespace and kube-system are never for agents), so SOC Warden could not see what an agent there does; declare the SocAgent in another namespace"
            ),
        )
    })
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
    problems.extend(namespace_problem(i.namespace, i.unobserved));
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

    if let (Some(WorkloadRef { kind, name, .. }), Some(false)) = (&i.spec.workload_ref, i.workload_exists) {
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
            unobserved: &unobserved("soc-warden-system", &[]),
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
        with_workload.workload_ref =
            Some(WorkloadRef { kind: WorkloadKind::Deployment, name: "bot".into(), grace_period_seconds: None });

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
            unobserved: &BTreeSet::new(),
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
            unobserved: &BTreeSet::new(),
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
    fn agents_where_the_audit_sink_cannot_see_are_refused() {
        let set = unobserved("soc-warden-system", &["monitoring".into(), " ".into()]);
        let cases = [
            ("soc-warden-system", true, "the operator's own namespace"),
            ("kube-system", true, "the control plane's"),
            ("monitoring", true, "told of by --unaudited-namespaces"),
            ("soc-agents", false, "an ordinary namespace"),
            ("kube-system-2", false, "compared as a whole name, not a prefix"),
            ("", false, "no blank entry"),
        ];
        for (ns, refused, why) in cases {
            assert_eq!(namespace_problem(ns, &set).is_some(), refused, "{ns}: {why}");
        }
        let p = namespace_problem("kube-system", &set).unwrap();
        assert_eq!(p.reason, reason::UNOBSERVED_NAMESPACE);
        assert!(p.message.contains("namespace kube-system is not audited") && p.message.contains("another namespace"));
        // The reconciler fails it closed with every other problem (the webhook may be bypassed).
        let delegable = rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap();
        let (s, none) = (spec(&[]), BTreeMap::new());
        let pol = AutonomyPolicySpec::default();
        let i = Inputs {
            name: "bot",
            namespace: "soc-warden-system",
            spec: &s,
            actions: &none,
            policy: Some(&pol),
            delegable: &delegable,
            workload_exists: None,
            malformed: None,
            unobserved: &set,
        };
        assert_eq!(agent(&i).iter().map(|p| p.reason).collect::<Vec<_>>(), vec![reason::UNOBSERVED_NAMESPACE]);
    }

    #[test]
    fn long_names_are_refused() {
        assert!(name_problem(&"a".repeat(63)).is_none());
        assert_eq!(name_problem(&"a".repeat(64)).unwrap().reason, reason::INVALID_NAME);
    }
}
