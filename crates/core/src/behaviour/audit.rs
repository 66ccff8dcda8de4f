//! The audit sink: reads the API server's audit webhook payload (`audit.k8s.io/v1` EventList),
//! keeps only the calls of agents' ServiceAccounts and turns them into observations. Pure: bytes in,
//! observations out. Anything that is not a readable EventList is refused (400), never a crash.

use crate::admission::identity::{AgentKey, agent_of};
use crate::behaviour::drift::Observation;
use crate::behaviour::records::Access;
use jiff::Timestamp;
use serde::Deserialize;

/// Audit batches above this are refused unread: the API server's batches hold at most
/// `--audit-webhook-batch-max-size` events (400 by default) of a few KiB each at Metadata level.
pub const MAX_BODY: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventList {
    kind: String,
    #[serde(default)]
    items: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    #[serde(default)]
    stage_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// Client plumbing, not behaviour: discovery (`/api`, `/apis`, `/version`, `/openapi`), asking
/// what it may do (self access and rules reviews), reading its own SocAgent and filing its own
/// requests (recorded as requests already). Kubectl does the first two before any command, so
/// counting them made an agent's first legitimate use of an action look novel. Only successful
/// calls are plumbing: a refused one is still a signal.
fn plumbing(e: &Event, ns: &str, agent: &str, code: u16) -> bool {
    if !(200..400).contains(&code) {
        return false;
    }
    let Some(r) = &e.object_ref else {
        let path = e.request_uri.split('?').next().unwrap_or_default();
        return ["/api", "/apis", "/version", "/openapi"]
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')));
    };
    match (r.api_group.as_str(), r.resource.as_str()) {
        ("authorization.k8s.io", "selfsubjectaccessreviews" | "selfsubjectrulesreviews") => true,
        ("socwarden.io", "socagents") => r.namespace == ns && r.name == agent && r.subresource.is_empty(),
        ("socwarden.io", "actionrequests") => r.namespace == ns && e.verb == "create",
        _ => false,
    }
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

/// One call of an agent: the observation for the statistical model and, when it named a resource
/// and authorization let it through, the access to match with its record.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub agent: AgentKey,
    pub observation: Observation,
    pub access: Option<Access>,
}

pub type Batch = Vec<Call>;

/// The calls of an EventList. Events of anyone but agents are dropped, and so is client plumbing.
pub fn parse(body: &[u8], now: Timestamp) -> Result<Batch, String> {
    let list: EventList = serde_json::from_slice(body).map_err(|e| format!("not an audit EventList: {e}"))?;
    if list.kind != "EventList" {
        return Err(format!("expected kind EventList, got {:?}", list.kind));
    }
    let mut out = Vec::new();
    for e in list.items {
        // One observation per call: the completed stage (or a panic).
        if e.stage != "ResponseComplete" && e.stage != "Panic" {
            continue;
        }
        let Some((ns, agent)) = agent_of(&e.user.username) else { continue };
        let code = e.response_status.as_ref().map(|s| s.code).unwrap_or(0);
        if plumbing(&e, ns, agent, code) {
            continue;
        }
        let resource = match &e.object_ref {
            Some(r) => {
                let group = if r.api_group.is_empty() { String::new() } else { format!("{}/", r.api_group) };
                let sub = if r.subresource.is_empty() { String::new() } else { format!("/{}", r.subresource) };
                format!("{group}{}{sub}", r.resource)
            }
            None => "(non-resource)".into(),
        };
        let at = e.stage_timestamp.as_deref().and_then(|t| t.parse().ok()).unwrap_or(now);
        // Only a call that succeeded acted: one refused by authorization is an out-of-scope
        // attempt, one refused by admission or failing (a request the webhook refused, a delete
        // of what is gone) changed nothing. Both stay observations for the statistics.
        let access = match &e.object_ref {
            Some(r) if (200..400).contains(&code) => Some(Access {
                at,
                verb: e.verb.clone(),
                group: r.api_group.clone(),
                resource: r.resource.clone(),
                subresource: r.subresource.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                code,
            }),
            _ => None,
        };
        let observation = Observation::api(at, &e.verb, &resource, code);
        out.push(Call { agent: (ns.to_string(), agent.to_string()), observation, access });
    }
    Ok(out)
}

/// Constant-time comparison of a presented bearer token.
pub fn token_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() || expected.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::drift::Kind;
    use serde_json::json;

    fn list(items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})).unwrap()
    }

    fn event(user: &str, verb: &str, resource: &str, code: u16) -> serde_json::Value {
        json!({"level": "Metadata", "stage": "ResponseComplete", "verb": verb,
               "user": {"username": user, "groups": ["system:serviceaccounts"]},
               "objectRef": {"resource": resource, "namespace": "web", "apiVersion": "v1"},
               "responseStatus": {"code": code}, "stageTimestamp": "2026-01-01T00:00:01.5Z"})
    }

    #[test]
    fn keeps_only_agents_and_completed_calls() {
        let body = list(vec![
            event("system:serviceaccount:agents:warden-bot", "get", "secrets", 403),
            event("system:serviceaccount:agents:default", "get", "pods", 200),
            event("lead-a", "get", "pods", 200),
            json!({"stage": "RequestReceived", "verb": "get", "user": {"username": "system:serviceaccount:agents:warden-bot"}}),
        ]);
        let obs = parse(&body, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].agent, ("agents".to_string(), "bot".to_string()));
        assert_eq!(obs[0].observation.kind, Kind::Api { key: "get secrets".into(), code: 403 });
        assert_eq!(obs[0].observation.at, "2026-01-01T00:00:01.5Z".parse::<Timestamp>().unwrap());
        assert_eq!(obs[0].access, None, "refused");
    }

    #[test]
    fn groups_and_subresources_are_part_of_the_key() {
        let mut e = event("system:serviceaccount:a:warden-b", "create", "networkpolicies", 201);
        e["objectRef"]["apiGroup"] = json!("networking.k8s.io");
        let mut s = event("system:serviceaccount:a:warden-b", "get", "pods", 200);
        s["objectRef"]["subresource"] = json!("log");
        let obs = parse(&list(vec![e, s]), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(
            obs[0].observation.kind,
            Kind::Api { key: "create networking.k8s.io/networkpolicies".into(), code: 201 }
        );
        assert_eq!(obs[1].observation.kind, Kind::Api { key: "get pods/log".into(), code: 200 });
    }

    #[test]
    fn only_calls_that_succeeded_are_accesses() {
        let mut delete = event("system:serviceaccount:agents:warden-bot", "delete", "pods", 200);
        delete["objectRef"]["name"] = json!("web-1");
        let refused = event("system:serviceaccount:agents:warden-bot", "delete", "pods", 403);
        let missing = event("system:serviceaccount:agents:warden-bot", "patch", "pods", 404);
        let mut denied = event("system:serviceaccount:agents:warden-bot", "create", "actionrequests", 400);
        denied["objectRef"]["apiGroup"] = json!("socwarden.io");
        let obs = parse(&list(vec![delete, refused, missing, denied]), Timestamp::UNIX_EPOCH).unwrap();
        let w = obs[0].access.as_ref().expect("an access");
        assert!(w.writes());
        assert_eq!(w.to_string(), "delete pods web/web-1 → 200");
        assert_eq!(obs[1].access, None, "refused by authorization: an out-of-scope attempt, not a write");
        assert_eq!(obs[2].access, None, "failed: nothing changed");
        assert_eq!(obs[3].access, None, "a request the webhook refused is not an unrecorded write");
        assert_eq!(obs.len(), 4, "all four are observations for the statistics");
    }

    #[test]
    fn client_plumbing_is_not_behaviour() {
        let bot = "system:serviceaccount:agents:warden-bot";
        let non_resource = |uri: &str, code: u16| {
            json!({"stage": "ResponseComplete", "verb": "get", "requestURI": uri, "user": {"username": bot},
                   "responseStatus": {"code": code}})
        };
        let own = |group: &str, resource: &str, verb: &str, ns: &str, name: &str, code: u16| {
            json!({"stage": "ResponseComplete", "verb": verb, "user": {"username": bot},
                   "objectRef": {"apiGroup": group, "resource": resource, "namespace": ns, "name": name},
                   "responseStatus": {"code": code}})
        };
        let plumbing = vec![
            non_resource("/api", 200),
            non_resource("/apis/networking.k8s.io/v1", 200),
            non_resource("/version?timeout=32s", 200),
            non_resource("/openapi/v2", 200),
            own("authorization.k8s.io", "selfsubjectaccessreviews", "create", "", "", 201),
            own("socwarden.io", "socagents", "get", "agents", "bot", 200),
            own("socwarden.io", "actionrequests", "create", "agents", "r1", 201),
        ];
        assert_eq!(parse(&list(plumbing), Timestamp::UNIX_EPOCH).unwrap(), vec![], "none of it is behaviour");
        let behaviour = vec![
            non_resource("/metrics", 403),
            non_resource("/apis", 403),
            non_resource("/apiserver-internal", 200),
            own("socwarden.io", "socagents", "get", "agents", "other-bot", 200),
            own("socwarden.io", "socagents", "patch", "agents", "bot", 403),
            own("socwarden.io", "actionrequests", "create", "elsewhere", "r1", 403),
            own("socwarden.io", "actionrequests", "delete", "agents", "r1", 403),
            own("", "pods", "delete", "web", "web-1", 200),
        ];
        let n = behaviour.len();
        assert_eq!(parse(&list(behaviour), Timestamp::UNIX_EPOCH).unwrap().len(), n, "every one is behaviour");
    }

    #[test]
    fn garbage_is_refused_not_fatal() {
        use crate::testing::{Rng, random_value};
        assert!(parse(b"", Timestamp::UNIX_EPOCH).is_err());
        assert!(parse(b"{\"kind\":\"Pod\"}", Timestamp::UNIX_EPOCH).is_err());
        let mut rng = Rng(42);
        let seed = list(vec![event("system:serviceaccount:agents:warden-bot", "get", "secrets", 403)]);
        for _ in 0..3000 {
            let mut b = seed.clone();
            let cut = rng.below(b.len() + 1);
            b.truncate(cut);
            let _ = parse(&b, Timestamp::UNIX_EPOCH);
            let v = random_value(&mut rng, 0);
            let _ =
                parse(&serde_json::to_vec(&json!({"kind": "EventList", "items": [v]})).unwrap(), Timestamp::UNIX_EPOCH);
        }
    }

    #[test]
    fn bearer_tokens() {
        assert!(token_matches(Some("Bearer abc"), "abc"));
        assert!(!token_matches(Some("Bearer abd"), "abc"));
        assert!(!token_matches(Some("abc"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(!token_matches(Some("Bearer "), ""));
        assert_eq!(agent_of("system:serviceaccount:ns:warden-x"), Some(("ns", "x")));
        assert_eq!(agent_of("system:serviceaccount:ns:x"), None);
    }
}
