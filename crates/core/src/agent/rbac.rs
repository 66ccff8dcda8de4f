//! What RBAC an agent gets, and whether the operator may delegate it. Pure functions.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::{Deserialize, Serialize};
use socwarden_api::{Grant, Verb};
use std::collections::{BTreeMap, BTreeSet};

/// A namespaced RBAC rule with sorted, de-duplicated lists, so that two rules that mean the same
/// compare equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

impl Rule {
    pub fn new(
        api_groups: impl IntoIterator<Item = impl Into<String>>,
        resources: impl IntoIterator<Item = impl Into<String>>,
        verbs: impl IntoIterator<Item = impl Into<String>>,
        resource_names: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            api_groups: sorted(api_groups.into_iter().map(Into::into)),
            resources: sorted(resources.into_iter().map(Into::into)),
            verbs: sorted(verbs.into_iter().map(Into::into)),
            resource_names: sorted(resource_names.into_iter().map(Into::into)),
        }
    }

    pub fn normalized(self) -> Self {
        Self::new(self.api_groups, self.resources, self.verbs, self.resource_names)
    }

    pub fn from_grant(g: &Grant) -> Self {
        Self::new(
            g.api_groups.iter().cloned(),
            g.resources.iter().cloned(),
            g.verbs.iter().map(|v| v.as_str()),
            g.resource_names.iter().cloned(),
        )
    }

    pub fn from_policy_rule(r: &PolicyRule) -> Self {
        Self::new(
            r.api_groups.clone().unwrap_or_default(),
            r.resources.clone().unwrap_or_default(),
            r.verbs.clone(),
            r.resource_names.clone().unwrap_or_default(),
        )
    }

    pub fn to_policy_rule(&self) -> PolicyRule {
        let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        PolicyRule {
            api_groups: Some(self.api_groups.clone()),
            resources: opt(&self.resources),
            verbs: self.verbs.clone(),
            resource_names: opt(&self.resource_names),
            non_resource_urls: None,
        }
    }

    /// Whether any list holds a wildcard, which this project never delegates.
    pub fn has_wildcard(&self) -> bool {
        self.api_groups.iter().chain(&self.resources).chain(&self.verbs).any(|s| s.contains('*'))
    }
}

/// The rules every agent holds in its own namespace: file ActionRequests and read back one it
/// names (`get`), and read its own SocAgent (nothing else of it). No `list` or `watch`: agents
/// sharing a namespace must not read each other's targets, justifications and approvals, so a
/// request's (unguessable, with `generateName`) name is the only way to read it.
pub fn base_rules(agent_name: &str) -> Vec<Rule> {
    vec![
        Rule::new(["socwarden.io"], ["actionrequests"], ["create", "get"], [] as [&str; 0]),
        Rule::new(["socwarden.io"], ["socagents"], ["get"], [agent_name]),
    ]
}

/// The parts of `grant` that no rule of `delegable` covers, as `verb group/resource` strings
/// (`get secrets`, `patch apps/deployments`). Empty when the operator may delegate all of it.
pub fn undelegable(delegable: &[Rule], grant: &Grant) -> Vec<String> {
    let mut missing = Vec::new();
    for group in &grant.api_groups {
        for resource in &grant.resources {
            for verb in &grant.verbs {
                let covered = delegable.iter().any(|d| {
                    d.api_groups.iter().any(|g| g == group)
                        && d.resources.iter().any(|r| r == resource)
                        && d.verbs.iter().any(|v| v == verb.as_str())
                        && (d.resource_names.is_empty()
                            || (!grant.resource_names.is_empty()
                                && grant.resource_names.iter().all(|n| d.resource_names.contains(n))))
                });
                if !covered {
                    missing.push(describe(verb, group, resource));
                }
            }
        }
    }
    missing
}

fn describe(verb: &Verb, group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("{} {resource}", verb.as_str())
    } else {
        format!("{} {group}/{resource}", verb.as_str())
    }
}

/// The Role each namespace should hold for an agent: the base rules in its own namespace, the
/// grants of its autonomous actions in each scope namespace. Identical rules are merged.
pub fn desired_roles(
    agent_name: &str,
    agent_namespace: &str,
    scope: &[String],
    autonomous_grants: &[Grant],
) -> BTreeMap<String, Vec<Rule>> {
    let mut roles: BTreeMap<String, BTreeSet<Rule>> = BTreeMap::new();
    roles.entry(agent_namespace.to_string()).or_default().extend(base_rules(agent_name));
    for ns in scope {
        let set = roles.entry(ns.clone()).or_default();
        set.extend(autonomous_grants.iter().map(Rule::from_grant));
    }
    roles.into_iter().map(|(ns, rules)| (ns, rules.into_iter().collect())).collect()
}

/// Whether a Role's current rules mean the same as `want` (order and duplicates aside).
pub fn same_rules(current: &[PolicyRule], want: &[Rule]) -> bool {
    let have: BTreeSet<Rule> = current.iter().map(Rule::from_policy_rule).collect();
    let want: BTreeSet<Rule> = want.iter().cloned().collect();
    have == want
}

/// Parses the operator's delegable rules (a YAML list of RBAC rules). Wildcards are refused.
pub fn parse_delegable(yaml: &str) -> Result<Vec<Rule>, String> {
    let rules: Vec<Rule> = serde_yaml::from_str(yaml).map_err(|e| format!("delegable rules: {e}"))?;
    let rules: Vec<Rule> = rules.into_iter().map(Rule::normalized).collect();
    if let Some(r) = rules.iter().find(|r| r.has_wildcard()) {
        return Err(format!("delegable rules may not use wildcards: {r:?}"));
    }
    Ok(rules)
}

/// What the operator delegates when no rules are configured; the chart's `delegable` value holds
/// the same list, and the operator's own ClusterRole must include it.
pub const DEFAULT_DELEGABLE: &str = include_str!("delegable.yaml");

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(groups: &[&str], resources: &[&str], verbs: &[Verb], names: &[&str]) -> Grant {
        Grant {
            api_groups: groups.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            verbs: verbs.to_vec(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn delegable() -> Vec<Rule> {
        parse_delegable(DEFAULT_DELEGABLE).unwrap()
    }

    #[test]
    fn default_delegable_parses_and_excludes_secrets() {
        let d = delegable();
        assert!(!d.is_empty());
        assert!(d.iter().all(|r| !r.resources.iter().any(|x| x == "secrets")));
    }

    #[test]
    fn undelegable_names_exactly_what_is_missing() {
        let d = vec![Rule::new(["networking.k8s.io"], ["networkpolicies"], ["get", "create"], [] as [&str; 0])];
        let table: Vec<(Grant, Vec<&str>)> = vec![
            (grant(&["networking.k8s.io"], &["networkpolicies"], &[Verb::Create], &[]), vec![]),
            (
                grant(&["networking.k8s.io"], &["networkpolicies"], &[Verb::Create, Verb::Delete], &[]),
                vec!["delete networking.k8s.io/networkpolicies"],
            ),
            (grant(&[""], &["secrets"], &[Verb::Get], &[]), vec!["get secrets"]),
            (
                grant(&["networking.k8s.io", "extensions"], &["networkpolicies"], &[Verb::Get], &[]),
                vec!["get extensions/networkpolicies"],
            ),
        ];
        for (g, want) in table {
            assert_eq!(undelegable(&d, &g), want, "{g:?}");
        }
    }

    #[test]
    fn resource_names_restrict_what_is_delegable() {
        let d = vec![Rule::new([""], ["configmaps"], ["get"], ["soc-config"])];
        assert!(undelegable(&d, &grant(&[""], &["configmaps"], &[Verb::Get], &["soc-config"])).is_empty());
        assert_eq!(undelegable(&d, &grant(&[""], &["configmaps"], &[Verb::Get], &[])), vec!["get configmaps"]);
        assert_eq!(
            undelegable(&d, &grant(&[""], &["configmaps"], &[Verb::Get], &["soc-config", "other"])),
            vec!["get configmaps"]
        );
    }

    #[test]
    fn wildcards_are_refused_in_delegable_rules() {
        assert!(parse_delegable("- apiGroups: ['']\n  resources: ['*']\n  verbs: [get]\n").is_err());
        assert!(parse_delegable("- apiGroups: ['']\n  resources: [pods]\n  verbs: ['*']\n").is_err());
        assert!(parse_delegable("not a list").is_err());
    }

    #[test]
    fn roles_hold_base_rules_at_home_and_grants_in_scope() {
        let g = grant(&[""], &["pods"], &[Verb::Get, Verb::Delete], &[]);
        let roles = desired_roles("bot", "agents", &["payments".into(), "web".into()], std::slice::from_ref(&g));
        assert_eq!(roles.keys().collect::<Vec<_>>(), ["agents", "payments", "web"]);
        assert_eq!(roles["agents"], base_rules("bot"));
        assert_eq!(roles["payments"], vec![Rule::from_grant(&g)]);

        // The home namespace in scope gets both.
        let roles = desired_roles("bot", "agents", &["agents".into()], std::slice::from_ref(&g));
        assert_eq!(roles.len(), 1);
        assert_eq!(roles["agents"].len(), 3);

        // No autonomous actions: scope namespaces get an empty Role (kept so RoleBindings stay stable).
        let roles = desired_roles("bot", "agents", &["web".into()], &[]);
        assert!(roles["web"].is_empty());
    }

    #[test]
    fn same_rules_ignores_order_and_duplicates() {
        let want = vec![Rule::new([""], ["pods"], ["get", "list"], [] as [&str; 0])];
        let current = vec![
            Rule::new([""], ["pods"], ["list", "get"], [] as [&str; 0]).to_policy_rule(),
            Rule::new([""], ["pods"], ["get", "list"], [] as [&str; 0]).to_policy_rule(),
        ];
        assert!(same_rules(&current, &want));
        assert!(!same_rules(&current[..1], &[]));
    }
}
