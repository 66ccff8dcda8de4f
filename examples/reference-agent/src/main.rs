//! The reference agent of SOC Warden's examples (image `soc-warden/reference-agent`).
//!
//! Every `INTERVAL` seconds it reads the token SOC Warden issued it from the mounted Secret (so a
//! rotated token is used on the next round, without a restart), asks the API server what it may
//! do (SelfSubjectRulesReview), files one ActionRequest and waits for its decision. Each step is
//! one JSON line on stdout. The token is never printed: only its fingerprint, which the filed
//! request's justification also carries, so anyone can tell which token filed it.
//!
//! Settings (environment): `AGENT` (the SocAgent's name, required), `TOKEN_FILE`
//! (/var/run/soc-warden/token), `CA_FILE` (/var/run/kube-root-ca/ca.crt), `ACTION` (enrich-alert),
//! `PARAMETERS` (JSON object, {}), `TARGET_KIND` (Pod), `TARGET_NAME`, `TARGET_NAMESPACE`,
//! `INTERVAL` (30). The API server is the in-cluster one (`KUBERNETES_SERVICE_HOST`/`_PORT`).

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::authorization::v1::{SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use socwarden_api::{ActionRequest, ActionRequestSpec, Target};
use std::time::Duration;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn say(line: Value) {
    println!("{line}");
}

/// The first 12 hex digits of the token's SHA-256: names the token without revealing it.
fn fingerprint(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The namespace the token's ServiceAccount lives in (the agent's), from the token's claims.
fn namespace_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["kubernetes.io"]["namespace"].as_str().map(String::from)
}

fn client(token: &str) -> Result<kube::Client> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").context("KUBERNETES_SERVICE_HOST is not set (run in a pod)")?;
    let port = env("KUBERNETES_SERVICE_PORT", "443");
    let ca_file = env("CA_FILE", "/var/run/kube-root-ca/ca.crt");
    let pem = std::fs::read(&ca_file).with_context(|| format!("reading the cluster CA {ca_file}"))?;
    let certs = pem_certificates(&pem)?;
    let mut config = kube::Config::new(format!("https://{host}:{port}").parse()?);
    config.root_cert = Some(certs);
    config.auth_info.token = Some(token.to_string().into());
    Ok(kube::Client::try_from(config)?)
}

/// DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem)?;
    let mut out = vec![];
    for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body = block.split("-----END CERTIFICATE-----").next().unwrap_or_default();
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(b64)?);
    }
    if out.is_empty() {
        return Err(anyhow!("no certificate in the CA file"));
    }
    Ok(out)
}

async fn round(agent: &str, token: &str) -> Result<()> {
    let fp = fingerprint(token);
    let ns = namespace_of(token).ok_or_else(|| anyhow!("the token carries no namespace claim"))?;
    let client = client(token)?;

    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec { namespace: Some(ns.clone()) },
        ..Default::default()
    };
    let rules = Api::<SelfSubjectRulesReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    let may: Vec<String> = rules
        .status
        .map(|s| {
            s.resource_rules
                .iter()
                .map(|r| format!("{} {}", r.verbs.join(","), r.resources.clone().unwrap_or_default().join(",")))
                .collect()
        })
        .unwrap_or_default();
    say(json!({"event": "may", "token": fp, "namespace": ns, "rules": may}));

    let parameters: serde_json::Map<String, Value> = serde_json::from_str(&env("PARAMETERS", "{}"))?;
    let target_ns = env("TARGET_NAMESPACE", "");
    let mut request = ActionRequest::new(
        "",
        ActionRequestSpec {
            agent: agent.to_string(),
            action: env("ACTION", "enrich-alert"),
            parameters: parameters.into_iter().collect(),
            target: Target {
                kind: env("TARGET_KIND", "Pod"),
                name: env("TARGET_NAME", "unknown"),
                namespace: (!target_ns.is_empty()).then_some(target_ns),
            },
            justification: format!("reference agent round, token {fp}"),
            ..Default::default()
        },
    );
    request.metadata.name = None;
    request.metadata.generate_name = Some(format!("{agent}-"));
    let requests: Api<ActionRequest> = Api::namespaced(client, &ns);
    let created = requests.create(&PostParams::default(), &request).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    say(json!({"event": "filed", "token": fp, "request": name, "requester": created.spec.requester}));
    for _ in 0..50 {
        let r = requests.get(&name).await?;
        if let Some(decision) = r.status.and_then(|s| s.decision) {
            say(json!({"event": "decided", "request": name, "decision": format!("{decision:?}")}));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(json!({"event": "undecided", "request": name}));
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let agent = std::env::var("AGENT").context("AGENT (the SocAgent's name) is not set")?;
    let token_file = env("TOKEN_FILE", "/var/run/soc-warden/token");
    let interval: u64 = env("INTERVAL", "30").parse().context("INTERVAL is a number of seconds")?;
    say(json!({"event": "start", "agent": agent, "tokenFile": token_file}));
    let mut waiting = false;
    loop {
        match std::fs::read_to_string(&token_file) {
            Ok(token) if !token.trim().is_empty() => {
                waiting = false;
                if let Err(e) = round(&agent, token.trim()).await {
                    say(json!({"event": "error", "token": fingerprint(token.trim()), "error": format!("{e:#}")}));
                }
                tokio::time::sleep(Duration::from_secs(interval)).await;
            }
            // No token yet (or the agent was paused and its Secret deleted): look again soon.
            _ => {
                if !waiting {
                    say(json!({"event": "no-token", "tokenFile": token_file}));
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}
