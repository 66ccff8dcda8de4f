//! The serving certificate of the webhook, the audit sink (and any TLS endpoint of the operator):
//! generated once and shared by every replica through a Secret in the operator's namespace, or
//! taken from files (e.g. cert-manager's).

use crate::k8s::{self, secret_value};
use kube::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub const TLS_SECRET: &str = socwarden_core::envelope::OPERATOR_SECRETS[1];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("reading {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("Secret {0} is missing key {1}")]
    MissingKey(String, String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A fresh CA and a serving certificate for `dns` names and `ips`.
pub fn generate(dns: &[String], ips: &[IpAddr]) -> Result<Material, Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "SOC Warden webhook CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(dns.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, "soc-warden-webhook");
    params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Material { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Reads `tls.crt`, `tls.key` and `ca.crt` from a directory (a mounted Secret).
pub fn from_dir(dir: &Path) -> Result<Material, Error> {
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read_to_string(&p).map_err(|source| Error::File { path: p.display().to_string(), source })
    };
    Ok(Material { cert_pem: read("tls.crt")?, key_pem: read("tls.key")?, ca_pem: read("ca.crt")? })
}

/// A TLS server configuration with the serving certificate of `m`. With `client_ca` (PEM), client
/// certificates signed by it are verified; a caller without one still connects, and the endpoint
/// decides (`server::Caller`), so that it can answer 401 with the reason rather than a bare
/// handshake failure.
pub fn server_config(m: &Material, client_ca: Option<&str>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).map_err(|e| Error::Tls(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let roots = roots(pem).map_err(|e| Error::Tls(format!("client CA: {e}")))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of a PEM bundle, as trust roots (a client CA, a caBundle, the probe's CA).
/// An unreadable bundle, or one without a certificate, is an error: never "trust nothing" that
/// would read as "checked".
pub fn roots(pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in the bundle".into());
    }
    Ok(roots)
}

/// The webhook's TLS material, shared by every replica through a Secret.
pub async fn webhook_material(
    client: &Client,
    namespace: &str,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<Material, Error> {
    let s = k8s::shared_secret::<Error>(client, namespace, TLS_SECRET, || {
        let m = generate(dns, ips)?;
        Ok([
            ("ca.crt".to_string(), m.ca_pem.into_bytes()),
            ("tls.crt".to_string(), m.cert_pem.into_bytes()),
            ("tls.key".to_string(), m.key_pem.into_bytes()),
        ]
        .into())
    })
    .await?;
    let get = |k: &str| {
        secret_value(&s, k)
            .map(|v| String::from_utf8_lossy(&v).to_string())
            .ok_or_else(|| Error::MissingKey(TLS_SECRET.into(), k.into()))
    };
    Ok(Material { ca_pem: get("ca.crt")?, cert_pem: get("tls.crt")?, key_pem: get("tls.key")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_makes_a_server_config() {
        let m = generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()]).unwrap();
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server_config(&m, None).is_ok());
        assert!(server_config(&m, Some(&m.ca_pem)).is_ok(), "a CA verifies client certificates");
        assert!(server_config(&m, Some("not a certificate")).is_err(), "an unreadable client CA is an error, not open");
        assert!(server_config(&Material { key_pem: "nope".into(), ..m }, None).is_err());
    }
}
