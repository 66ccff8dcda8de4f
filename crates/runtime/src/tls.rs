//! Key material the operator keeps for itself: the webhook's serving certificate (generated, or
//! taken from files), the HMAC key that signs admission stamps, and the registration of the
//! admission webhooks with their CA bundle. Every replica shares the same material through
//! Secrets in the operator's namespace, so any replica can serve any admission request.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub const WEBHOOK_CONFIG: &str = "socwarden.io";
pub const TLS_SECRET: &str = "socwarden-webhook-tls";
pub const KEY_SECRET: &str = "socwarden-signing-key";

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

pub fn server_config(m: &Material) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).map_err(|e| Error::Tls(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn secret_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data.as_ref()?.get(key).map(|b| b.0.clone())
}

/// Reads a Secret of the operator, creating it with `make()` if it does not exist. When two
/// replicas race, the one whose create fails reads what the other wrote.
async fn shared_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    make: impl FnOnce() -> Result<BTreeMap<String, Vec<u8>>, Error>,
) -> Result<Secret, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_opt(name).await? {
        return Ok(s);
    }
    let data = make()?.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("app.kubernetes.io/name".to_string(), "soc-warden".to_string())].into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(s) => Ok(s),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get(name).await?),
        Err(e) => Err(e.into()),
    }
}

/// The webhook's TLS material, shared by every replica through a Secret.
pub async fn webhook_material(
    client: &Client,
    namespace: &str,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<Material, Error> {
    let s = shared_secret(client, namespace, TLS_SECRET, || {
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

/// The HMAC key that signs admission stamps: 32 random bytes, created once, shared by replicas.
pub async fn signing_key(client: &Client, namespace: &str) -> Result<Vec<u8>, Error> {
    let s = shared_secret(client, namespace, KEY_SECRET, || {
        let mut key = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| Error::Tls("no randomness".into()))?;
        Ok([("key".to_string(), key)].into())
    })
    .await?;
    secret_value(&s, "key").filter(|k| k.len() >= 32).ok_or_else(|| Error::MissingKey(KEY_SECRET.into(), "key".into()))
}

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `https://host:port` (a local operator, or a fixed address).
    Url(String),
    /// A Service in front of the operator's replicas.
    Service { namespace: String, name: String, port: i32 },
}

impl Endpoint {
    fn client_config(&self, path: &str, ca: &str) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(ca.as_bytes().to_vec()));
        match self {
            Endpoint::Url(u) => WebhookClientConfig {
                url: Some(format!("{}{path}", u.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
            Endpoint::Service { namespace, name, port } => WebhookClientConfig {
                url: None,
                ca_bundle,
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.into()),
                    port: Some(*port),
                }),
            },
        }
    }
}

fn rule(operations: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec!["socwarden.io".into()]),
        api_versions: Some(vec!["v1alpha1".into()]),
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        resources: Some(vec!["actionrequests".into(), "approvals".into()]),
        scope: Some("Namespaced".into()),
    }
}

/// The two webhook configurations: a mutating one that stamps on CREATE, a validating one that
/// checks stamps on CREATE and immutability on UPDATE. Both fail closed.
pub fn configurations(endpoint: &Endpoint, ca: &str) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let meta = ObjectMeta { name: Some(WEBHOOK_CONFIG.into()), ..Default::default() };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: "stamp.socwarden.io".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: endpoint.client_config("/mutate", ca),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            reinvocation_policy: Some("Never".into()),
            rules: Some(vec![rule(&["CREATE"])]),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![ValidatingWebhook {
            name: "check.socwarden.io".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: endpoint.client_config("/validate", ca),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            rules: Some(vec![rule(&["CREATE", "UPDATE"])]),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    (mutating, validating)
}

/// Creates or updates both webhook configurations.
pub async fn register(client: &Client, endpoint: &Endpoint, ca: &str) -> Result<(), Error> {
    let (m, v) = configurations(endpoint, ca);
    let pp = PatchParams::apply("soc-warden").force();
    Api::<MutatingWebhookConfiguration>::all(client.clone()).patch(WEBHOOK_CONFIG, &pp, &Patch::Apply(&m)).await?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).patch(WEBHOOK_CONFIG, &pp, &Patch::Apply(&v)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_makes_a_server_config() {
        let m = generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()]).unwrap();
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server_config(&m).is_ok());
        assert!(server_config(&Material { key_pem: "nope".into(), ..m }).is_err());
    }

    #[test]
    fn configurations_fail_closed_and_cover_both_kinds() {
        let (m, v) = configurations(&Endpoint::Url("https://127.0.0.1:9443/".into()), "CA");
        let mw = &m.webhooks.unwrap()[0];
        assert_eq!(mw.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(mw.client_config.url.as_deref(), Some("https://127.0.0.1:9443/mutate"));
        let vw = &v.webhooks.unwrap()[0];
        assert_eq!(
            vw.rules.as_ref().unwrap()[0].operations.as_ref().unwrap(),
            &vec!["CREATE".to_string(), "UPDATE".to_string()]
        );
        assert_eq!(
            vw.rules.as_ref().unwrap()[0].resources.as_ref().unwrap(),
            &vec!["actionrequests".to_string(), "approvals".to_string()]
        );
        let (m, _) =
            configurations(&Endpoint::Service { namespace: "sw".into(), name: "warden".into(), port: 443 }, "CA");
        assert_eq!(m.webhooks.unwrap()[0].client_config.service.as_ref().unwrap().path.as_deref(), Some("/mutate"));
    }
}
