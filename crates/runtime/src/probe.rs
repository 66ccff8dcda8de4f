//! `warden probe`: one HTTP(S) GET made by the operator's own binary, for the chart's `helm test`
//! pod (the image has no shell and no curl). Over TLS the server's certificate is verified against
//! a given CA, for a given name: the test pod reaches the Service by its cluster IP and checks the
//! certificate the API server would check, the one for `<service>.<namespace>.svc`.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The most of a body read (a /metrics page is a few hundred KiB with thousands of agents).
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("reading the body: {0}")]
    Body(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What the server answered.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What the probe expects: a status, and optionally a text in the body.
#[derive(Debug)]
pub struct Expect {
    pub status: u16,
    pub body_contains: Option<String>,
}

/// Whether `answer` is what was expected; if not, why (status and the start of the body).
pub fn judge(answer: &Answer, expect: &Expect) -> Result<(), String> {
    let start: String = answer.body.chars().take(300).collect();
    if answer.status != expect.status {
        return Err(format!("answered {}, expected {}: {start}", answer.status, expect.status));
    }
    match &expect.body_contains {
        Some(text) if !answer.body.contains(text.as_str()) => {
            Err(format!("answered {} without {text:?} in the body: {start}", answer.status))
        }
        _ => Ok(()),
    }
}

/// GETs `url` (`http://` or `https://`). For `https://`, `ca_pem` is the CA the server's
/// certificate must chain to and `server_name` the name it must hold (default: the URL's host).
/// The request carries `Content-Length: 0`, so that an endpoint that reads a body (the admission
/// webhook) answers it rather than asking for one.
pub async fn get(
    url: &str,
    ca_pem: Option<&str>,
    server_name: Option<&str>,
    timeout: Duration,
) -> Result<Answer, Error> {
    tokio::time::timeout(timeout, get_now(url, ca_pem, server_name)).await.map_err(|_| Error::Timeout(timeout))?
}

async fn get_now(url: &str, ca_pem: Option<&str>, server_name: Option<&str>) -> Result<Answer, Error> {
    let uri: hyper::Uri = url.parse().map_err(|e| Error::Invalid(format!("{url:?}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(Error::Invalid(format!("{url:?}: expected http:// or https://"))),
    };
    let authority = uri.authority().ok_or_else(|| Error::Invalid(format!("{url:?}: no host")))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_LENGTH, "0")
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::Connect(authority.to_string(), e))?;
    if !https {
        return send(tcp, request).await;
    }
    let ca = ca_pem.ok_or_else(|| Error::Invalid("https:// needs the CA of the server's certificate (--ca)".into()))?;
    let roots = crate::tls::roots(ca).map_err(|e| Error::Invalid(format!("--ca: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = server_name.unwrap_or(&host).to_string();
    let name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| Error::Invalid(format!("server name {name:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(authority.to_string(), e))?;
    send(tls, request).await
}

/// Sends `request` over `io` (HTTP/1.1) and reads the answer (at most `MAX_BODY` of its body).
pub(crate) async fn send<S>(io: S, request: hyper::Request<Full<Bytes>>) -> Result<Answer, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| Error::Body(e.to_string()))?
        .to_bytes();
    Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Caller, Handler, Limits, serve_tls};
    use hyper::StatusCode;

    #[test]
    fn judge_wants_the_status_and_the_text() {
        let answer = |status: u16, body: &str| Answer { status, body: body.into() };
        let expect = |status: u16, text: Option<&str>| Expect { status, body_contains: text.map(String::from) };
        let cases = [
            (answer(200, "socwarden_up 1"), expect(200, None), true, "the status alone"),
            (answer(200, "socwarden_up 1"), expect(200, Some("socwarden_")), true, "status and text"),
            (answer(200, "go_gc 1"), expect(200, Some("socwarden_")), false, "the text is missing"),
            (answer(401, "present its client certificate"), expect(200, None), false, "another status"),
            (
                answer(401, "answers only the API server"),
                expect(401, Some("only the API server")),
                true,
                "a refusal expected",
            ),
            (answer(503, ""), expect(200, Some("")), false, "an empty text does not excuse the status"),
        ];
        for (a, e, ok, case) in cases {
            assert_eq!(judge(&a, &e).is_ok(), ok, "{case}: {:?}", judge(&a, &e));
        }
        let why = judge(&answer(404, "not found\n"), &expect(200, None)).unwrap_err();
        assert!(why.contains("answered 404, expected 200: not found"), "{why}");
    }

    /// The webhook's TLS server as the operator runs it with a client CA, on loopback.
    async fn webhook(material: &crate::tls::Material) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = crate::tls::server_config(material, Some(&material.ca_pem)).unwrap();
        let handler = Handler::Whole(Arc::new(|path, _body| {
            use futures::FutureExt as _;
            async move { (StatusCode::OK, format!("reviewed {path}").into_bytes()) }.boxed()
        }));
        tokio::spawn(serve_tls(listener, config, Caller::Certificate, Limits::new(1 << 20), handler));
        port
    }

    #[tokio::test]
    async fn over_tls_the_certificate_is_checked_for_the_service_name_not_the_address() {
        let service = "soc-warden.soc-warden-system.svc";
        let material = crate::tls::generate(&[service.into()], &[]).unwrap();
        let port = webhook(&material).await;
        let url = format!("https://127.0.0.1:{port}/validate");
        let t = Duration::from_secs(10);

        // Reached by address, verified by the Service's name: the webhook answers, and refuses a
        // caller without the API server's client certificate.
        let answer = get(&url, Some(&material.ca_pem), Some(service), t).await.unwrap();
        assert_eq!(answer.status, 401, "{answer:?}");
        assert!(answer.body.contains("answers only the API server"), "{answer:?}");

        // A certificate for another name, or from another CA, fails the handshake.
        let err = get(&url, Some(&material.ca_pem), Some("other.soc-warden-system.svc"), t).await.unwrap_err();
        assert!(matches!(err, Error::Tls(..)), "another name: {err}");
        let err = get(&url, Some(&material.ca_pem), None, t).await.unwrap_err();
        assert!(matches!(err, Error::Tls(..)), "the address is not in the certificate: {err}");
        let stranger = crate::tls::generate(&[service.into()], &[]).unwrap();
        let err = get(&url, Some(&stranger.ca_pem), Some(service), t).await.unwrap_err();
        assert!(matches!(err, Error::Tls(..)), "another CA: {err}");
        // https without a CA is refused before connecting.
        assert!(matches!(get(&url, None, Some(service), t).await, Err(Error::Invalid(_))));
    }

    #[tokio::test]
    async fn plain_http_and_bad_urls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = s.read(&mut head).await.unwrap();
            let head = String::from_utf8_lossy(&head[..n]).to_string();
            let body = if head.starts_with("GET /metrics HTTP/1.1") { "socwarden_up 1\n" } else { "wrong request\n" };
            let out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            s.write_all(out.as_bytes()).await.unwrap();
        });
        let t = Duration::from_secs(10);
        let answer = get(&format!("http://127.0.0.1:{port}/metrics"), None, None, t).await.unwrap();
        assert_eq!(answer, Answer { status: 200, body: "socwarden_up 1\n".into() });
        assert!(matches!(get("ftp://127.0.0.1/", None, None, t).await, Err(Error::Invalid(_))));
        assert!(matches!(get("http://127.0.0.1:1/", None, None, t).await, Err(Error::Connect(..))));
    }
}
