//! The second half of the review, tried as a pod that reaches the operator's ports: it may speak
//! TLS to the admission webhook and the audit sink, but it is not the API server. Each test names
//! the guarantee it checks.

use anyhow::Result;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use soc_warden_e2e::https::{self, post, post_head, read_response};
use soc_warden_e2e::*;
use socwarden_api::{Decision, Risk, SocAction, SocAgent, Tier, Verb};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(30);

/// An AdmissionReview as the API server would send it for lead-a creating an Approval of
/// `request` whose content `seen` lead-a reviewed (what a forger would post: any user, any groups).
fn forged_review(ns: &str, request: &str, seen: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "forged-1",
            "kind": {"group": "socwarden.io", "version": "v1alpha1", "kind": "Approval"},
            "resource": {"group": "socwarden.io", "version": "v1alpha1", "resource": "approvals"},
            "namespace": ns, "operation": "CREATE", "name": "forged",
            "userInfo": {"username": "lead-a", "groups": ["soc-leads"]},
            "object": {"apiVersion": "socwarden.io/v1alpha1", "kind": "Approval",
                       "metadata": {"name": "forged", "namespace": ns},
                       "spec": {"actionRequest": request, "decision": "approve", "seen": seen}},
            "dryRun": false
        }
    }))
    .unwrap()
}

/// A supervised agent with one pending request (a medium-risk action it may not run alone), and a
/// low-risk action it runs alone (returned).
async fn pending_request(scene: &Scene) -> Result<(String, Client)> {
    let (home, scope) = (scene.home(), scene.scope());
    let (act, low) = (unique("net-act"), unique("net-low"));
    let actions = Api::<SocAction>::all(scene.admin.clone());
    apply(&actions, &action(&act, Risk::Medium, "", "pods", &[Verb::List])).await?;
    apply(&actions, &action(&low, Risk::Low, "", "pods", &[Verb::Get])).await?;
    let mut a = agent("bot", home, Tier::Supervised, &[&act, &low], &[scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    apply(&Api::<SocAgent>::namespaced(scene.admin.clone(), home), &a).await?;
    wait_agent(&scene.admin, home, "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&scene.admin, home, "bot").await?.unwrap()).await?;
    file(&bot, home, &request("r1", "bot", &act, json!({}), scope, "web-1")).await?;
    wait_for("pending", T, || async {
        Ok(decision_of(&scene.admin, home, "r1").await?.filter(|d| *d == Decision::Pending))
    })
    .await?;
    Ok((low, bot))
}

/// The webhook is not a signing oracle: a caller that is not the API server gets 401 and no
/// stamp, even with a perfectly formed review; the API server's own calls are answered.
#[tokio::test]
async fn a_pod_that_reaches_the_webhook_gets_no_signed_stamp() -> Result<()> {
    let scene = Scene::new().await?;
    let op = Operator::start().await?;
    pending_request(&scene).await?;
    let ca = https::webhook_ca(&scene.admin).await?;
    let review = forged_review(scene.home(), "r1", &shown(&scene.admin, scene.home(), "r1").await?);

    let (code, body) = post(op.webhook_port, "/mutate", &review, &ca, None).await?;
    assert_eq!(code, 401, "a caller without the API server's certificate: {body}");
    assert!(!body.contains("patch"), "no stamp: {body}");
    assert!(body.contains("only the API server"), "says why: {body}");

    // The same review from the API server (its client certificate) is stamped: the 401 above is
    // the caller, not the review.
    let apiserver = https::apiserver_client_cert()?;
    let (code, body) = post(op.webhook_port, "/mutate", &review, &ca, Some(&apiserver)).await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"patch\""), "the API server's review is stamped: {body}");

    // And the cluster keeps working through the webhook.
    approve("lead-a", scene.home(), &approval("r1-by-a", "r1", "approve")).await?;
    wait_for("approved", T, || async {
        Ok(decision_of(&scene.admin, scene.home(), "r1").await?.filter(|d| *d == Decision::Approved))
    })
    .await?;

    // /metrics answers anyone, and says no more than the README documents: agents by name, never
    // tokens, people, targets or parameters.
    let metrics = op.metrics().await?;
    let token = agent_token(&scene.admin, scene.home(), "bot").await?.unwrap();
    for secret in [token.as_str(), "lead-a", "web-1", "soc-leads"] {
        assert!(!metrics.contains(secret), "/metrics shows {secret}");
    }
    Ok(())
}

/// Uploads cannot exhaust the operator: 16 clients (holding even the API server's certificate)
/// each push 8 MB and hold the upload open, and 16 more trickle bodies under the limit, while the
/// agent files requests through the webhook. The requests keep being admitted and the operator's
/// memory stays under 128 MiB.
#[tokio::test]
async fn slow_and_large_uploads_neither_exhaust_memory_nor_stop_admission() -> Result<()> {
    let scene = Scene::new().await?;
    let op = Operator::start().await?;
    let pid = op.pid().expect("operator pid");
    let (act, bot) = pending_request(&scene).await?;
    let ca = https::webhook_ca(&scene.admin).await?;
    let apiserver = https::apiserver_client_cert()?;
    let port = op.webhook_port;
    let until = Instant::now() + Duration::from_secs(20);
    let uploads: Vec<_> = (0..32)
        .map(|i| {
            let (ca, cert) = (ca.clone(), apiserver.clone());
            tokio::spawn(async move {
                let Ok(mut s) = https::connect(port, &ca, Some(&cert)).await else { return 0 };
                // Half push 8 MB at once (over the limit); half trickle 3 MB (under it).
                let (len, chunk, pause) = if i % 2 == 0 { (8_000_000, 1 << 20, 0) } else { (3_000_000, 16 << 10, 200) };
                if s.write_all(post_head("/mutate", len).as_bytes()).await.is_err() {
                    return 0;
                }
                let data = vec![b' '; chunk];
                let mut sent = 0;
                // Everything but the last byte, then hold the upload open.
                while sent + chunk < len && Instant::now() < until {
                    if s.write_all(&data).await.is_err() {
                        break;
                    }
                    sent += chunk;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                let answer = tokio::time::timeout(Duration::from_secs(25), read_response(&mut s)).await;
                answer.map(|(code, _)| code).unwrap_or(0)
            })
        })
        .collect();

    let mut filed = 0;
    let mut peak = 0.0f64;
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        file(&bot, scene.home(), &request(&format!("during-{i}"), "bot", &act, json!({}), scene.scope(), "web-1"))
            .await?;
        filed += 1;
        peak = peak.max(rss_mib(pid).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let codes: Vec<u16> = futures::future::join_all(uploads).await.into_iter().map(|c| c.unwrap_or(0)).collect();
    peak = peak.max(rss_mib(pid).unwrap_or(0.0));
    println!("filed {filed} requests during the uploads; upload answers {codes:?}; operator RSS peak {peak:.1} MiB");
    assert!(filed >= 15, "requests kept being admitted: {filed}");
    assert!(peak < 128.0, "operator RSS {peak:.1} MiB");
    let too_large = codes.iter().step_by(2).filter(|c| **c == 413).count();
    assert_eq!(too_large, 16, "8 MB bodies are refused from their Content-Length: {codes:?}");
    assert!(codes.iter().skip(1).step_by(2).all(|c| *c != 200), "no trickled body was served: {codes:?}");
    Ok(())
}
