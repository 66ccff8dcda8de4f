//! The MCP gateway: agents discover their catalog actions as tools and call them over MCP
//! (Streamable HTTP, served by the official SDK `rmcp`, stateless, JSON answers) — every call an
//! ActionRequest stamped as the agent, through the same gate, approvals, executor and drift model.
//!
//! Identity: the bearer token is the agent's own SOC Warden token, which carries the gateway's
//! audience (`mcp::AUDIENCE`); a TokenReview for that audience says who it is, and only the
//! ServiceAccount of a SocAgent that is not paused gets in. The token is never passed on: the
//! request is created with the operator's identity and the agent's stamp, which the admission
//! webhook keeps only from the operator (see `webhook::filer`). What is decided is `socwarden_core::mcp`.

use crate::context::Context;
use crate::server;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InputRequiredResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, RequestStateCodec, SealOptions, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use socwarden_api::{ActionRequest, AutonomyPolicySpec, Decision, Phase, SocAgent};
use socwarden_core::admission::{gate, identity, signature};
use socwarden_core::behaviour::drift::Observation;
use socwarden_core::mcp::{self as decide, Answer, Refusal};
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a call waits for its request to be decided and executed before answering "still
/// running" (the agent then polls); a retry of a pending call waits this long for a change.
const CALL_WAIT: Duration = Duration::from_secs(10);
const RETRY_WAIT: Duration = Duration::from_secs(5);
/// A waiting call wakes on every change of a request (`Stores::request_changes`); it also looks
/// again this often, should a wake-up ever be missed.
const RECHECK: Duration = Duration::from_millis(100);
/// How long a request state stays valid (longer than any approval timeout a policy is likely to set).
const STATE_TTL: Duration = Duration::from_secs(48 * 3600);
/// The largest MCP request body.
const MAX_BODY: usize = 1 << 20;
/// How long a token the API server confirmed is trusted without asking again — the API server's
/// own token cache holds a recently used token as long (docs/operations/security.md). A pause is
/// still seen at once: the agent's state is read from the cache on every call.
const REVIEW_TTL: Duration = Duration::from_secs(10);
/// The most confirmed tokens remembered (beyond it, expired ones are dropped, then all).
const REVIEW_CACHE: usize = 20_000;
/// TokenReviews in flight at once: a pod sending made-up tokens cannot turn the gateway into a
/// flood of reviews against the API server (the others wait, then are refused with 503).
const REVIEWS_AT_ONCE: usize = 32;

/// Who is calling, verified before any MCP message is read.
#[derive(Clone, Debug)]
pub struct Caller {
    pub namespace: String,
    pub agent: String,
    pub user: String,
    pub groups: Vec<String>,
    pub traceparent: Option<String>,
}

/// Tokens the API server confirmed recently: SHA-256 of the token → (when, user, groups).
type Reviews = std::collections::HashMap<[u8; 32], (Instant, String, Vec<String>)>;

#[derive(Clone)]
pub struct Gateway {
    ctx: Arc<Context>,
    codec: Arc<RequestStateCodec>,
    reviews: Arc<std::sync::Mutex<Reviews>>,
    reviewing: Arc<tokio::sync::Semaphore>,
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(code: StatusCode, body: Value, extra: Option<(&str, String)>) -> Response<Body> {
    let mut b = Response::builder().status(code).header("content-type", "application/json");
    if let Some((k, v)) = extra {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::from(body.to_string())).boxed()).expect("valid response")
}

/// A refusal as a JSON-RPC error body (MCP clients show its message) with the HTTP status.
fn refusal(code: StatusCode, message: &str, metadata: &str) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": message}});
    let challenge = match code {
        StatusCode::UNAUTHORIZED => {
            Some(("www-authenticate", format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"")))
        }
        StatusCode::FORBIDDEN => {
            Some(("www-authenticate", format!("Bearer error=\"insufficient_scope\", resource_metadata=\"{metadata}\"")))
        }
        _ => None,
    };
    json_response(code, body, challenge)
}

impl Gateway {
    pub fn new(ctx: Arc<Context>) -> anyhow::Result<Self> {
        // Every replica derives the same key from the signing key, so a retry may reach any of them.
        let material = ctx.key.sign("socwarden.io/mcp request state");
        let codec = RequestStateCodec::try_new(material.into_bytes())
            .map_err(|e| anyhow::anyhow!("cannot build the request-state codec: {e}"))?;
        let reviewing = Arc::new(tokio::sync::Semaphore::new(REVIEWS_AT_ONCE));
        Ok(Self { ctx, codec: Arc::new(codec), reviews: Default::default(), reviewing })
    }

    /// The TokenReview for the gateway's audience (or its answer of the last `REVIEW_TTL`): the
    /// user, or `None` when the token is not valid for it. An unanswered review is an error (the
    /// caller is refused: fail closed). Refusals are never cached.
    async fn review(&self, token: &str) -> Result<Option<(String, Vec<String>)>, kube::Error> {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let lock = || self.reviews.lock().unwrap_or_else(|p| p.into_inner());
        let cached = lock().get(&digest).cloned();
        if let Some((at, user, groups)) = cached
            && at.elapsed() < REVIEW_TTL
        {
            return Ok(Some((user, groups)));
        }
        let Ok(Ok(_slot)) = tokio::time::timeout(Duration::from_secs(5), self.reviewing.acquire()).await else {
            return Err(kube::Error::Service("too many token reviews in flight".into()));
        };
        let confirmed = self.ask(token).await?;
        if let Some((user, groups)) = &confirmed {
            let mut cache = lock();
            if cache.len() >= REVIEW_CACHE {
                cache.retain(|_, (at, _, _)| at.elapsed() < REVIEW_TTL);
                if cache.len() >= REVIEW_CACHE {
                    cache.clear();
                }
            }
            cache.insert(digest, (Instant::now(), user.clone(), groups.clone()));
        }
        Ok(confirmed)
    }

    async fn ask(&self, token: &str) -> Result<Option<(String, Vec<String>)>, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), audiences: Some(vec![decide::AUDIENCE.into()]) },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.ctx.client.clone()).create(&PostParams::default(), &review).await?;
        let Some(status) = answer.status else { return Ok(None) };
        let for_us = status.audiences.as_ref().is_some_and(|a| a.iter().any(|a| a == decide::AUDIENCE));
        if status.authenticated != Some(true) || !for_us {
            return Ok(None);
        }
        Ok(status.user.and_then(|u| Some((u.username?, u.groups.unwrap_or_default()))))
    }

    /// Who the caller is, or the HTTP refusal.
    async fn authenticate(&self, req: &Request<Incoming>) -> Result<Caller, (StatusCode, String, &'static str)> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: the token SOC Warden issued to your agent (Secret warden-<agent>-token)"
                    .into(),
                "unauthenticated",
            ));
        };
        let user = match self.review(token).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "MCP: TokenReview failed; refusing");
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot verify the token now (the Kubernetes API did not answer); retry".into(),
                    "unavailable",
                ));
            }
        };
        let stores = &self.ctx.stores;
        let kill_switch = stores.kill_switch();
        let lookup = |ns: &str, name: &str| {
            let a = stores.agents.get(&ObjectRef::new(name).within(ns))?;
            let status = a.status.as_ref();
            let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
            let why = match (&kill_switch, a.spec.paused) {
                (Some(p), _) => Some(format!("kill switch on AutonomyPolicy {p}")),
                (None, true) => Some("spec.paused".to_string()),
                _ => status.and_then(|s| s.pause.as_ref()).map(|p| p.reason.clone()),
            };
            let paused = phase == Phase::Paused || kill_switch.is_some() || a.spec.paused;
            Some(if paused { (Phase::Paused, why) } else { (phase, None) })
        };
        match decide::admit(user.as_ref().map(|(u, _)| u.as_str()), lookup) {
            Ok((namespace, agent)) => {
                let (user, groups) = user.unwrap_or_default();
                let traceparent =
                    req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(decide::traceparent);
                Ok(Caller { namespace, agent, user, groups, traceparent })
            }
            Err(Refusal::Unauthenticated(m)) => Err((StatusCode::UNAUTHORIZED, m, "unauthenticated")),
            Err(Refusal::Forbidden(m)) => Err((StatusCode::FORBIDDEN, m, "forbidden")),
        }
    }

    fn agent(&self, c: &Caller) -> Result<Arc<SocAgent>, ErrorData> {
        self.ctx
            .stores
            .agents
            .get(&ObjectRef::new(&c.agent).within(&c.namespace))
            .ok_or_else(|| ErrorData::invalid_request(format!("SocAgent {}/{} is gone", c.namespace, c.agent), None))
    }

    fn policy(&self, agent: &SocAgent) -> AutonomyPolicySpec {
        self.ctx.stores.policy(&agent.spec.policy_ref).map(|p| p.spec.clone()).unwrap_or_default()
    }

    fn action(&self, name: &str) -> Option<Arc<socwarden_api::SocAction>> {
        self.ctx.stores.action(name)
    }

    fn count(&self, tool: &str, outcome: &str) {
        self.ctx.metrics.mcp_calls.with_label_values(&[tool, outcome]).inc();
    }

    /// A refused call is behaviour: the agent's drift model sees it like a rejected request. A
    /// replica that does not hold the agent's shard sends it to the holder too (see `peer`), which
    /// judges it with all of the agent's calls; the refusal's answer does not wait for that.
    fn observe_refusal(&self, c: &Caller, action: &str, target: &str) {
        let o = Observation::request(jiff::Timestamp::now(), action, target, Decision::Rejected);
        let key = (c.namespace.clone(), c.agent.clone());
        if self.ctx.peers.get().is_some() && !self.ctx.owns(&key.0, &key.1) {
            let call =
                socwarden_core::behaviour::audit::Call { agent: key.clone(), observation: o.clone(), access: None };
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let _ = crate::intake::relay(&ctx, vec![call]).await;
            });
        }
        crate::intake::configure(&self.ctx, std::iter::once(&key));
        self.ctx.monitor.observe(vec![(key, o)], Instant::now(), jiff::Timestamp::now());
    }

    /// Waits until the request's answer is not `Wait` (nor, with `past_pending`, `Pending`), or
    /// `limit` passes. Returns the last answer seen (`Wait` while the cache has not seen it).
    async fn wait(&self, ns: &str, name: &str, executes: bool, limit: Duration, past_pending: bool) -> Answer {
        let started = Instant::now();
        let key = ObjectRef::new(name).within(ns);
        loop {
            // Registered before looking, so a change between the look and the wait is not missed.
            let changed = self.ctx.stores.request_changes.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let answer = match self.ctx.stores.requests.get(&key) {
                // What this replica wrote counts before the watch brings it back (on the leader,
                // the answer leaves as soon as the execution's status is written).
                Some(r) => {
                    let uid = r.uid().unwrap_or_default();
                    let status =
                        self.ctx.request_status_written.shown(&uid, r.resource_version().as_deref(), r.status.as_ref());
                    decide::answer(name, status.as_ref(), executes)
                }
                None => Answer::Wait,
            };
            let settled = match &answer {
                Answer::Wait => false,
                Answer::Pending { .. } => !past_pending,
                Answer::Done { .. } => true,
            };
            if settled || started.elapsed() >= limit {
                return answer;
            }
            let _ = tokio::time::timeout(limit.saturating_sub(started.elapsed()).min(RECHECK), changed).await;
        }
    }

    /// The result for an answer: pending ones become an input-required result carrying the signed
    /// request state for clients of 2026-07-28 and later, a plain "pending" text for older ones.
    fn respond(
        &self,
        c: &Caller,
        tool: &str,
        name: &str,
        uid: &str,
        answer: Answer,
        modern: bool,
    ) -> Result<CallToolResponse, ErrorData> {
        let (text, outcome) = match answer {
            Answer::Done { is_error, text, structured } => {
                self.count(tool, if is_error { "error" } else { "ok" });
                let mut r = CallToolResult::structured(structured);
                r.content = vec![ContentBlock::text(text)];
                r.is_error = Some(is_error);
                return Ok(r.into());
            }
            Answer::Pending { text } => (text, "pending"),
            Answer::Wait => (
                format!(
                    "request {name} is filed and still being decided or executed; ask {} for its state, or retry",
                    decide::REQUEST_TOOL
                ),
                "pending",
            ),
        };
        self.count(tool, outcome);
        if modern {
            let state = self
                .codec
                .seal_json_with(
                    &json!({"ns": c.namespace, "name": name, "uid": uid}),
                    &SealOptions::new().associated_data(state_binding(c, tool).as_bytes()).ttl(STATE_TTL),
                )
                .map_err(|e| ErrorData::internal_error(format!("cannot seal the request state: {e}"), None))?;
            return Ok(InputRequiredResult::new(None, Some(state)).into());
        }
        let mut r = CallToolResult::structured(json!({"request": name, "decision": "Pending", "message": text}));
        r.content = vec![ContentBlock::text(text)];
        r.is_error = Some(false);
        Ok(r.into())
    }

    fn error_result(&self, tool: &str, outcome: &str, text: String) -> CallToolResponse {
        self.count(tool, outcome);
        let mut r = CallToolResult::structured(json!({"error": text}));
        r.content = vec![ContentBlock::text(text)];
        r.is_error = Some(true);
        r.into()
    }

    /// A retry carrying the request state of an earlier answer: the answer of that request now.
    async fn resume(&self, c: &Caller, tool: &str, state: &str, modern: bool) -> Result<CallToolResponse, ErrorData> {
        let s: Value = self.codec.open_json_with(state, state_binding(c, tool).as_bytes()).map_err(|_| {
            ErrorData::invalid_params("the request state is not one this gateway issued to you for this tool", None)
        })?;
        let (Some(ns), Some(name), Some(uid)) = (s["ns"].as_str(), s["name"].as_str(), s["uid"].as_str()) else {
            return Err(ErrorData::invalid_params("malformed request state", None));
        };
        let Some(req) = self.ctx.stores.requests.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(self.error_result(tool, "error", format!("request {name} no longer exists")));
        };
        if req.uid().as_deref() != Some(uid) {
            return Ok(self.error_result(tool, "error", format!("request {name} was replaced; file a new call")));
        }
        let executes = self.action(&req.spec.action).is_some_and(|a| a.spec.execution.is_some());
        let answer = self.wait(ns, name, executes, RETRY_WAIT, true).await;
        self.respond(c, tool, name, uid, answer, modern)
    }

    /// Files the call of catalog action `tool` as an ActionRequest stamped as the agent, and
    /// answers from its decision.
    async fn file(
        &self,
        c: &Caller,
        tool: &str,
        p: &CallToolRequestParams,
        modern: bool,
    ) -> Result<CallToolResponse, ErrorData> {
        let agent = self.agent(c)?;
        let action = self.action(tool).filter(|_| agent.spec.actions.iter().any(|a| a == tool));
        let Some(action) = action else {
            self.observe_refusal(c, tool, "");
            let tools: Vec<&str> = agent.spec.actions.iter().map(String::as_str).collect();
            return Ok(self.error_result(
                "(unknown)",
                "refused",
                format!(
                    "there is no tool {tool:?} for you; your tools are {}, {} and {}",
                    tools.join(", "),
                    decide::STATUS_TOOL,
                    decide::REQUEST_TOOL
                ),
            ));
        };
        let mut spec = match decide::request(&c.agent, tool, p.arguments.as_ref()) {
            Ok(s) => s,
            Err(why) => {
                self.observe_refusal(c, tool, "");
                return Ok(self.error_result(tool, "refused", format!("invalid arguments: {why}")));
            }
        };
        if let Err(r) = gate::precheck(&spec, Some(&agent), Some(&action.spec), &self.ctx.stores.kinds.current()) {
            self.observe_refusal(c, tool, &gate::target_key(&spec));
            return Ok(self.error_result(
                tool,
                "refused",
                format!("refused: {}. Nothing was filed or run.", r.message),
            ));
        }
        let name = format!("mcp-{tool}-{}", &crate::signing_key::nonce()[..12]);
        spec.requester = c.user.clone();
        spec.requester_groups = c.groups.clone();
        spec.nonce = crate::signing_key::nonce();
        spec.signature = self.ctx.key.sign(&signature::request_message(&c.namespace, &name, &spec));
        let target = gate::target_key(&spec);
        let mut req = ActionRequest::new(&name, spec);
        req.meta_mut().namespace = Some(c.namespace.clone());
        let annotations = req.annotations_mut();
        annotations.insert(decide::VIA_ANNOTATION.into(), "mcp".into());
        if let Some(t) = &c.traceparent {
            annotations.insert(decide::TRACEPARENT_ANNOTATION.into(), t.clone());
        }
        let api = Api::<ActionRequest>::namespaced(self.ctx.client.clone(), &c.namespace);
        let t0 = Instant::now();
        let created = match api.create(&PostParams::default(), &req).await {
            Ok(r) => r,
            // The admission webhook refused it (quota, scope, protection, …): the agent's doing.
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429 => {
                self.observe_refusal(c, tool, &target);
                return Ok(self.error_result(tool, "refused", format!("refused: {}. Nothing was run.", e.message)));
            }
            Err(e) => {
                tracing::warn!(error = %e, agent = %c.agent, "MCP: could not file the request");
                return Ok(self.error_result(
                    tool,
                    "unavailable",
                    format!("could not file the request now ({e}); retry later"),
                ));
            }
        };
        let uid = created.uid().unwrap_or_default();
        let executes = action.spec.execution.is_some();
        let t1 = Instant::now();
        let answer = self.wait(&c.namespace, &name, executes, CALL_WAIT, false).await;
        tracing::debug!(request = %name, create_ms = (t1 - t0).as_millis() as u64, wait_ms = t1.elapsed().as_millis() as u64, "MCP call filed and answered");
        self.respond(c, tool, &name, &uid, answer, modern)
    }

    fn request_tool(&self, c: &Caller, p: &CallToolRequestParams) -> CallToolResponse {
        let tool = decide::REQUEST_TOOL;
        let Some(name) = p.arguments.as_ref().and_then(|a| a.get("request")).and_then(Value::as_str) else {
            return self.error_result(tool, "refused", "give the request's name: {\"request\": \"mcp-…\"}".into());
        };
        let own = identity::agent_user(&c.namespace, &c.agent);
        let req = self
            .ctx
            .stores
            .requests
            .get(&ObjectRef::new(name).within(&c.namespace))
            .filter(|r| r.spec.agent == c.agent && r.spec.requester == own);
        let Some(req) = req else {
            return self.error_result(tool, "error", format!("you have no request {name:?}"));
        };
        let view = decide::request_view(&req.spec, req.status.as_ref(), name);
        self.count(tool, "ok");
        let mut r = CallToolResult::structured(view.clone());
        r.content = vec![ContentBlock::text(view.to_string())];
        r.is_error = Some(false);
        r.into()
    }
}

/// What a request state is bound to: the caller and the tool (a state cannot be replayed by
/// another agent or for another tool).
fn state_binding(c: &Caller, tool: &str) -> String {
    format!("{}|tools/call|{tool}", c.user)
}

fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<hyper::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no verified caller", None))
}

fn modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("soc-warden", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "SOC Warden governs your actions: each tool is an action of your catalog. Tools that need \
                 human approval return while they wait; retry the call (or ask warden_request) for the outcome. \
                 Refused calls are recorded and count against you.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28])
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let started = Instant::now();
        let c = caller(&ctx)?;
        let agent = self.agent(&c)?;
        let catalog: Vec<(String, socwarden_api::SocActionSpec)> =
            agent.spec.actions.iter().filter_map(|n| self.action(n).map(|a| (n.clone(), a.spec.clone()))).collect();
        let tools = decide::tools(&agent, &catalog, &self.policy(&agent))
            .into_iter()
            .map(|t| {
                Tool::new(t.name, t.description, t.input_schema).with_annotations(
                    ToolAnnotations::new()
                        .read_only(t.read_only)
                        .destructive(t.destructive)
                        .idempotent(t.idempotent)
                        .open_world(false),
                )
            })
            .collect();
        self.ctx.metrics.mcp_call_seconds.with_label_values(&["tools/list"]).observe(started.elapsed().as_secs_f64());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        p: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let c = caller(&ctx)?;
        let tool = p.name.to_string();
        let modern = modern(&ctx);
        let answer = match (tool.as_str(), p.request_state.as_deref()) {
            (decide::STATUS_TOOL, _) => {
                let v = decide::status(self.agent(&c)?.as_ref());
                self.count(&tool, "ok");
                let mut r = CallToolResult::structured(v.clone());
                r.content = vec![ContentBlock::text(v.to_string())];
                r.is_error = Some(false);
                Ok(r.into())
            }
            (decide::REQUEST_TOOL, _) => Ok(self.request_tool(&c, &p)),
            (_, Some(state)) => self.resume(&c, &tool, state, modern).await,
            (_, None) => self.file(&c, &tool, &p, modern).await,
        };
        self.ctx.metrics.mcp_call_seconds.with_label_values(&["tools/call"]).observe(started.elapsed().as_secs_f64());
        answer
    }
}

/// The RFC 9728 protected-resource metadata: the resource is `https://<host>/mcp`, tokens go in
/// the Authorization header. There is no OAuth authorization server: tokens are the agents'
/// Kubernetes tokens, issued by SOC Warden with the gateway's audience.
fn metadata(host: &str) -> Value {
    json!({
        "resource": format!("https://{host}/mcp"),
        "bearer_methods_supported": ["header"],
        "resource_name": "SOC Warden MCP gateway",
        "authorization_servers": [],
        "socwarden_token_audience": decide::AUDIENCE,
    })
}

/// The Host header, if it is a plain host[:port] (it is echoed into the metadata).
fn host(req: &Request<Incoming>) -> String {
    req.headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost")
        .to_string()
}

async fn route(
    gw: Gateway,
    service: Arc<StreamableHttpService<Gateway, NeverSessionManager>>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let host = host(&req);
    let meta_url = format!("https://{host}/.well-known/oauth-protected-resource/mcp");
    match req.uri().path() {
        "/.well-known/oauth-protected-resource" | "/.well-known/oauth-protected-resource/mcp" => {
            json_response(StatusCode::OK, metadata(&host), None)
        }
        "/mcp" => match gw.authenticate(&req).await {
            Ok(c) => {
                req.extensions_mut().insert(c);
                service.handle(req).await
            }
            Err((code, message, outcome)) => {
                gw.count("(none)", outcome);
                refusal(code, &message, &meta_url)
            }
        },
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not found: the MCP endpoint is /mcp"}), None),
    }
}

/// Serves the gateway on `addr` over TLS with the operator's serving certificate.
pub async fn serve(addr: SocketAddr, tls: Arc<rustls::ServerConfig>, ctx: Arc<Context>) -> anyhow::Result<()> {
    let gw = Gateway::new(ctx)?;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        // Every caller is authenticated by its token before rmcp sees the request, and no browser
        // holds an agent's token: the Host allow-list (a DNS-rebinding guard for local servers)
        // would only break the Service names the chart exposes.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MAX_BODY);
    let handler = gw.clone();
    let service = Arc::new(StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    ));
    let listener = server::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the MCP gateway at /mcp");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    server::accept_loop(listener, 512, "mcp", move |stream| {
        let (acceptor, gw, service) = (acceptor.clone(), gw.clone(), service.clone());
        async move {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (gw, service) = (gw.clone(), service.clone());
                async move { Ok::<_, Infallible>(route(gw, service, req).await) }
            });
            if let Err(e) = server::http1(Duration::from_secs(5)).serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(error = %e, "MCP connection ended");
            }
        }
    })
    .await?;
    Ok(())
}
