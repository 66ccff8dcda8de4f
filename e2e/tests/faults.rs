//! Faults on the local control plane, each a real one, each with the invariant it must keep,
//! checked after the fault heals (issue 12; more faults to come: the API server restarted, etcd
//! stopped, an audit flood).

use anyhow::Result;
use kube::api::{Api, ListParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{Decision, Risk, SocAction, SocAgent, Tier, Verb};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

/// Invariant: with the admission webhook unreachable (the operator is down), nothing is admitted
/// unstamped — requests and approvals are refused, saying why — and when the operator returns the
/// queue goes on: what was pending before is decided by the approvals filed after.
#[tokio::test]
async fn with_the_webhook_unreachable_requests_and_approvals_fail_closed_and_the_queue_continues() -> Result<()> {
    let s = Scene::new().await?;
    let (home, scope) = (s.home().to_string(), s.scope().to_string());
    let gated = unique("gated");
    apply(&Api::<SocAction>::all(s.admin.clone()), &action(&gated, Risk::Medium, "", "configmaps", &[Verb::Get]))
        .await?;
    let mut op = Operator::start().await?;
    let mut a = agent("bot", &home, Tier::Supervised, &[&gated], &[&scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 1;
    apply(&Api::<SocAgent>::namespaced(s.admin.clone(), &home), &a).await?;
    wait_agent(&s.admin, &home, "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&s.admin, &home, "bot").await?.expect("a token")).await?;
    file(&bot, &home, &request("before", "bot", &gated, json!({}), &scope, "web-1")).await?;
    wait_for("pending", T, || async {
        Ok(decision_of(&s.admin, &home, "before").await?.filter(|d| *d == Decision::Pending))
    })
    .await?;

    // The operator goes down: the API server cannot reach the webhook, and fails closed.
    op.kill();
    let refused = refusal(file(&bot, &home, &request("during", "bot", &gated, json!({}), &scope, "web-1")).await);
    assert!(refused.contains("failed calling webhook") && refused.contains("socwarden.io"), "{refused}");
    let refused = refusal(approve("lead-a", &home, &approval("approve-during", "before", "approve")).await);
    assert!(refused.contains("failed calling webhook"), "{refused}");
    let approvals = Api::<socwarden_api::Approval>::namespaced(s.admin.clone(), &home);
    assert!(approvals.list(&ListParams::default()).await?.items.is_empty(), "nothing was admitted unstamped");
    assert_eq!(decision_of(&s.admin, &home, "before").await?, Some(Decision::Pending), "nothing decided while down");

    // It returns: the queue goes on.
    let _op = Operator::start().await?;
    wait_for("the webhook answers again", T, || async {
        Ok(approve("lead-a", &home, &approval("approve-after", "before", "approve")).await.ok())
    })
    .await?;
    let decided = decided(&s.admin, &home, "before").await?;
    assert_eq!(decided.status.as_ref().and_then(|s| s.decision), Some(Decision::Approved));
    file(&bot, &home, &request("after", "bot", &gated, json!({}), &scope, "web-1")).await?;
    wait_for("the next request is pending", T, || async {
        Ok(decision_of(&s.admin, &home, "after").await?.filter(|d| *d == Decision::Pending))
    })
    .await?;
    Ok(())
}
