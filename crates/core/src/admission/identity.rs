//! Who is who: the ServiceAccount of an agent, built and parsed in this one place, and whether an
//! authenticated user is a ServiceAccount at all.

/// The prefix of every agent ServiceAccount's name: `warden-<agent>`.
const AGENT_SA_PREFIX: &str = "warden-";
const SA_USER_PREFIX: &str = "system:serviceaccount:";
const SA_GROUP: &str = "system:serviceaccounts";

/// (namespace, agent name): how the operator keys an agent everywhere.
pub type AgentKey = (String, String);

/// The name of the ServiceAccount of agent `agent`.
pub fn service_account_name(agent: &str) -> String {
    format!("{AGENT_SA_PREFIX}{agent}")
}

/// The user name the API server authenticates agent `agent` of `namespace` as.
pub fn agent_user(namespace: &str, agent: &str) -> String {
    format!("{SA_USER_PREFIX}{namespace}:{}", service_account_name(agent))
}

/// (namespace, agent name) of an agent ServiceAccount's user name; `None` for anyone else.
pub fn agent_of(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SA_USER_PREFIX)?;
    let (ns, sa) = rest.split_once(':')?;
    let agent = sa.strip_prefix(AGENT_SA_PREFIX)?;
    (!ns.is_empty() && !agent.is_empty()).then_some((ns, agent))
}

/// Whether `user` is agent `agent` of `namespace` itself (and not a human or another program
/// acting on its behalf). Only such requests may use the agent's autonomy and feed its behaviour.
pub fn is_agent(user: &str, namespace: &str, agent: &str) -> bool {
    agent_of(user) == Some((namespace, agent))
}

/// Whether an authenticated user is a ServiceAccount (by name or by group).
pub fn is_service_account(user: &str, groups: &[String]) -> bool {
    user.starts_with(SA_USER_PREFIX) || groups.iter().any(|g| g == SA_GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_and_parsed_the_same_way() {
        let user = agent_user("soc", "triage-bot");
        assert_eq!(user, "system:serviceaccount:soc:warden-triage-bot");
        assert_eq!(agent_of(&user), Some(("soc", "triage-bot")));
        assert!(is_service_account(&user, &[]));
        assert!(is_agent(&user, "soc", "triage-bot"));
        assert!(!is_agent(&user, "soc", "triage"), "another agent of the same namespace");
        assert!(!is_agent(&user, "other", "triage-bot"), "the same name in another namespace");
        assert!(!is_agent("alice", "soc", "triage-bot"));
    }

    #[test]
    fn other_users_are_no_agents() {
        for u in [
            "system:serviceaccount:ns:default",
            "system:serviceaccount:ns:warden-",
            "system:serviceaccount::warden-x",
            "system:serviceaccount:ns",
            "alice",
            "warden-x",
        ] {
            assert_eq!(agent_of(u), None, "{u}");
        }
        assert!(!is_service_account("alice", &["soc-leads".into()]));
        assert!(is_service_account("alice", &["system:serviceaccounts".into()]));
    }
}
