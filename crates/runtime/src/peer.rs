//! What any replica observes reaches the replica that judges and acts for the agent (the holder of
//! its shard, see `shard`; with one shard, the leader). The audit sink and the MCP gateway serve
//! on every replica, behind one Service; a replica sends the calls it received of agents whose
//! shard it does not hold — the parsed calls, a few hundred bytes each, never the audit events'
//! bodies — to each shard holder's peer endpoint, and answers the API server only once the holders
//! have taken them. A holder judges them with everything else it received, so an unrecorded write
//! contains at the first one and a probe is judged on all of the agent's calls, whichever replica
//! they reached.
//!
//! - **Where a holder is**: a shard's holder writes its peer URL on the shard's Lease
//!   (`socwarden.io/peer-url`); the other replicas read it at each attempt on the Lease, and
//!   again at once when a send fails (the shard changed hands).
//! - **Who may send**: the endpoint is TLS with the operator's shared serving certificate (the
//!   sender verifies it against the shared CA), and every body is signed with a key derived from
//!   the shared signing key (the Secret only the operator reads) over its time and content: a pod
//!   that reaches the port cannot inject observations, and a body older than `MAX_AGE` is refused.
//! - **When the holder cannot take them** (the shard is changing hands, the holder is unreachable,
//!   or no longer holds it): the sender tries again until `Peers::patience` (the lease plus 2 s:
//!   long enough for a successor to take over and publish its URL); if this replica takes the shard
//!   meanwhile, it judges them itself (it judged them already, as any replica does, so its own
//!   trigger acts once it holds the shard). Past that, the audit sink answers 503, so the API
//!   server sends the batch again, and the calls are counted
//!   (`socwarden_peer_forwards_total{result="failed"}`). A body holds the calls of one shard.

use serde::{Deserialize, Serialize};
use socwarden_core::admission::identity::CredentialId;
use socwarden_core::admission::signature::Key;
use socwarden_core::behaviour::audit::Call;
use socwarden_core::behaviour::drift::{Kind, Observation};
use socwarden_core::behaviour::records::Access;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Lease annotation where its holder says where its peer endpoint is.
pub const ANNOTATION: &str = "socwarden.io/peer-url";
/// The path of the peer endpoint.
pub const PATH: &str = "/calls";
/// A signed body older (or further in the future) than this is refused.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// The largest body taken: a part of an audit batch (`audit::PART_CALLS` calls) fits many times.
pub const MAX_BODY: usize = 16 << 20;

/// This replica's view of its peers.
pub struct Peers {
    /// Where the other replicas reach this one (advertised on the Leases of the shards it holds).
    pub own: Option<String>,
    key: Key,
    tls: Arc<rustls::ClientConfig>,
    /// The name the serving certificate must hold (every replica serves the same one).
    server_name: String,
    /// How long a sender keeps trying.
    pub patience: Duration,
}

impl Peers {
    pub fn new(
        own: Option<String>,
        signing_key: &[u8],
        ca_pem: &str,
        server_name: String,
        patience: Duration,
    ) -> Result<Self, String> {
        let roots = crate::tls::roots(ca_pem)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { own, key: key(signing_key), tls: Arc::new(tls), server_name, patience })
    }

    /// Signs `calls` for the peer endpoint at `now_ms` (Unix milliseconds).
    pub fn seal(&self, calls: &[Call], now_ms: i64) -> Vec<u8> {
        seal(&self.key, calls, now_ms)
    }

    /// The calls of a body a peer sent, if it is signed with the shared key and fresh.
    pub fn open(&self, body: &[u8], now_ms: i64) -> Result<Vec<Call>, String> {
        open(&self.key, body, now_ms)
    }

    /// Sends `calls` (of one shard) to the shard's holder, where `holder()` says it is, trying
    /// again until `patience` has passed or `mine()` says this replica holds the shard now. After
    /// a failed attempt the holder is looked up afresh (`locate`, on the shard's Lease): a shard
    /// that changed hands is reached as soon as its new holder took it, not at this replica's next
    /// attempt on the Lease (up to a fifth of a lease later: calls relayed meanwhile would pile up
    /// and reach the holder together, out of order).
    /// Ok(true): the holder took them; Ok(false): this replica holds the shard.
    pub async fn forward<L: std::future::Future<Output = Option<String>>>(
        &self,
        calls: &[Call],
        holder: impl Fn() -> Option<String>,
        locate: impl Fn() -> L,
        mine: impl Fn() -> bool,
    ) -> Result<bool, String> {
        let deadline = Instant::now() + self.patience;
        let mut last = "no holder known".to_string();
        let mut url = holder();
        loop {
            if mine() {
                return Ok(false);
            }
            let failed = match url {
                Some(u) => match self.post(&u, self.seal(calls, jiff::Timestamp::now().as_millisecond())).await {
                    Ok(()) => return Ok(true),
                    Err(e) => {
                        last = e;
                        Some(u)
                    }
                },
                None => None,
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            url = locate().await;
            // The same holder again (it is handing the shard over, or it is gone and its Lease has
            // not run out yet), or none yet: a moment before the next attempt.
            if url.is_none() || url == failed {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
        use http_body_util::Full;
        let uri: hyper::Uri = format!("{}{PATH}", url.trim_end_matches('/')).parse().map_err(|e| format!("{e}"))?;
        let authority = uri.authority().ok_or("no host")?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(443);
        let request = hyper::Request::post(uri.path())
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(self.server_name.clone()).map_err(|e| e.to_string())?;
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let answer = crate::probe::send(tls, request).await.map_err(|e| e.to_string())?;
            if (200..300).contains(&answer.status) {
                Ok(())
            } else {
                Err(format!("{url} answered {}: {}", answer.status, answer.body.trim()))
            }
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .map_err(|_| format!("{url}: no answer within 5 s"))?
    }
}

/// The key peers sign with: derived from the shared signing key, for this use only (a signature
/// made for an admission stamp is never one for a peer body, nor the other way round).
fn key(signing_key: &[u8]) -> Key {
    Key::new(Key::new(signing_key).sign("soc-warden peer calls v1").as_bytes())
}

/// `<unix ms> <hex HMAC of "<unix ms>\n<json>">\n<json>`. Pure.
fn seal(key: &Key, calls: &[Call], now_ms: i64) -> Vec<u8> {
    let json = serde_json::to_string(&calls.iter().map(Wire::from).collect::<Vec<_>>()).unwrap_or_default();
    format!("{now_ms} {}\n{json}", key.sign(&format!("{now_ms}\n{json}"))).into_bytes()
}

/// The calls of a sealed body, if its signature holds and it is within `MAX_AGE` of `now_ms`. Pure.
fn open(key: &Key, body: &[u8], now_ms: i64) -> Result<Vec<Call>, String> {
    let body = std::str::from_utf8(body).map_err(|_| "a body that is not text")?;
    let (head, json) = body.split_once('\n').ok_or("no signature line")?;
    let (at, mac) = head.split_once(' ').ok_or("a signature line without a signature")?;
    let at: i64 = at.parse().map_err(|_| "a signature line without a time")?;
    if !key.verify(&format!("{at}\n{json}"), mac) {
        return Err("a signature that does not verify".into());
    }
    if (now_ms - at).unsigned_abs() > MAX_AGE.as_millis() as u64 {
        return Err(format!("signed {} ms from now: more than {:?}", now_ms - at, MAX_AGE));
    }
    let wires: Vec<Wire> = serde_json::from_str(json).map_err(|e| format!("calls: {e}"))?;
    wires.into_iter().map(Call::try_from).collect()
}

/// A call as peers send it.
#[derive(Serialize, Deserialize)]
struct Wire {
    ns: String,
    agent: String,
    /// Unix microseconds.
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api: Option<(String, u16)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<(String, String, socwarden_api::Decision)>,
    recorded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<WireAccess>,
}

#[derive(Serialize, Deserialize)]
struct WireAccess {
    at: i64,
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
    code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

impl From<&Call> for Wire {
    fn from(c: &Call) -> Self {
        let o = &c.observation;
        let (api, request) = match &o.kind {
            Kind::Api { key, code } => (Some((key.clone(), *code)), None),
            Kind::Request { action, target, decision } => (None, Some((action.clone(), target.clone(), *decision))),
        };
        Self {
            ns: c.agent.0.clone(),
            agent: c.agent.1.clone(),
            at: o.at.as_microsecond(),
            api,
            request,
            recorded: o.recorded,
            credential: o.credential.map(|c| c.to_string()),
            access: c.access.as_ref().map(|a| WireAccess {
                at: a.at.as_microsecond(),
                verb: a.verb.clone(),
                group: a.group.clone(),
                resource: a.resource.clone(),
                subresource: a.subresource.clone(),
                namespace: a.namespace.clone(),
                name: a.name.clone(),
                code: a.code,
                credential: a.credential.map(|c| c.to_string()),
            }),
        }
    }
}

fn credential(s: Option<String>) -> Result<Option<CredentialId>, String> {
    s.map(|s| CredentialId::parse(&s).ok_or(format!("credential {s:?}"))).transpose()
}

fn time(us: i64) -> Result<jiff::Timestamp, String> {
    jiff::Timestamp::from_microsecond(us).map_err(|e| e.to_string())
}

impl TryFrom<Wire> for Call {
    type Error = String;
    fn try_from(w: Wire) -> Result<Self, String> {
        let kind = match (w.api, w.request) {
            (Some((key, code)), None) => Kind::Api { key, code },
            (None, Some((action, target, decision))) => Kind::Request { action, target, decision },
            _ => return Err("a call is either an API call or a request".into()),
        };
        let observation =
            Observation { at: time(w.at)?, kind, recorded: w.recorded, credential: credential(w.credential)? };
        let access = match w.access {
            None => None,
            Some(a) => Some(Access {
                at: time(a.at)?,
                verb: a.verb,
                group: a.group,
                resource: a.resource,
                subresource: a.subresource,
                namespace: a.namespace,
                name: a.name,
                code: a.code,
                credential: credential(a.credential)?,
            }),
        };
        Ok(Call { agent: (w.ns, w.agent), observation, access })
    }
}

/// Serves the peer endpoint: calls another replica received, judged here if this replica holds
#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::Decision;

    fn calls() -> Vec<Call> {
        let at = jiff::Timestamp::from_second(1_767_225_600).unwrap();
        let id = CredentialId::parse("JTI=0f8fad5b-d9cb-469f-a165-70867728950e");
        let write = Access {
            at,
            verb: "delete".into(),
            resource: "pods".into(),
            namespace: "web".into(),
            name: "p".into(),
            code: 200,
            credential: id,
            ..Default::default()
        };
        vec![
            Call {
                agent: ("agents".into(), "bot".into()),
                observation: Observation::api(at, "delete", "pods", 200).with_credential(id),
                access: Some(write),
            },
            Call {
                agent: ("agents".into(), "bot".into()),
                observation: Observation::request(at, "isolate", "Pod/web/p", Decision::Rejected),
                access: None,
            },
        ]
    }

    #[test]
    fn a_sealed_body_opens_to_the_same_calls_with_the_same_key_only() {
        let now = 1_767_225_600_000;
        let body = seal(&key(&[7; 32]), &calls(), now);
        assert_eq!(open(&key(&[7; 32]), &body, now + 1000).unwrap(), calls());
        assert_eq!(open(&key(&[8; 32]), &body, now).unwrap_err(), "a signature that does not verify");
        // The signing key itself (as an admission stamp uses it) is not the peer key.
        assert!(open(&Key::new(&[7; 32]), &body, now).is_err());
    }

    #[test]
    fn an_edited_stale_or_unsigned_body_is_refused() {
        let now = 1_767_225_600_000;
        let k = key(&[7; 32]);
        let body = seal(&k, &calls(), now);
        let edited = String::from_utf8(body.clone()).unwrap().replace("\"bot\"", "\"other\"");
        assert_eq!(open(&k, edited.as_bytes(), now).unwrap_err(), "a signature that does not verify");
        // The time is signed: moving it forward breaks the signature; a replay later is too old.
        let text = String::from_utf8(body.clone()).unwrap();
        let moved = text.replacen(&now.to_string(), &(now + 60_000).to_string(), 1);
        assert!(open(&k, moved.as_bytes(), now + 60_000).is_err());
        assert!(open(&k, &body, now + 31_000).unwrap_err().contains("more than"));
        assert!(open(&k, &body, now - 31_000).is_err(), "from the future");
        let json = &body[body.iter().position(|b| *b == b'\n').unwrap() + 1..];
        assert!(open(&k, json, now).is_err(), "no signature line");
        assert!(open(&k, b"", now).is_err());
    }
}
