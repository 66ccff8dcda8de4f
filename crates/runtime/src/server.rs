//! The operator's plain HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use crate::context::Stores;
use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

fn respond(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// Whether the operator is ready: caches complete and, when configured, the webhook registered.
#[derive(Clone)]
pub struct Readiness {
    pub stores: Stores,
    /// Set once the admission webhook is registered (stays true when there is none).
    pub webhook: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.stores.ready() && self.webhook.load(std::sync::atomic::Ordering::Relaxed)
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
            respond(StatusCode::OK, "text/plain; version=0.0.4", metrics.encode())
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if ready.ready() => respond(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => {
            respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "caches not synced or webhook not registered\n")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

pub async fn serve(listener: TcpListener, metrics: Metrics, ready: Readiness) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (metrics, ready) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| route(req, metrics.clone(), ready.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

/// Answers one request: (path, Authorization header, body) → (status, JSON body).
pub type Handler = std::sync::Arc<dyn Fn(&str, Option<&str>, &[u8]) -> (StatusCode, Vec<u8>) + Send + Sync>;

/// Serves `handler` over TLS (the admission webhook, the audit sink).
pub async fn serve_tls(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    handler: Handler,
) -> std::io::Result<()> {
    use http_body_util::BodyExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = listener.accept().await?;
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
                    // Bodies are small (a review, an audit batch); anything over the limit is refused unread.
                    let body =
                        match http_body_util::Limited::new(req.into_body(), socwarden_core::behaviour::audit::MAX_BODY)
                            .collect()
                            .await
                        {
                            Ok(b) => b.to_bytes(),
                            Err(_) => {
                                return Ok::<_, Infallible>(respond(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    "text/plain",
                                    "too large\n",
                                ));
                            }
                        };
                    let (code, out) = handler(&path, auth.as_deref(), &body);
                    Ok(respond(code, "application/json", out))
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
