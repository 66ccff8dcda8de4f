//! Carrying out an approved action exactly as approved: a rendered manifest applied with
//! server-side apply (idempotent: applying it again changes nothing), or a signed HTTP call that
//! carries the request's UID as its idempotency key. Rollback deletes what a manifest applied.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use socwarden_api::{ActionRequest, AppliedObject, HttpExecution};
use socwarden_core::admission::signature;
use socwarden_core::agent::rbac::Rule;
use socwarden_core::{envelope, execution};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub const FIELD_MANAGER: &str = "soc-warden-action";
pub use envelope::REQUEST_LABEL;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("HTTP call failed: {0}")]
    Http(String),
}

/// Resolved kinds, so that each execution costs only its writes.
#[derive(Default)]
pub struct Discovery(Mutex<HashMap<GroupVersionKind, (ApiResource, Scope)>>);

impl Discovery {
    pub async fn resolve(&self, client: &Client, gvk: &GroupVersionKind) -> Result<(ApiResource, Scope), Error> {
        if let Some(hit) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(gvk).cloned() {
            return Ok(hit);
        }
        let (ar, caps) = kube::discovery::pinned_kind(client, gvk).await?;
        let hit = (ar, caps.scope);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(gvk.clone(), hit.clone());
        Ok(hit)
    }
}

fn gvk_of(obj: &serde_json::Value) -> Result<GroupVersionKind, Error> {
    let api_version = obj
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Invalid("manifest without apiVersion".into()))?;
    let kind =
        obj.get("kind").and_then(|v| v.as_str()).ok_or_else(|| Error::Invalid("manifest without kind".into()))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// The objects of a manifest execution (`execution::manifest_objects`), as this module's error.
pub fn objects(template: &str, req: &ActionRequest) -> Result<Vec<serde_json::Value>, Error> {
    execution::manifest_objects(template, req).map_err(Error::Invalid)
}

/// Why the objects of kinds `kinds` may not be written by an execution (empty: they may), each
/// resolved through discovery and judged by `envelope::problem`. A kind the API server does not
/// serve is a problem; an API server that cannot be asked is an error.
pub async fn outside_envelope(
    client: &Client,
    disco: &Discovery,
    kinds: &[envelope::Kind],
    reversible: bool,
    delegable: &[Rule],
) -> Result<Vec<String>, kube::Error> {
    let mut problems = Vec::new();
    for k in kinds {
        if let Some(p) = envelope::never(k) {
            problems.push(p);
            continue;
        }
        match disco.resolve(client, &GroupVersionKind::gvk(&k.group, &k.version, &k.kind)).await {
            Ok((ar, scope)) => {
                problems.extend(envelope::problem(k, &ar.plural, scope == Scope::Namespaced, reversible, delegable))
            }
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
                problems.push(format!("{k} is not served by the API server"))
            }
            Err(Error::Kube(kube::Error::Discovery(e))) => {
                problems.push(format!("{k} is not served by the API server ({e})"))
            }
            Err(Error::Kube(e)) => return Err(e),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(problems)
}

/// The problems of a manifest template, for the SocAction's status (see `outside_envelope`).
pub async fn template_outside_envelope(
    client: &Client,
    disco: &Discovery,
    template: &str,
    reversible: bool,
    delegable: &[Rule],
) -> Result<Vec<String>, kube::Error> {
    match envelope::manifest_kinds(template) {
        Ok(kinds) => outside_envelope(client, disco, &kinds, reversible, delegable).await,
        Err(e) => Ok(vec![e]),
    }
}

/// Applies the manifest; returns what was applied. Every object is checked against the safe
/// envelope before any is applied, whatever the SocAction's status said when the request was
/// decided.
pub async fn apply_manifest(
    client: &Client,
    disco: &Discovery,
    template: &str,
    req: &ActionRequest,
    reversible: bool,
    delegable: &[Rule],
) -> Result<Vec<AppliedObject>, Error> {
    let objs = objects(template, req)?;
    let gvks = objs.iter().map(gvk_of).collect::<Result<Vec<_>, Error>>()?;
    let kinds: Vec<envelope::Kind> = gvks
        .iter()
        .map(|g| envelope::Kind { group: g.group.clone(), version: g.version.clone(), kind: g.kind.clone() })
        .collect();
    let problems = outside_envelope(client, disco, &kinds, reversible, delegable).await?;
    if !problems.is_empty() {
        return Err(Error::Invalid(format!("nothing applied: {}", problems.join("; "))));
    }
    // Nothing is taken over: every object is absent or this request's own, checked before any is
    // written. Each request applies as its own field manager, without force, so that a race
    // between two requests writing the same object ends in a conflict, not a takeover.
    let uid = req.uid().unwrap_or_default();
    let mut targets = Vec::new();
    for (obj, gvk) in objs.into_iter().zip(&gvks) {
        let (ar, _) = disco.resolve(client, gvk).await?;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        let existing = api.get_opt(&name).await?;
        let what = format!("{} {ns}/{name}", ar.kind);
        envelope::may_write(existing.as_ref().map(|o| o.labels()), &uid, &what)
            .map_err(|e| Error::Invalid(format!("nothing applied: {e}")))?;
        targets.push((api, ar, ns, name, obj));
    }
    let manager = format!("{FIELD_MANAGER}-{uid}");
    let mut applied = Vec::new();
    for (api, ar, ns, name, obj) in targets {
        match api.patch(&name, &PatchParams::apply(&manager), &Patch::Apply(&obj)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Err(Error::Invalid(format!(
                    "{} {ns}/{name} was written by someone else meanwhile; not taken over ({})",
                    ar.kind, e.message
                )));
            }
            Err(e) => return Err(e.into()),
        }
        applied.push(AppliedObject { api_version: ar.api_version.clone(), kind: ar.kind.clone(), namespace: ns, name });
    }
    Ok(applied)
}

/// Deletes what the execution of request `uid` applied and still carries its label (already gone
/// is fine); returns what was left because another request or a person owns it now.
pub async fn rollback(
    client: &Client,
    disco: &Discovery,
    applied: &[AppliedObject],
    uid: &str,
) -> Result<Vec<String>, Error> {
    let mut left = Vec::new();
    for o in applied {
        let (group, version) = o.api_version.split_once('/').unwrap_or(("", &o.api_version));
        let (ar, _) = disco.resolve(client, &GroupVersionKind::gvk(group, version, &o.kind)).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &o.namespace, &ar);
        let Some(current) = api.get_opt(&o.name).await? else { continue };
        if !envelope::rolls_back(current.labels(), uid) {
            left.push(o.to_string());
            continue;
        }
        // Only the very object seen above (not one recreated under the same name meanwhile).
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions { uid: current.uid(), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(&o.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(left)
}

pub use execution::http_body;

/// `sha256=<hex HMAC-SHA256 of the body>`, as sent in `X-SOC-Warden-Signature`.
pub fn http_signature(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    format!("sha256={}", signature::hex(ring::hmac::sign(&k, body).as_ref()))
}

/// POSTs the signed body; returns the HTTP status on a 2xx answer.
pub async fn call(http: &HttpExecution, key: &[u8], idempotency_key: &str, body: Vec<u8>) -> Result<u16, Error> {
    let headers =
        [("x-soc-warden-signature", http_signature(key, &body)), ("idempotency-key", idempotency_key.to_string())];
    let timeout = Duration::from_secs(u64::from(http.timeout_seconds.unwrap_or(10)));
    post(&http.url, http.ca_bundle.as_deref(), timeout, &headers, body).await
}

/// POSTs a JSON `body` with `headers` to `url` (trusting `ca_bundle` for https), waiting at most
/// `timeout`; returns the HTTP status on a 2xx answer, an error saying what came back otherwise.
pub async fn post(
    url: &str,
    ca_bundle: Option<&str>,
    timeout: Duration,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<u16, Error> {
    let uri: hyper::Uri = url.parse().map_err(|e| Error::Invalid(format!("url: {e}")))?;
    let mut request = hyper::Request::post(uri.clone()).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(Bytes::from(body))).map_err(|e| Error::Http(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_bundle {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(c.map_err(|e| Error::Invalid(format!("caBundle: {e}")))?)
                .map_err(|e| Error::Invalid(format!("caBundle: {e}")))?;
        }
    }
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Http(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    // What comes back is the endpoint's, not ours to show: whoever can read a request's status
    // (or edit the catalog's URL) must not learn what an internal endpoint answered, or why a
    // connection failed. The status says that the call failed, with the HTTP code; the log says
    // the rest.
    let resp = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| Error::Http(format!("no answer from {uri} within {timeout:?}")))?
        .map_err(|e| {
            tracing::warn!(url = %uri, error = %e, "HTTP call failed");
            Error::Http(format!("the call to {uri} failed (the operator's log says why)"))
        })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body = String::from_utf8_lossy(&text).chars().take(2000).collect::<String>();
        tracing::warn!(url = %uri, status, body = %body, "HTTP call answered with an error");
        return Err(Error::Http(format!("{uri} answered {status} (the body is in the operator's log)")));
    }
    Ok(status)
}

/// The value under `r` of a Secret in the operator's namespace (never one of the operator's own).
pub async fn secret_value(client: &Client, namespace: &str, r: &socwarden_api::SecretKeyRef) -> Result<Vec<u8>, Error> {
    // Checked here too, where every key and URL is read: the status that says so may lag an edit.
    if let Some(why) = socwarden_core::envelope::secret_problem("secretRef", &r.name) {
        return Err(Error::Invalid(why));
    }
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    let s = api.get(&r.name).await?;
    s.data
        .and_then(|d| d.get(&r.key).map(|b| b.0.clone()))
        .ok_or_else(|| Error::Invalid(format!("Secret {} has no key {}", r.name, r.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_signature_is_hmac_of_the_body() {
        let sig = http_signature(b"k", b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_ne!(sig, http_signature(b"k", b"{ }"));
    }
}
