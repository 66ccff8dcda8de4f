//! The audit sink: reads the API server's audit webhook payload (`audit.k8s.io/v1` EventList),
//! keeps only the calls of agents' ServiceAccounts and turns them into observations. Pure: bytes in,
//! observations out. Anything that is not a readable EventList is refused (400), never a crash.
//!
//! A batch is read as it arrives, whatever its size: of each event only the fields below are kept
//! (request and response objects, annotations and the rest are skipped unread), and the calls are
//! handed over a part at a time once they weigh more than `PART_CALLS` or `PART_BYTES`. A batch
//! of any size thus costs the parts being judged, not its bytes. (Refusing batches over a size was
//! issue 28: an agent padded the batch of its unrecorded delete with ~1 MB calls, the batch was
//! refused, and the API server dropped the delete with it.)

use crate::admission::identity::{AgentKey, CREDENTIAL_ID_KEY, CredentialId, agent_of};
use crate::behaviour::drift::{Kind, Observation};
use crate::behaviour::records::Access;
use jiff::Timestamp;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A batch's calls are handed over once this many are read (and at its end).
pub const PART_CALLS: usize = 4096;
/// ... or once the text they keep weighs this much (an agent chooses how long the names in its
/// calls are; the API server's request line bounds each to 1 MiB).
pub const PART_BYTES: usize = 1 << 20;
/// What reading one batch may hold at once: the part being filled, the part waiting to be judged
/// and the one being judged, a few pieces of the body in transit, and the longest kept field of
/// the event being read. The sink reserves this much of its body budget per large batch.
pub const BATCH_MEMORY: usize = 4 << 20;

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
    /// The token the call was made with, from `extra` (see `credential_of`).
    #[serde(default, rename = "extra", deserialize_with = "credential_of")]
    credential: Option<CredentialId>,
}

/// The credential id of a user's `extra`: the one value of `CREDENTIAL_ID_KEY`, if it is exactly
/// one well-formed id (`CredentialId::parse`). Anything else — no such key, an empty list, two
/// values, the key twice, a value of another type or form, an `extra` that is no map — is no id,
/// and never makes the event (or its batch) unreadable: the call is still judged, it just names
/// no token. Nothing of `extra` is kept but the id.
fn credential_of<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CredentialId>, D::Error> {
    Lenient(Level::Extra).deserialize(d)
}

/// Where in `extra` a value is.
#[derive(Clone, Copy)]
enum Level {
    /// `extra` itself: a map of lists.
    Extra,
    /// The list under `CREDENTIAL_ID_KEY`.
    Values,
    /// One value of that list.
    Value,
}

/// Reads a value at its `Level` if it has the shape expected there, and skips it as no id
/// otherwise. Keys and values are compared as they stream by: nothing is allocated.
struct Lenient(Level);

impl<'de> DeserializeSeed<'de> for Lenient {
    type Value = Option<CredentialId>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lenient {
    type Value = Option<CredentialId>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Level::Extra = self.0 else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found: Option<Option<CredentialId>> = None;
        while let Some(ours) = map.next_key_seed(IsKey(CREDENTIAL_ID_KEY))? {
            if ours {
                let id = map.next_value_seed(Lenient(Level::Values))?;
                // The key twice: which one the authenticator meant is not ours to guess.
                found = Some(if found.is_some() { None } else { id });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.flatten())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let Level::Values = self.0 else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let (mut values, mut id) = (0usize, None);
        while let Some(v) = seq.next_element_seed(Lenient(Level::Value))? {
            values += 1;
            id = v;
        }
        Ok(id.filter(|_| values == 1))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match self.0 {
            Level::Value => CredentialId::parse(v),
            _ => None,
        })
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether a map key is the given one.
struct IsKey(&'static str);

impl<'de> DeserializeSeed<'de> for IsKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
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

/// The calls of an EventList, all at once (see `read`).
pub fn parse(body: &[u8], now: Timestamp) -> Result<Batch, String> {
    let mut out = Vec::new();
    read_slice(body, now, |part| out.extend(part))?;
    Ok(out)
}

/// Reads an EventList from `body` as it arrives and hands its calls to `judge`: at the end, or a
/// part at a time once they weigh more than a part (`PART_CALLS`, `PART_BYTES`). Events of anyone
/// but agents are dropped, and so is client plumbing; of the rest only what the sink uses is kept.
/// Returns how many events were read. A body that is not an EventList is an error; the parts
/// handed over before the error was found (only in a batch larger than a part) stay handed over.
pub fn read(body: impl std::io::Read, now: Timestamp, judge: impl FnMut(Batch)) -> Result<usize, String> {
    read_from(serde_json::Deserializer::from_reader(std::io::BufReader::new(body)), now, judge)
}

/// `read` from a body held whole (a small batch: faster than reading it as it arrives).
pub fn read_slice(body: &[u8], now: Timestamp, judge: impl FnMut(Batch)) -> Result<usize, String> {
    read_from(serde_json::Deserializer::from_slice(body), now, judge)
}

fn read_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    now: Timestamp,
    mut judge: impl FnMut(Batch),
) -> Result<usize, String> {
    let mut reading = Reading { now, judge: &mut judge, part: Vec::new(), weight: 0, events: 0 };
    let kind = List(&mut reading)
        .deserialize(&mut de)
        .and_then(|kind| de.end().map(|()| kind))
        .map_err(|e| format!("not an audit EventList: {e}"))?;
    if kind.as_deref() != Some("EventList") {
        return Err(format!("expected kind EventList, got {:?}", kind.unwrap_or_default()));
    }
    reading.flush();
    Ok(reading.events)
}

/// The calls read and not handed over yet.
struct Reading<'a, F: FnMut(Batch)> {
    now: Timestamp,
    judge: &'a mut F,
    part: Batch,
    /// The bytes of text the part keeps.
    weight: usize,
    events: usize,
}

impl<F: FnMut(Batch)> Reading<'_, F> {
    fn push(&mut self, e: Event) {
        self.events += 1;
        let Some(call) = call_of(e, self.now) else { return };
        self.weight += weight(&call);
        self.part.push(call);
        if self.part.len() >= PART_CALLS || self.weight >= PART_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.weight = 0;
        let part = std::mem::take(&mut self.part);
        if !part.is_empty() {
            (self.judge)(part);
        }
    }
}

/// The bytes of text a call keeps, and a little for the rest.
fn weight(c: &Call) -> usize {
    let key = match &c.observation.kind {
        Kind::Api { key, .. } => key.len(),
        Kind::Request { action, target, .. } => action.len() + target.len(),
    };
    let access = c.access.as_ref().map_or(0, |a| {
        a.verb.len() + a.group.len() + a.resource.len() + a.subresource.len() + a.namespace.len() + a.name.len()
    });
    128 + c.agent.0.len() + c.agent.1.len() + key + access
}

/// The EventList: its `kind`, and its `items` read one event at a time. Everything else is
/// skipped unread.
struct List<'r, 'a, F: FnMut(Batch)>(&'r mut Reading<'a, F>);

impl<'de, F: FnMut(Batch)> DeserializeSeed<'de> for List<'_, '_, F> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Batch)> Visitor<'de> for List<'_, '_, F> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an audit EventList")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<String>()?),
                "items" => map.next_value_seed(Items(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kind)
    }
}

struct Items<'r, 'a, F: FnMut(Batch)>(&'r mut Reading<'a, F>);

impl<'de, F: FnMut(Batch)> DeserializeSeed<'de> for Items<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Batch)> Visitor<'de> for Items<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of audit events")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(e) = seq.next_element::<Event>()? {
            self.0.push(e);
        }
        Ok(())
    }
}

/// The call of one event, if it is an agent's completed call that is not client plumbing.
fn call_of(e: Event, now: Timestamp) -> Option<Call> {
    // One observation per call: the completed stage (or a panic).
    if e.stage != "ResponseComplete" && e.stage != "Panic" {
        return None;
    }
    let (ns, agent) = agent_of(&e.user.username)?;
    let code = e.response_status.as_ref().map(|s| s.code).unwrap_or(0);
    if plumbing(&e, ns, agent, code) {
        return None;
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
    let credential = e.user.credential;
    let observation = Observation::api(at, &e.verb, &resource, code).with_credential(credential);
    let agent = (ns.to_string(), agent.to_string());
    let access = match e.object_ref {
        Some(r) if (200..400).contains(&code) => Some(Access {
            at,
            verb: e.verb,
            group: r.api_group,
            resource: r.resource,
            subresource: r.subresource,
            namespace: r.namespace,
            name: r.name,
            code,
            credential,
        }),
        _ => None,
    };
    Some(Call { agent, observation, access })
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

    const ID: &str = "JTI=0f8fad5b-d9cb-469f-a165-70867728950e";

    /// The credential the call of one event (a delete, so both the observation and the access
    /// carry it) names, with `extra` as given.
    fn credential_with(extra: Option<serde_json::Value>) -> Result<Option<String>, String> {
        let mut e = event("system:serviceaccount:agents:warden-bot", "delete", "pods", 200);
        if let Some(x) = extra {
            e["user"]["extra"] = x;
        }
        let calls = parse(&list(vec![e]), Timestamp::UNIX_EPOCH)?;
        assert_eq!(calls.len(), 1, "the call is judged whatever its extra");
        let access = calls[0].access.as_ref().expect("a write").credential;
        assert_eq!(access, calls[0].observation.credential, "one credential per call");
        Ok(access.map(|c| c.to_string()))
    }

    #[test]
    fn a_call_names_the_token_it_was_made_with() {
        // As a 1.35 API server sends it for a Secret-bound token (no pod or node).
        let extra = json!({"authentication.kubernetes.io/credential-id": [ID]});
        assert_eq!(credential_with(Some(extra)), Ok(Some(ID.to_string())));
        // A pod-bound token also names its pod and node: only the id is kept.
        let pod = json!({"authentication.kubernetes.io/pod-name": ["bot-7d9"],
                         "authentication.kubernetes.io/pod-uid": ["2b7e"],
                         "authentication.kubernetes.io/node-name": ["node-1"],
                         "authentication.kubernetes.io/credential-id": [ID]});
        assert_eq!(credential_with(Some(pod)), Ok(Some(ID.to_string())));
        assert_eq!(credential_with(None), Ok(None), "an API server before 1.30: no extra");
    }

    #[test]
    fn a_malformed_extra_names_no_token_and_breaks_nothing() {
        let key = CREDENTIAL_ID_KEY;
        let other = "JTI=11111111-2222-4333-8444-555555555555";
        let cases = [
            (json!(null), "null"),
            (json!({}), "no key"),
            (json!("JTI=0f8fad5b-d9cb-469f-a165-70867728950e"), "extra is a string"),
            (json!([ID]), "extra is a list"),
            (json!(7), "extra is a number"),
            (json!({key: []}), "an empty list"),
            (json!({key: ID}), "a string, not a list"),
            (json!({key: [ID, other]}), "two values"),
            (json!({key: [ID, ID]}), "the same value twice"),
            (json!({key: [ID, 7]}), "a value and a number"),
            (json!({key: [[ID]]}), "a nested list"),
            (json!({key: [{"id": ID}]}), "an object"),
            (json!({key: [null]}), "null"),
            (json!({key: {"0": ID}}), "a map"),
            (json!({key: ["jti=0f8fad5b-d9cb-469f-a165-70867728950e"]}), "another case"),
            (json!({key: ["JTI=0F8FAD5B-D9CB-469F-A165-70867728950E"]}), "capitals"),
            (json!({key: [format!(" {ID}")]}), "a space"),
            (
                json!({key: ["X509SHA256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]}),
                "a certificate",
            ),
            (json!({key: ["JTI=".to_string() + &"a".repeat(100_000)]}), "a long value"),
            (json!({"authentication.kubernetes.io/credential-id ": [ID]}), "a key with a space"),
            (json!({"Authentication.kubernetes.io/credential-id": [ID]}), "a key in another case"),
        ];
        for (extra, case) in cases {
            assert_eq!(credential_with(Some(extra)), Ok(None), "{case}");
        }
        // The key twice (a JSON object may repeat a key): neither is taken.
        let twice = format!(
            r#"{{"kind":"EventList","items":[{{"stage":"ResponseComplete","verb":"delete","user":{{"username":"system:serviceaccount:agents:warden-bot","extra":{{"{key}":["{ID}"],"{key}":["{other}"]}}}},"objectRef":{{"resource":"pods","namespace":"web","name":"p"}},"responseStatus":{{"code":200}}}}]}}"#
        );
        let calls = parse(twice.as_bytes(), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(calls[0].access.as_ref().unwrap().credential, None, "the key twice");
        // An escaped key is the same key.
        let once = twice.replace(&format!(r#","{key}":["{other}"]"#), "");
        assert_ne!(once, twice);
        let escaped = once.replace(key, "authentication.kubernetes.io\\/credential-id");
        let calls = parse(escaped.as_bytes(), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(calls[0].access.as_ref().unwrap().credential.map(|c| c.to_string()), Some(ID.to_string()));
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

    /// An EventList read from `events` produced on demand, never held whole.
    struct Generated<I: Iterator<Item = Vec<u8>>> {
        events: I,
        pending: Vec<u8>,
        at: usize,
        first: bool,
        done: bool,
    }

    impl<I: Iterator<Item = Vec<u8>>> std::io::Read for Generated<I> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.at == self.pending.len() {
                if self.done {
                    return Ok(0);
                }
                self.at = 0;
                self.pending = match self.events.next() {
                    Some(e) if self.first => {
                        [br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#.to_vec(), e].concat()
                    }
                    Some(e) => [b",".to_vec(), e].concat(),
                    None => {
                        self.done = true;
                        if self.first { br#"{"kind":"EventList","items":[]}"#.to_vec() } else { b"]}".to_vec() }
                    }
                };
                self.first = false;
            }
            let n = buf.len().min(self.pending.len() - self.at);
            buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn generated<I: Iterator<Item = Vec<u8>>>(events: I) -> Generated<I> {
        Generated { events, pending: Vec::new(), at: 0, first: true, done: false }
    }

    /// A ~1 MB read of `pods` by the agent, as the API server logs it at Request level (at
    /// Metadata level the bulk is a ~1 MB requestURI instead).
    fn padded(i: usize) -> Vec<u8> {
        let mut e = event("system:serviceaccount:agents:warden-bot", "list", "pods", 200);
        e["requestURI"] = json!(format!("/api/v1/namespaces/web/pods?limit=1&pad={}", "<".repeat(1000)));
        e["requestObject"] = json!({"pad": "x".repeat(1 << 20), "n": i, "nested": [[[{"a": "<>&"}]]]});
        serde_json::to_vec(&e).unwrap()
    }

    #[test]
    fn a_write_among_megabyte_calls_is_read_whatever_the_batch_weighs() {
        // 10 calls of ~1 MB around an unrecorded delete: over the former 8 MiB limit
        // above which the sink answered 413 and the API server dropped the delete with the rest.
        let mut delete = event("system:serviceaccount:agents:warden-bot", "delete", "pods", 200);
        delete["objectRef"]["name"] = json!("victim-0");
        let delete = serde_json::to_vec(&delete).unwrap();
        let events = (0..11).map(|i| if i == 5 { delete.clone() } else { padded(i) });
        let mut calls = Vec::new();
        let n = read(generated(events), Timestamp::UNIX_EPOCH, |part| calls.extend(part)).unwrap();
        assert_eq!((n, calls.len()), (11, 11));
        let writes: Vec<String> =
            calls.iter().filter_map(|c| c.access.as_ref()).filter(|a| a.writes()).map(|a| a.to_string()).collect();
        assert_eq!(writes, vec!["delete pods web/victim-0 → 200"], "the delete is seen");
    }

    #[test]
    fn a_large_batch_is_handed_over_a_part_at_a_time() {
        let n = 3 * PART_CALLS + 7;
        let one = serde_json::to_vec(&event("system:serviceaccount:agents:warden-bot", "get", "pods", 200)).unwrap();
        let mut parts = Vec::new();
        let read_events =
            read(generated(std::iter::repeat_n(one, n)), Timestamp::UNIX_EPOCH, |p| parts.push(p.len())).unwrap();
        assert_eq!(read_events, n);
        assert_eq!(parts, vec![PART_CALLS, PART_CALLS, PART_CALLS, 7], "by count");

        // Calls that keep long names weigh more: a part is handed over at PART_BYTES.
        let long = |i: usize| {
            let mut e = event("system:serviceaccount:agents:warden-bot", "delete", "pods", 200);
            e["objectRef"]["name"] = json!(format!("{i}-{}", "n".repeat(100_000)));
            serde_json::to_vec(&e).unwrap()
        };
        let mut weights = Vec::new();
        read(generated((0..40).map(long)), Timestamp::UNIX_EPOCH, |p| {
            weights.push(p.iter().map(weight).sum::<usize>())
        })
        .unwrap();
        assert!(weights.len() >= 3, "{weights:?}");
        assert!(
            weights.iter().all(|w| *w < PART_BYTES + 200_000),
            "no part weighs much more than PART_BYTES: {weights:?}"
        );
    }

    #[test]
    fn what_the_sink_does_not_use_is_skipped_and_key_order_does_not_matter() {
        let plain = event("system:serviceaccount:agents:warden-bot", "get", "secrets", 403);
        let mut heavy = plain.clone();
        heavy["requestObject"] = json!({"deep": [[[[{"x": "<\\u003c"}]]]], "s": "z".repeat(10_000)});
        heavy["annotations"] = json!({"authorization.k8s.io/decision": "forbid"});
        heavy["unknownField"] = json!([1, 2.5, null, true]);
        let expected = parse(&list(vec![plain]), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(parse(&list(vec![heavy.clone()]), Timestamp::UNIX_EPOCH).unwrap(), expected);
        // A log forwarder may sort the keys: kind after items.
        let sorted =
            serde_json::to_vec(&json!({"apiVersion": "audit.k8s.io/v1", "items": [heavy], "kind": "EventList"}));
        assert_eq!(parse(&sorted.unwrap(), Timestamp::UNIX_EPOCH).unwrap(), expected);
        let not_a_list = serde_json::to_vec(&json!({"items": [], "kind": "PodList"})).unwrap();
        assert_eq!(parse(&not_a_list, Timestamp::UNIX_EPOCH), Err("expected kind EventList, got \"PodList\"".into()));
        assert!(parse(br#"{"items": []}"#, Timestamp::UNIX_EPOCH).is_err(), "no kind");
        assert!(parse(br#"{"kind": "EventList", "items": []} x"#, Timestamp::UNIX_EPOCH).is_err(), "trailing bytes");
    }

    #[test]
    fn parts_handed_over_before_a_broken_end_stay_handed_over() {
        // A batch cut short (the connection broke) or malformed past its first part: what was read
        // was judged, and the answer is still an error (the API server sends the batch again).
        let one = serde_json::to_vec(&event("system:serviceaccount:agents:warden-bot", "get", "pods", 200)).unwrap();
        let mut body = br#"{"kind":"EventList","items":["#.to_vec();
        for i in 0..PART_CALLS + 10 {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&one);
        }
        let mut handed = 0;
        let r = read(body.as_slice(), Timestamp::UNIX_EPOCH, |p| handed += p.len());
        assert!(r.unwrap_err().contains("EOF"));
        assert_eq!(handed, PART_CALLS, "the first part; the 10 after it were not handed over");
        let mut small = list(vec![json!(1)]);
        small.truncate(small.len() - 1);
        let mut handed = 0;
        assert!(read(small.as_slice(), Timestamp::UNIX_EPOCH, |p| handed += p.len()).is_err());
        assert_eq!(handed, 0, "a batch within one part is judged whole or not at all");
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
