//! Raw HTTPS to the operator's TLS endpoints, as any pod on the network could attempt it.

use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The CA of the operator's serving certificate (kept in its Secret).
pub async fn webhook_ca(client: &kube::Client) -> Result<String> {
    let s: k8s_openapi::api::core::v1::Secret =
        kube::Api::namespaced(client.clone(), crate::OPERATOR_NAMESPACE).get("socwarden-webhook-tls").await?;
    let ca = s.data.and_then(|d| d.get("ca.crt").cloned()).context("ca.crt in socwarden-webhook-tls")?;
    Ok(String::from_utf8(ca.0)?)
}

/// The client certificate and key the local control plane presents to admission webhooks.
pub fn apiserver_client_cert() -> Result<(String, String)> {
    let pki = crate::cluster_dir().join("pki");
    Ok((
        std::fs::read_to_string(pki.join("webhook-client.crt"))?,
        std::fs::read_to_string(pki.join("webhook-client.key"))?,
    ))
}

/// A TLS connection to 127.0.0.1:`port` trusting `ca`, presenting `client` (certificate, key) if given.
pub async fn connect(port: u16, ca: &str, client: Option<&(String, String)>) -> Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => b.with_client_auth_cert(
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => b.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1")?.to_owned();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?)
}

/// The head of a POST of `len` bytes.
pub fn post_head(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Reads a response until the server closes; (status, body).
pub async fn read_response(s: &mut TlsStream<TcpStream>) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// POSTs `body` to `path`; (status, body).
pub async fn post(
    port: u16,
    path: &str,
    body: &[u8],
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<(u16, String)> {
    let mut s = connect(port, ca, client).await?;
    s.write_all(post_head(path, body.len()).as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    Ok(read_response(&mut s).await)
}

/// POSTs `body` to `path` presenting `Authorization: Bearer <token>`; (status, body).
pub async fn post_bearer(port: u16, path: &str, body: &[u8], ca: &str, token: &str) -> Result<(u16, String)> {
    let mut s = connect(port, ca, None).await?;
    let head = post_head(path, body.len()).replacen("\r\n", &format!("\r\nAuthorization: Bearer {token}\r\n"), 1);
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    Ok(read_response(&mut s).await)
}

/// The local control plane's API server: its port and the CA of its serving certificate.
pub fn apiserver() -> Result<(u16, String)> {
    let dir = crate::cluster_dir();
    let env = std::fs::read_to_string(dir.join("env")).context("the local control plane (e2e/cluster up)")?;
    let port = env.lines().find_map(|l| l.strip_prefix("API_PORT=")).context("API_PORT")?.trim().parse()?;
    Ok((port, std::fs::read_to_string(dir.join("pki/ca.crt"))?))
}

/// GETs `target` (a request line's path and query, sent as it is: it may be longer than any URI
/// type of an HTTP client accepts) from the API server at `port` presenting `token`; the status.
pub async fn get_bearer(port: u16, ca: &str, token: &str, target: &str) -> Result<u16> {
    let mut s = connect(port, ca, None).await?;
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    s.flush().await?;
    Ok(read_response(&mut s).await.0)
}
