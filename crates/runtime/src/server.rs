//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` in plain HTTP, and the TLS
//! endpoints (the admission webhook, the audit sink) with who may call them and within what limits.

use crate::context::Stores;
use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

fn respond(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// Whether the operator is ready: caches complete, the API server reachable and, when
/// configured, the webhook registered.
#[derive(Clone)]
pub struct Readiness {
    pub stores: Stores,
    /// Set once the admission webhook is registered (stays true when there is none).
    pub webhook: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether the API server answered its last readiness check (see `run::api_reachability`).
    pub api: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Readiness {
    /// Why the operator is not ready, if it is not.
    pub fn not_ready(&self) -> Option<&'static str> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.api.load(Relaxed) {
            Some("the Kubernetes API server is not reachable or not ready\n")
        } else if !self.stores.ready() {
            Some("caches not synced\n")
        } else if !self.webhook.load(Relaxed) {
            Some("admission webhook not registered\n")
        } else {
            None
        }
    }
}

async fn route(
    req: Request<Incoming>,
    metrics: Metrics,
    ready: Readiness,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let stores = &ready.stores;
    Ok(match req.uri().path() {
        "/metrics" => {
            metrics.refresh(&stores.agents.state());
            metrics.refresh_requests(&stores.requests.state(), jiff::Timestamp::now());
            let fleet = stores.agents.state().len();
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics.encode(fleet, jiff::Timestamp::now().as_second()),
            )
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => match ready.not_ready() {
            None => respond(StatusCode::OK, "text/plain", "ready\n"),
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", why),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

pub async fn serve(listener: TcpListener, metrics: Metrics, ready: Readiness) -> std::io::Result<()> {
    accept_loop(listener, 64, "metrics", move |stream| {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        async move {
            let svc = hyper::service::service_fn(move |req| route(req, metrics.clone(), ready.clone()));
            if let Err(e) = http1(Duration::from_secs(5)).serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        }
    })
    .await
}

/// Answers one request: (path, body) → (status, JSON body). The caller is already authenticated.
pub type WholeHandler =
    std::sync::Arc<dyn Fn(String, Bytes) -> futures::future::BoxFuture<'static, (StatusCode, Vec<u8>)> + Send + Sync>;

/// Answers one request whose body it reads as it arrives. The caller is already authenticated.
pub type StreamHandler =
    std::sync::Arc<dyn Fn(String, Body) -> futures::future::BoxFuture<'static, (StatusCode, Vec<u8>)> + Send + Sync>;

/// How an endpoint takes its bodies.
#[derive(Clone)]
pub enum Handler {
    /// Whole: refused over `Limits::max_body` from its Content-Length, read within the body budget,
    /// then answered (AdmissionReviews).
    Whole(WholeHandler),
    /// As it arrives, whatever its size: the handler keeps what it needs of it (the audit sink).
    /// Each body larger than `Limits::small` holds `Limits::max_body` of the body budget at most
    /// (its Content-Length if smaller) while it is read.
    Stream(StreamHandler),
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body broke off or does not match its Content-Length")]
    Broken,
    #[error("the body stopped arriving: nothing for {0:?}")]
    Stalled(Duration),
}

/// A request body as it arrives: each piece within `idle` of the one before.
pub struct Body {
    inner: Incoming,
    idle: Duration,
    len: Option<usize>,
}

impl Body {
    /// Its Content-Length, when it has one (the body is then exactly that long).
    pub fn content_length(&self) -> Option<usize> {
        self.len
    }

    /// The next piece of the body, or None at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        use http_body_util::BodyExt;
        loop {
            let frame = match tokio::time::timeout(self.idle, self.inner.frame()).await {
                Err(_) => return Some(Err(BodyError::Stalled(self.idle))),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return Some(Err(BodyError::Broken)),
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers carry nothing a handler reads.
            if let Ok(data) = frame.into_data() {
                return Some(Ok(data));
            }
        }
    }
}

/// Who may call a TLS endpoint; checked before any byte of a body is read.
#[derive(Clone)]
pub enum Caller {
    /// Only a client certificate the TLS configuration verified: the API server calling the
    /// admission webhook (`--webhook-client-ca`).
    Certificate,
    /// `Authorization: Bearer <token>`: the API server's audit webhook.
    Token(std::sync::Arc<str>),
    /// Anyone who reaches the port (a webhook without a client CA; see docs/operations/security.md for what that
    /// weakens).
    Anyone,
}

/// How much one TLS endpoint takes on, so that no caller can exhaust the operator: slow or large
/// uploads wait for their share of a fixed body budget (or are refused) instead of growing memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `Handler::Whole`: the largest body read, refused from its Content-Length before any byte is
    /// read. `Handler::Stream`: the most of the body budget one body holds (bodies of any size are
    /// read).
    pub max_body: usize,
    /// Bodies larger than `small` share this many bytes while being read (the rest wait for their
    /// share, then give up); smaller ones (every AdmissionReview the API server sends for a
    /// request or an approval) are bounded by the connection cap, so large uploads never starve them.
    pub body_budget: usize,
    pub small: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub connections: usize,
    /// For the TLS handshake, for the request head, and for the body (a streamed body: for each
    /// piece of it).
    pub handshake: Duration,
    pub headers: Duration,
    pub body: Duration,
    /// Whether a connection serves more than one request. The admission webhook's do not: the API
    /// server picks a pod when it opens a connection and reuses it whatever the endpoints say
    /// since, so a kept connection to a pod being replaced fails the review it carries when the
    /// pod stops ("connection reset by peer" in a rolling update, e2e/tests/node.rs). One request
    /// per connection costs a TLS handshake per review.
    pub keep_alive: bool,
}

impl Limits {
    pub const fn new(max_body: usize) -> Self {
        Self {
            max_body,
            body_budget: 24 << 20,
            small: 64 << 10,
            connections: 256,
            handshake: Duration::from_secs(5),
            headers: Duration::from_secs(5),
            body: Duration::from_secs(10),
            keep_alive: true,
        }
    }
}

/// Accepts connections for ever: an accept error (out of file descriptors, a reset before
/// accept) is logged and survived; at most `limit` connections are served at once.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limit: usize,
    what: &'static str,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        match listener.accept().await {
            Ok((stream, _)) => {
                let conn = serve(stream);
                tokio::spawn(async move {
                    conn.await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, endpoint = what, "accept failed; continuing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

pub(crate) fn http1(headers: Duration) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(headers);
    b
}

/// Serves `handler` over TLS (the admission webhook, the audit sink), to `caller` only, within
/// `limits`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    caller: Caller,
    limits: Limits,
    handler: Handler,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.body_budget >> 10));
    accept_loop(listener, limits.connections, "tls", move |stream| {
        let (acceptor, handler, caller, budget) = (acceptor.clone(), handler.clone(), caller.clone(), budget.clone());
        async move {
            let Ok(Ok(tls)) = tokio::time::timeout(limits.handshake, acceptor.accept(stream)).await else {
                return;
            };
            let certified = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, caller, budget) = (handler.clone(), caller.clone(), budget.clone());
                async move { Ok::<_, Infallible>(answer(req, certified, &caller, limits, &budget, &handler).await) }
            });
            let mut http = http1(limits.headers);
            http.keep_alive(limits.keep_alive);
            if let Err(e) = http.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(error = %e, "TLS connection ended");
            }
        }
    })
    .await
}

async fn answer(
    req: Request<Incoming>,
    certified: bool,
    caller: &Caller,
    limits: Limits,
    budget: &tokio::sync::Semaphore,
    handler: &Handler,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let text = |code, msg: &str| respond(code, "text/plain", format!("{msg}\n"));
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let allowed = match caller {
        Caller::Certificate => certified,
        Caller::Token(t) => socwarden_core::behaviour::audit::token_matches(auth, t),
        Caller::Anyone => true,
    };
    if !allowed {
        let why = match caller {
            Caller::Certificate => "this endpoint answers only the API server: present its client certificate",
            _ => "this endpoint answers only the API server: present its bearer token",
        };
        return text(StatusCode::UNAUTHORIZED, why);
    }
    let len = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let path = req.uri().path().to_string();
    let handler = match handler {
        Handler::Stream(h) => {
            // What the handler holds of the body is bounded, not the body: a share of the budget
            // that is at most `max_body`, whatever the length (unknown with chunked encoding).
            let held = len.unwrap_or(limits.max_body).min(limits.max_body);
            let _share = match share(held, limits, budget).await {
                Ok(share) => share,
                Err(busy) => return busy,
            };
            let (code, out) = h(path, Body { inner: req.into_body(), idle: limits.body, len }).await;
            return respond(code, "application/json", out);
        }
        Handler::Whole(h) => h,
    };
    let Some(len) = len else {
        return text(StatusCode::LENGTH_REQUIRED, "a Content-Length is required");
    };
    if len > limits.max_body {
        return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("bodies are limited to {} bytes", limits.max_body));
    }
    let _share = match share(len, limits, budget).await {
        Ok(share) => share,
        Err(busy) => return busy,
    };
    let read = http_body_util::Limited::new(req.into_body(), len).collect();
    let body = match tokio::time::timeout(limits.body, read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "the body does not match its Content-Length"),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"),
    };
    let (code, out) = handler(path, body).await;
    respond(code, "application/json", out)
}

/// The share of the body budget a body of `len` bytes holds while it is read: none under
/// `limits.small` (the connection cap bounds those), else its KiB, waited for at most `limits.body`.
async fn share(
    len: usize,
    limits: Limits,
    budget: &tokio::sync::Semaphore,
) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, Response<Full<Bytes>>> {
    if len <= limits.small {
        return Ok(None);
    }
    let kib = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.body, budget.acquire_many(kib)).await {
        Ok(Ok(share)) => Ok(Some(share)),
        _ => Err(respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "busy with large bodies; retry\n")),
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Two requests on one TLS connection to `serve_tls` with `keep_alive`: the first answer's
    /// `connection` header, and whether the second was answered.
    async fn twice(keep_alive: bool) -> (Option<String>, bool) {
        use http_body_util::BodyExt as _;
        let m = crate::tls::generate(&["localhost".into()], &[]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Handler::Whole(Arc::new(|_, _| {
            use futures::FutureExt as _;
            async { (StatusCode::OK, b"{}".to_vec()) }.boxed()
        }));
        let limits = Limits { keep_alive, ..Limits::new(1 << 10) };
        tokio::spawn(serve_tls(
            listener,
            crate::tls::server_config(&m, None).unwrap(),
            Caller::Anyone,
            limits,
            handler,
        ));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(crate::tls::roots(&m.ca_pem).unwrap())
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let review = || {
            Request::post("/validate").header("content-length", "2").body(Full::new(Bytes::from_static(b"{}"))).unwrap()
        };
        let first = sender.send_request(review()).await.unwrap();
        let connection = first.headers().get("connection").map(|v| v.to_str().unwrap().to_string());
        first.into_body().collect().await.unwrap();
        let second = match sender.ready().await {
            Ok(()) => sender.send_request(review()).await.is_ok(),
            Err(_) => false,
        };
        (connection, second)
    }

    #[tokio::test]
    async fn without_keep_alive_each_connection_carries_one_request_and_says_so() {
        assert_eq!(twice(false).await, (Some("close".into()), false), "the webhook: one review per connection");
        assert_eq!(twice(true).await, (None, true), "the audit sink: connections are kept");
    }
}
