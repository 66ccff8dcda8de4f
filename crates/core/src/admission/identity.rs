//! Who is who: the ServiceAccount of an agent, built and parsed in this one place, whether an
//! authenticated user is a ServiceAccount at all, and which token a call was made with
//! (`CredentialId`).

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

/// The key of a user's `extra` under which the API server names the credential a request was
/// authenticated with (Kubernetes 1.30+; audit events, admission and token reviews).
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";
const JTI_PREFIX: &str = "JTI=";

/// Which ServiceAccount token made a call: the token's `jti` claim, a random UUID the API server
/// chose when it issued the token. Written as the API server writes it — in audit events'
/// `user.extra` (`CREDENTIAL_ID_KEY`) and in the `authentication.kubernetes.io/issued-credential-id`
/// annotation of the TokenRequest that issued it — so one string finds it in every log:
/// `JTI=<uuid>`, the UUID in lowercase hex with hyphens (Go's `uuid.NewString`).
///
/// Parsed, never compared as text: only that exact form is an id. Another kind of credential
/// (`X509SHA256=…`, a client certificate), a jti that is no UUID, capitals, spaces or anything
/// around it are refused, so two spellings can never name one token, nor one spelling two.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId([u8; 16]);

impl CredentialId {
    /// From the form the API server writes, `JTI=<uuid>`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_jti(s.strip_prefix(JTI_PREFIX)?)
    }

    /// From a token's `jti` claim: a UUID, `8-4-4-4-12` lowercase hex digits.
    pub fn from_jti(jti: &str) -> Option<Self> {
        let b = jti.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0;
        for (i, c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if *c != b'-' {
                    return None;
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
            nibbles += 1;
        }
        Some(Self(out))
    }

    /// The id of a token the operator holds (one it was issued, or issued to an agent): its `jti`
    /// claim, read without verifying the signature — the API server handed the token to us.
    pub fn of_token(token: &str) -> Option<Self> {
        Self::from_jti(crate::agent::credentials::jwt_claims(token)?.get("jti")?.as_str()?)
    }
}

/// `JTI=<uuid>`.
impl std::fmt::Display for CredentialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(JTI_PREFIX)?;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for CredentialId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The distinct ids among `ids`, at most `max`, in the order first seen.
pub fn distinct_ids(ids: impl IntoIterator<Item = CredentialId>, max: usize) -> Vec<CredentialId> {
    let mut out: Vec<CredentialId> = Vec::new();
    for id in ids {
        if out.len() >= max {
            break;
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn a_credential_id_has_one_spelling() {
        let id = CredentialId::parse(&format!("JTI={UUID}")).expect("the API server's form");
        assert_eq!(id.to_string(), format!("JTI={UUID}"));
        assert_eq!(CredentialId::from_jti(UUID), Some(id), "the claim and the audit event name one token");
        let refused = [
            ("", "empty"),
            ("JTI=", "no jti"),
            (UUID, "no prefix"),
            ("jti=0f8fad5b-d9cb-469f-a165-70867728950e", "a prefix in other case"),
            ("JTI=0F8FAD5B-D9CB-469F-A165-70867728950E", "capitals"),
            ("JTI= 0f8fad5b-d9cb-469f-a165-70867728950e", "a space"),
            ("JTI=0f8fad5b-d9cb-469f-a165-70867728950e ", "a trailing space"),
            ("JTI=0f8fad5b-d9cb-469f-a165-70867728950e\n", "a trailing newline"),
            ("JTI=0f8fad5bd9cb469fa16570867728950e", "no hyphens"),
            ("JTI={0f8fad5b-d9cb-469f-a165-70867728950e}", "braces"),
            ("JTI=0f8fad5b-d9cb-469f-a165-70867728950", "one digit short"),
            ("JTI=0f8fad5b-d9cb-469f-a165-70867728950e0", "one digit long"),
            ("JTI=0f8fad5b-d9cb4-69f-a165-70867728950e", "a hyphen moved"),
            ("JTI=0g8fad5b-d9cb-469f-a165-70867728950e", "not hex"),
            ("JTI=0f8fad5b-d9cb-469f-a165-70867728950é", "not ASCII"),
            ("X509SHA256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "a certificate"),
            ("JTI=JTI=0f8fad5b-d9cb-469f-a165-70867728950e", "twice"),
        ];
        for (s, case) in refused {
            assert_eq!(CredentialId::parse(s), None, "{case}: {s:?}");
        }
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(format!("JTI={UUID}")));
    }

    #[test]
    fn the_id_of_a_token_is_its_jti_claim() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = |claims: &str| format!("{}.{}.sig", enc("{}"), enc(claims));
        let id = CredentialId::of_token(&token(&format!(r#"{{"sub":"x","jti":"{UUID}"}}"#)));
        assert_eq!(id.map(|i| i.to_string()), Some(format!("JTI={UUID}")));
        for claims in [r#"{"sub":"x"}"#, r#"{"jti":7}"#, r#"{"jti":"not-a-uuid"}"#, r#"{"jti":["x"]}"#, "null"] {
            assert_eq!(CredentialId::of_token(&token(claims)), None, "{claims}");
        }
        assert_eq!(CredentialId::of_token("no.token"), None);
        assert_eq!(CredentialId::of_token(""), None);
    }

    #[test]
    fn distinct_ids_keep_the_first_seen_up_to_a_bound() {
        let id = |n: u8| CredentialId([n; 16]);
        assert_eq!(distinct_ids([id(1), id(2), id(1), id(3)], 8), vec![id(1), id(2), id(3)]);
        assert_eq!(distinct_ids([id(1), id(2), id(3)], 2), vec![id(1), id(2)]);
    }

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
