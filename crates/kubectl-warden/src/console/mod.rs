//! `kubectl warden console`: a local web console for the approval queue, the fleet, each agent and
//! each request. It acts as the user of the kubeconfig — every read and every Approval it creates
//! uses that user's credentials, so the admission webhook stamps the real approver — and holds no
//! credentials of its own. Because it holds the user's, it listens on 127.0.0.1 only and answers
//! nobody without the session token it prints, the right `Host`, and (for decisions) its own
//! `Origin` (see `guard`). Pages refresh from watches over server-sent events; the assets are
//! embedded in the binary.

mod guard;
pub(crate) mod view;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socwarden_api::conditions::reason;
use socwarden_api::{ActionRequest, Approval, AutonomyPolicy, DriftReport, SocAction, SocAgent};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = BoxBody<Bytes, Infallible>;
/// A request's UID and resourceVersion, its agent's generation, and the content shown.
type DecideKey = (String, String, i64, Option<String>);

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

pub struct Options {
    pub port: u16,
    /// The namespace whose queue and fleet are shown; `None`: every namespace.
    pub namespace: Option<String>,
}

struct State {
    client: Client,
    namespace: Option<String>,
    token: String,
    port: u16,
    changes: watch::Sender<u64>,
    /// Who the user is, as the API server authenticates them.
    me: crate::whoami::Me,
    /// Whether the user may decide a request, by (request UID, its resourceVersion, the agent's
    /// generation): the admission webhook's own answer to a dry-run Approval.
    may_decide: Mutex<HashMap<DecideKey, Result<(), String>>>,
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness for the session token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serves the console until the process is stopped.
pub async fn run(client: Client, opts: Options) -> Result<()> {
    // Loopback only, whatever the user asks: the console holds their credentials.
    let listener = TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", opts.port))?;
    let port = listener.local_addr()?.port();
    let token = random_token()?;
    let me = crate::whoami::whoami(&client).await?;
    let (changes, _) = watch::channel(0u64);
    let state = Arc::new(State {
        client,
        namespace: opts.namespace,
        token,
        port,
        changes,
        me,
        may_decide: Mutex::new(HashMap::new()),
    });
    spawn_watches(&state);
    let scope = state.namespace.clone().map(|n| format!("namespace {n}")).unwrap_or_else(|| "every namespace".into());
    println!("SOC Warden console for {} ({scope}), acting with your kubeconfig's credentials:", state.me.user);
    println!("  http://127.0.0.1:{port}/?token={}", state.token);
    println!("Open that URL in your browser (it carries the session token). Ctrl-C stops the console.");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => continue,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// Every change of what the pages show bumps the counter the browsers listen to.
fn spawn_watches(state: &Arc<State>) {
    fn watch_kind<K>(api: Api<K>, tx: watch::Sender<u64>)
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(e) = events.next().await {
                if e.is_ok() {
                    tx.send_modify(|v| *v += 1);
                }
            }
        });
    }
    let (c, ns, tx) = (&state.client, state.namespace.as_deref(), &state.changes);
    watch_kind(scoped::<ActionRequest>(c, ns), tx.clone());
    watch_kind(scoped::<SocAgent>(c, ns), tx.clone());
    watch_kind(scoped::<Approval>(c, ns), tx.clone());
    watch_kind(scoped::<DriftReport>(c, ns), tx.clone());
    watch_kind(Api::<AutonomyPolicy>::all(c.clone()), tx.clone());
    // An edit of an action changes what its pending requests run: their pages show it at once.
    watch_kind(Api::<SocAction>::all(c.clone()), tx.clone());
}

/// The API of a namespaced kind in `ns`, or in every namespace.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", content_type.parse().expect("static header"));
    secure(h);
    r
}

/// Headers on every answer: no framing, no sniffing, no referrer (the URL may carry the token),
/// nothing cached, and a policy that runs only the console's own script.
fn secure(h: &mut http::HeaderMap) {
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(k, v.parse().expect("static header"));
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    respond(status, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn api_error(e: &kube::Error) -> (StatusCode, String) {
    match e {
        kube::Error::Api(s) => (StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY), s.message.clone()),
        other => (StatusCode::BAD_GATEWAY, other.to_string()),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let method = req.method().as_str().to_string();
    let facts = guard::Facts {
        method: &method,
        path: &path,
        query: query.as_deref(),
        host: header(&req, "host"),
        origin: header(&req, "origin"),
        cookie: header(&req, "cookie"),
        content_type: header(&req, "content-type"),
    };
    match guard::check(&facts, &state.token, state.port) {
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
            return respond(status, "text/plain; charset=utf-8", format!("{}\n", refusal.message));
        }
        Ok(guard::Pass::SetCookie) => {
            let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "session started\n");
            let h = r.headers_mut();
            // Other query parameters stay (a chat link's `seen`); the token leaves the address bar.
            let rest: Vec<&str> = query
                .as_deref()
                .unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
                .collect();
            let location = if rest.is_empty() { path.clone() } else { format!("{path}?{}", rest.join("&")) };
            h.insert("location", location.parse().unwrap_or(http::HeaderValue::from_static("/")));
            let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", guard::COOKIE, state.token);
            h.insert("set-cookie", cookie.parse().expect("hex token"));
            return r;
        }
        Ok(guard::Pass::Serve) => {}
    }
    let parts: Vec<String> = path.split('/').skip(1).map(String::from).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["assets", "app.js"] => respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        ["assets", "app.css"] => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        ["api", "events"] => events(state),
        ["api", "me"] => json_response(StatusCode::OK, &me(state).await),
        ["api", "queue"] => result(queue(state).await),
        ["api", "fleet"] => result(fleet(state).await),
        ["api", "agents", ns, name] => result(agent(state, ns, name).await),
        ["api", "requests", ns, name] => result(request(state, ns, name).await),
        ["api", "decide"] => decide(state, req).await,
        ["api", "act"] => act(state, req).await,
        _ => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX),
    }
}

fn result(r: Result<Value, kube::Error>) -> Response<Body> {
    match r {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => {
            let (status, message) = api_error(&e);
            json_response(status, &json!({"error": message}))
        }
    }
}

/// Server-sent events: one message per change the watches saw; a comment every 15 s keeps the
/// connection open through idle periods.
fn events(state: &State) -> Response<Body> {
    let rx = state.changes.subscribe();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if first {
            return Some((Bytes::from("retry: 2000\n\n"), (rx, false)));
        }
        tokio::select! {
            changed = rx.changed() => {
                changed.ok()?;
                let v = *rx.borrow_and_update();
                Some((Bytes::from(format!("data: {v}\n\n")), (rx, false)))
            }
            _ = tokio::time::sleep(Duration::from_secs(15)) => Some((Bytes::from(": ping\n\n"), (rx, false))),
        }
    });
    let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed(body));
    let h = r.headers_mut();
    h.insert("content-type", "text/event-stream".parse().expect("static header"));
    secure(h);
    r
}

/// The objects of a namespaced kind in `ns`, else in the console's namespace (or all of them).
async fn list<K>(state: &State, ns: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let api = scoped::<K>(&state.client, ns.or(state.namespace.as_deref()));
    Ok(api.list(&ListParams::default()).await?.items)
}

/// What a refused write said, without the plugin's "refused: " prefix.
fn why(e: &anyhow::Error) -> String {
    e.to_string().trim_start_matches("refused: ").to_string()
}

/// `{"ok": true}`, or `{"ok": false, "why": …}`: whether the user may do something, for the page.
fn verdict<T>(r: &Result<T>) -> Value {
    match r {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "why": why(e)}),
    }
}

/// Whether the user may `verb` the socwarden.io `resource` (in `namespace`, by `name`), as the
/// API server answers a SelfSubjectAccessReview.
async fn allowed(client: &Client, verb: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("socwarden.io".into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace: namespace.map(String::from),
                name: name.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// Who the user is and what they may do here (SelfSubjectAccessReviews), and the kill switches on.
async fn me(state: &State) -> Value {
    let (c, ns) = (&state.client, state.namespace.as_deref());
    let policies = Api::<AutonomyPolicy>::all(c.clone());
    let lp = ListParams::default();
    let (read, approve, pause, drift, policies) = futures::join!(
        allowed(c, "list", "actionrequests", ns, None),
        allowed(c, "create", "approvals", ns, None),
        allowed(c, "pause", "socagents", ns, None),
        allowed(c, "get", "driftreports", ns, None),
        policies.list(&lp),
    );
    json!({
        "user": state.me.user, "groups": state.me.groups,
        "namespace": state.namespace,
        "may": {"readRequests": read, "decide": approve, "pause": pause, "readDrift": drift},
        // Every page shows it: a kill switch on must be impossible to miss.
        "killSwitch": view::kill_switches(&policies.map(|l| l.items).unwrap_or_default()),
    })
}

async fn catalog(state: &State) -> HashMap<String, SocAction> {
    Api::<SocAction>::all(state.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().map(|a| (a.metadata.name.clone().unwrap_or_default(), a)).collect())
        .unwrap_or_default()
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

async fn queue(state: &State) -> Result<Value, kube::Error> {
    let (requests, agents, actions) =
        futures::join!(list::<ActionRequest>(state, None), list::<SocAgent>(state, None), catalog(state));
    let requests = requests?;
    let agents: HashMap<(String, String), SocAgent> =
        agents.unwrap_or_default().into_iter().map(|a| (view::ns_name(&a), a)).collect();
    let now = Timestamp::now();
    let mut items = Vec::new();
    for r in view::pending(&requests) {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let agent = agents.get(&key(&ns, &r.spec.agent));
        let mut item = view::queue_item(r, agent, actions.get(&r.spec.action), now);
        item["canDecide"] = can_decide(state, r, agent, item["seen"].as_str()).await;
        items.push(item);
    }
    Ok(json!({"items": items}))
}

/// Whether the user may approve or deny this request: asked of the admission webhook itself with
/// a dry-run Approval (the same check a real one meets), cached until the request or its agent
/// changes. `seen`: the content the page shows, which the dry run names as a real approval does.
async fn can_decide(state: &State, r: &ActionRequest, agent: Option<&SocAgent>, seen: Option<&str>) -> Value {
    let cache_key = (
        r.metadata.uid.clone().unwrap_or_default(),
        r.metadata.resource_version.clone().unwrap_or_default(),
        agent.and_then(|a| a.metadata.generation).unwrap_or_default(),
        seen.map(String::from),
    );
    let cached = state.may_decide.lock().ok().and_then(|m| m.get(&cache_key).cloned());
    let answer = match cached {
        Some(a) => a,
        None => {
            let ns = r.metadata.namespace.clone().unwrap_or_default();
            let name = r.metadata.name.clone().unwrap_or_default();
            let spec = json!({"actionRequest": name, "decision": "approve", "seen": seen});
            let answer = match super::approval(&state.client, &ns, "approve", &name, spec, true).await {
                Ok(_) => Ok(()),
                Err(e) => Err(why(&e)),
            };
            if let Ok(mut m) = state.may_decide.lock() {
                if m.len() > 4096 {
                    m.clear();
                }
                m.insert(cache_key, answer.clone());
            }
            answer
        }
    };
    match answer {
        Ok(()) => json!({"ok": true}),
        Err(why) => json!({"ok": false, "why": why}),
    }
}

async fn fleet(state: &State) -> Result<Value, kube::Error> {
    let policies = Api::<AutonomyPolicy>::all(state.client.clone());
    let lp = ListParams::default();
    let (agents, reports, policies) =
        futures::join!(list::<SocAgent>(state, None), list::<DriftReport>(state, None), policies.list(&lp));
    let agents: Vec<SocAgent> = agents?;
    let policies = policies.map(|l| l.items).unwrap_or_default();
    Ok(view::fleet(&agents, &reports.unwrap_or_default(), &policies))
}

async fn agent(state: &State, ns: &str, name: &str) -> Result<Value, kube::Error> {
    let a = Api::<SocAgent>::namespaced(state.client.clone(), ns).get(name).await?;
    // People without the right to read DriftReports still see the rest.
    let report = Api::<DriftReport>::namespaced(state.client.clone(), ns).get_opt(name).await.ok().flatten();
    let requests = list::<ActionRequest>(state, Some(ns)).await.unwrap_or_default();
    let mut page = view::agent_page(&a, report.as_ref(), &requests, Timestamp::now());
    page["may"] = agent_actions(state, &a).await;
    Ok(page)
}

/// What the user may do to this agent from its page, each with the reason when not: pause and
/// resume (the RBAC the webhook also checks: `patch` and the virtual verb `pause`; a drift
/// pause is lifted by an approver's resume, a kill-switch pause only by the kill switch), and
/// approve its waiting promotion (a dry-run of that Approval, the webhook's own answer).
async fn agent_actions(state: &State, a: &SocAgent) -> Value {
    let (ns, name) = view::ns_name(a);
    let c = &state.client;
    let (patch, pause) = futures::join!(
        allowed(c, "patch", "socagents", Some(&ns), Some(&name)),
        allowed(c, "pause", "socagents", Some(&ns), Some(&name)),
    );
    let may_pause = patch && pause;
    let no_pause = "you may not pause or resume agents here (socagents: patch and pause)";
    let paused = a.status.as_ref().and_then(|s| s.pause.clone());
    let pause_act = match (&paused, may_pause) {
        (Some(_), _) => json!({"ok": false, "why": "it is paused"}),
        (None, true) => json!({"ok": true}),
        (None, false) => json!({"ok": false, "why": no_pause}),
    };
    let resume_act = match &paused {
        None => json!({"ok": false, "why": "it is not paused"}),
        Some(p) if p.reason == reason::KILL_SWITCH => {
            json!({"ok": false, "why": "paused by the kill switch: it resumes when killSwitch is set back to false"})
        }
        Some(p) if p.reason == reason::DRIFT => verdict(&super::resume_approval(c, &ns, &name, &p.id, "", true).await),
        Some(_) if may_pause => json!({"ok": true}),
        Some(_) => json!({"ok": false, "why": no_pause}),
    };
    let effective = a.status.as_ref().and_then(|s| s.effective_tier);
    let promote_act = if effective.is_some_and(|e| e < a.spec.tier) {
        let dry = super::promotion_approval(c, &ns, &name, "", true).await;
        let mut v = verdict(&dry);
        if let Ok((_, from, _)) = dry {
            v["to"] = json!(from.next());
        }
        v
    } else {
        json!({"ok": false, "why": "no promotion is waiting"})
    };
    json!({"pause": pause_act, "resume": resume_act, "promote": promote_act})
}

async fn request(state: &State, ns: &str, name: &str) -> Result<Value, kube::Error> {
    let r = Api::<ActionRequest>::namespaced(state.client.clone(), ns).get(name).await?;
    let agent = Api::<SocAgent>::namespaced(state.client.clone(), ns).get_opt(&r.spec.agent).await.ok().flatten();
    let action = Api::<SocAction>::all(state.client.clone()).get_opt(&r.spec.action).await.ok().flatten();
    let mut page = view::request_page(&r, agent.as_ref(), action.as_ref(), Timestamp::now());
    if page["decision"] == "Pending" {
        page["canDecide"] = can_decide(state, &r, agent.as_ref(), page["seen"].as_str()).await;
    }
    Ok(page)
}

/// The JSON body of a write (small: a decision or an act).
async fn json_body(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(json_response(StatusCode::PAYLOAD_TOO_LARGE, &json!({"error": "body too large"}))),
    };
    serde_json::from_slice::<Value>(&body)
        .map_err(|_| json_response(StatusCode::BAD_REQUEST, &json!({"error": "the body is not JSON"})))
}

/// Pauses, resumes or approves the promotion of an agent, as the user (the same functions as
/// `kubectl warden pause|resume|promote`).
async fn act(state: &State, req: Request<Incoming>) -> Response<Body> {
    let d = match json_body(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (Some(ns), Some(agent), Some(what)) = (d["namespace"].as_str(), d["agent"].as_str(), d["act"].as_str()) else {
        return json_response(StatusCode::BAD_REQUEST, &json!({"error": "namespace, agent and act are required"}));
    };
    let comment = d["comment"].as_str().unwrap_or_default();
    let done = match what {
        "pause" => super::pause(&state.client, ns, agent).await,
        "resume" => super::resume(&state.client, ns, agent, comment).await,
        "promote" => super::promote(&state.client, ns, agent, comment).await,
        _ => return json_response(StatusCode::BAD_REQUEST, &json!({"error": "act is pause, resume or promote"})),
    };
    match done {
        Ok(said) => json_response(StatusCode::OK, &json!({"done": said})),
        Err(e) => json_response(StatusCode::FORBIDDEN, &json!({"error": why(&e)})),
    }
}

/// Records the user's decision as an Approval created with their credentials.
async fn decide(state: &State, req: Request<Incoming>) -> Response<Body> {
    let d = match json_body(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (Some(ns), Some(name), Some(decision)) =
        (d["namespace"].as_str(), d["request"].as_str(), d["decision"].as_str())
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "namespace, request and decision are required"}),
        );
    };
    if decision != "approve" && decision != "deny" {
        return json_response(StatusCode::BAD_REQUEST, &json!({"error": "decision is approve or deny"}));
    }
    let comment = d["comment"].as_str().unwrap_or_default();
    // The content the page showed the user: the webhook refuses an approval of anything else.
    let seen = d["seen"].as_str();
    let spec = json!({"actionRequest": name, "decision": decision, "comment": comment, "seen": seen});
    match super::approval(&state.client, ns, decision, name, spec, false).await {
        Ok(a) => json_response(
            StatusCode::OK,
            &json!({"approval": a.metadata.name, "approver": a.spec.approver, "decision": decision}),
        ),
        Err(e) => json_response(StatusCode::FORBIDDEN, &json!({"error": why(&e)})),
    }
}
