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

async fn route(req: Request<Incoming>, metrics: Metrics, stores: Stores) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => {
            metrics.refresh(&stores.agents.state());
            respond(StatusCode::OK, "text/plain; version=0.0.4", metrics.encode())
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if stores.ready() => respond(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "caches not synced\n"),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

pub async fn serve(listener: TcpListener, metrics: Metrics, stores: Stores) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (metrics, stores) = (metrics.clone(), stores.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| route(req, metrics.clone(), stores.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
