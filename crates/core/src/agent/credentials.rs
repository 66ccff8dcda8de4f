//! The names of an agent's credential objects, and when its token must be (re)issued. Pure.

use base64::Engine;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "soc-warden";
pub const AGENT_LABEL: &str = "socwarden.io/agent";
pub const AGENT_NAMESPACE_LABEL: &str = "socwarden.io/agent-namespace";
/// Selects every object the operator manages for agents.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=soc-warden";

pub const ISSUED_AT: &str = "socwarden.io/issued-at";
pub const EXPIRES_AT: &str = "socwarden.io/expires-at";
pub const TOKEN_SPEC: &str = "socwarden.io/token-spec";
/// The held token's id (`JTI=<jti>`, see `CredentialId`), so that the status names it after a
/// restart (the operator's cache of Secrets holds no data).
pub const TOKEN_ID: &str = "socwarden.io/token-id";
/// Secret type of the bound token Secret. Deliberately not `kubernetes.io/service-account-token`,
/// which would make the token controller add a legacy token that never expires.
pub const SECRET_TYPE: &str = "socwarden.io/agent-token";
pub const TOKEN_KEY: &str = "token";
/// The key of the agent Secret holding `Bearer <token>`, the whole Authorization header.
pub const AUTHORIZATION_KEY: &str = "authorization";

/// The fraction of a token's lifetime after which it is replaced.
pub const ROTATE_AT: f64 = 0.8;
pub use socwarden_api::{MAX_TTL, MIN_TTL};

pub use crate::admission::identity::{CredentialId, service_account_name};

pub fn secret_name(agent: &str) -> String {
    format!("warden-{agent}-token")
}

/// Role and RoleBinding name in any namespace; it carries the agent's namespace because agents of
/// two namespaces may share a scope namespace.
pub fn rbac_name(agent_namespace: &str, agent: &str) -> String {
    format!("warden.{agent_namespace}.{agent}")
}

/// Labels every managed object carries; the agent's name and namespace map it back to the agent.
pub fn labels(agent_namespace: &str, agent: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (AGENT_LABEL.to_string(), agent.to_string()),
        (AGENT_NAMESPACE_LABEL.to_string(), agent_namespace.to_string()),
    ])
}

/// The agent a managed object belongs to, from its labels.
pub fn owner_from_labels(labels: Option<&BTreeMap<String, String>>) -> Option<(String, String)> {
    let l = labels?;
    Some((l.get(AGENT_NAMESPACE_LABEL)?.clone(), l.get(AGENT_LABEL)?.clone()))
}

/// What a token was requested for: its lifetime and extra audiences. Stored on the Secret so a
/// change of the spec re-issues the token.
pub fn token_spec(ttl: Duration, audiences: &[String]) -> String {
    let mut aud = audiences.to_vec();
    aud.sort();
    aud.dedup();
    format!("ttl={};aud={}", ttl.as_secs(), aud.join(","))
}

/// The token currently held in an agent's Secret, as recorded in its annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct IssuedToken {
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub spec: String,
    /// Its `jti` claim (`None` for a token whose claims carry none, or one issued before the
    /// operator recorded it).
    pub id: Option<CredentialId>,
}

impl IssuedToken {
    pub fn from_annotations(a: Option<&BTreeMap<String, String>>) -> Option<Self> {
        let a = a?;
        Some(Self {
            issued_at: a.get(ISSUED_AT)?.parse().ok()?,
            expires_at: a.get(EXPIRES_AT)?.parse().ok()?,
            spec: a.get(TOKEN_SPEC)?.clone(),
            id: a.get(TOKEN_ID).and_then(|s| CredentialId::parse(s)),
        })
    }

    /// The annotations of the Secret holding it. Every key is written, the id too (`null` when
    /// none, so a merge patch removes an earlier token's).
    pub fn annotations(&self) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            (ISSUED_AT.to_string(), Some(self.issued_at.to_string())),
            (EXPIRES_AT.to_string(), Some(self.expires_at.to_string())),
            (TOKEN_SPEC.to_string(), Some(self.spec.clone())),
            (TOKEN_ID.to_string(), self.id.map(|i| i.to_string())),
        ])
    }

    /// When this token is due for replacement.
    pub fn rotate_at(&self) -> Timestamp {
        let life = self.expires_at.as_millisecond() - self.issued_at.as_millisecond();
        let at = self.issued_at.as_millisecond() + (life.max(0) as f64 * ROTATE_AT) as i64;
        Timestamp::from_millisecond(at).unwrap_or(self.issued_at)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TokenDecision {
    /// Keep the current token; look again at `recheck_at`.
    Keep { recheck_at: Timestamp },
    /// Request a new token, for this reason.
    Issue(IssueReason),
}

/// Why a token is (re)issued. The first one is an issue, every other a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueReason {
    First,
    SpecChanged,
    Expired,
    ClockJump,
    Rotation,
}

impl IssueReason {
    /// In words; also the `reason` label of `socwarden_tokens_issued_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueReason::First => "no token issued yet",
            IssueReason::SpecChanged => "lifetime or audiences changed",
            IssueReason::Expired => "token expired",
            IssueReason::ClockJump => "issue time is in the future (clock jump)",
            IssueReason::Rotation => "token past 80% of its lifetime",
        }
    }
}

/// Whether the agent needs a new token now.
pub fn token_decision(current: Option<&IssuedToken>, wanted_spec: &str, now: Timestamp) -> TokenDecision {
    let Some(t) = current else {
        return TokenDecision::Issue(IssueReason::First);
    };
    if t.spec != wanted_spec {
        return TokenDecision::Issue(IssueReason::SpecChanged);
    }
    if now >= t.expires_at {
        return TokenDecision::Issue(IssueReason::Expired);
    }
    // An issue time in the future means a clock jump; a fresh token is the safe answer.
    if t.issued_at.as_second() > now.as_second() + 300 {
        return TokenDecision::Issue(IssueReason::ClockJump);
    }
    let rotate_at = t.rotate_at();
    if now >= rotate_at {
        return TokenDecision::Issue(IssueReason::Rotation);
    }
    TokenDecision::Keep { recheck_at: rotate_at }
}

/// The claims of a JWT, unverified (the API server issued it to us).
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `aud` claim of a JWT (without verifying it: the API server issued it to us).
pub fn jwt_audiences(token: &str) -> Option<Vec<String>> {
    match jwt_claims(token)?.get("aud")? {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|x| x.as_str().map(String::from)).collect()),
        _ => None,
    }
}

/// The extra audiences of an agent's token: the spec's, and always the MCP gateway's
/// (`mcp::AUDIENCE`), so that every agent can use the gateway with the token it holds.
pub fn audiences(extra: &[String]) -> Vec<String> {
    let mut all = extra.to_vec();
    all.push(crate::mcp::AUDIENCE.to_string());
    all.sort();
    all.dedup();
    all
}

/// The audiences to request: the API server's own (so the agent can use the API) plus the extra
/// ones of the spec. Empty means "the API server's default", which needs no discovery.
pub fn request_audiences(api_audiences: &[String], extra: &[String]) -> Vec<String> {
    if extra.is_empty() {
        return Vec::new();
    }
    let mut all: Vec<String> = api_audiences.iter().chain(extra).cloned().collect();
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn token(issued: &str, expires: &str) -> IssuedToken {
        IssuedToken { issued_at: ts(issued), expires_at: ts(expires), spec: "ttl=3600;aud=".into(), id: None }
    }

    #[test]
    fn rotation_table() {
        let t = token("2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z");
        let spec = "ttl=3600;aud=";
        let cases: Vec<(Option<&IssuedToken>, &str, &str, Option<&str>)> = vec![
            (None, spec, "2026-01-01T10:00:00Z", Some("no token issued yet")),
            (Some(&t), spec, "2026-01-01T10:00:00Z", None),
            (Some(&t), spec, "2026-01-01T10:47:59Z", None),
            (Some(&t), spec, "2026-01-01T10:48:00Z", Some("token past 80% of its lifetime")),
            (Some(&t), spec, "2026-01-01T11:00:00Z", Some("token expired")),
            (Some(&t), spec, "2027-01-01T00:00:00Z", Some("token expired")),
            (Some(&t), "ttl=600;aud=", "2026-01-01T10:01:00Z", Some("lifetime or audiences changed")),
            (Some(&t), spec, "2026-01-01T09:00:00Z", Some("issue time is in the future (clock jump)")),
            // Small clock skew backwards is tolerated.
            (Some(&t), spec, "2026-01-01T09:58:00Z", None),
        ];
        for (cur, want_spec, now, want) in cases {
            let got = token_decision(cur, want_spec, ts(now));
            match (want, got) {
                (None, TokenDecision::Keep { recheck_at }) => {
                    assert_eq!(recheck_at, ts("2026-01-01T10:48:00Z"))
                }
                (Some(r), TokenDecision::Issue(got)) => assert_eq!(got.as_str(), r, "at {now}"),
                (w, g) => panic!("at {now}: wanted {w:?}, got {g:?}"),
            }
        }
    }

    /// The annotations as the API server keeps them after the merge patch: `null` removes.
    fn written(a: BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
        a.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }

    #[test]
    fn annotations_round_trip() {
        let t = token("2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z");
        assert_eq!(IssuedToken::from_annotations(Some(&written(t.annotations()))), Some(t.clone()));
        assert_eq!(t.annotations()[TOKEN_ID], None, "no id: the key is removed, not left from an earlier token");
        let id = CredentialId::parse("JTI=0f8fad5b-d9cb-469f-a165-70867728950e");
        let with_id = IssuedToken { id, ..t };
        assert_eq!(IssuedToken::from_annotations(Some(&written(with_id.annotations()))), Some(with_id.clone()));
        assert_eq!(IssuedToken::from_annotations(None), None);
        let mut broken = written(with_id.annotations());
        broken.insert(ISSUED_AT.into(), "yesterday".into());
        assert_eq!(IssuedToken::from_annotations(Some(&broken)), None);
        // An id that does not parse is no id; the token is still the one held.
        let mut odd = written(with_id.annotations());
        odd.insert(TOKEN_ID.into(), "JTI=not-a-uuid".into());
        assert_eq!(IssuedToken::from_annotations(Some(&odd)).map(|t| t.id), Some(None));
    }

    #[test]
    fn token_spec_ignores_audience_order() {
        let d = Duration::from_secs(3600);
        assert_eq!(token_spec(d, &["b".into(), "a".into()]), token_spec(d, &["a".into(), "b".into(), "a".into()]));
        assert_ne!(token_spec(d, &[]), token_spec(Duration::from_secs(600), &[]));
    }

    #[test]
    fn reads_jwt_audiences() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let t = format!("{}.{}.sig", enc("{}"), enc(r#"{"aud":["https://kubernetes.default.svc"]}"#));
        assert_eq!(jwt_audiences(&t), Some(vec!["https://kubernetes.default.svc".to_string()]));
        let t = format!("{}.{}.sig", enc("{}"), enc(r#"{"aud":"x"}"#));
        assert_eq!(jwt_audiences(&t), Some(vec!["x".to_string()]));
        assert_eq!(jwt_audiences("garbage"), None);
        assert_eq!(jwt_audiences("a.!!!.c"), None);
    }

    #[test]
    fn audiences_always_include_the_api_server() {
        let api = vec!["https://kubernetes.default.svc".to_string()];
        assert!(request_audiences(&api, &[]).is_empty());
        assert_eq!(
            request_audiences(&api, &["soc-tools".into()]),
            vec!["https://kubernetes.default.svc".to_string(), "soc-tools".to_string()]
        );
    }

    #[test]
    fn owner_comes_back_from_labels() {
        let l = labels("agents", "bot");
        assert_eq!(owner_from_labels(Some(&l)), Some(("agents".into(), "bot".into())));
        assert_eq!(owner_from_labels(None), None);
    }
}
