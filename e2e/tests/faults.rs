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

/// Invariant: an operator SIGKILLed while the kill switch pauses 200 agents finishes the job once
/// restarted — every agent paused soon after the restart (target 10 s) — and no RoleBinding of
/// theirs comes back at any moment in between.
#[tokio::test]
async fn an_operator_killed_while_pausing_200_agents_pauses_them_all_once_restarted() -> Result<()> {
    use futures::StreamExt;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::runtime::watcher;
    const N: usize = 200;
    let s = Scene::new().await?;
    let home = s.home().to_string();
    let run = unique("mass");
    let label = format!("fault-run={run}");
    // One reconcile at a time: pausing 200 agents then takes long enough to be interrupted.
    let mut op = Operator::start_with(&["--concurrency", "1"]).await?;
    let agents = Api::<SocAgent>::namespaced(s.admin.clone(), &home);
    for i in 0..N {
        let mut a = agent(&format!("agent-{i:03}"), &home, Tier::Supervised, &[], &[&home]);
        a.metadata.labels = Some([("fault-run".to_string(), run.clone())].into());
        agents.create(&Default::default(), &a).await?;
    }
    wait_all_agents(&s.admin, &label, N, ready, Duration::from_secs(180)).await?;

    // From the kill switch on, every creation or change of an agent's RoleBinding is recorded.
    let bindings = Api::<RoleBinding>::namespaced(s.admin.clone(), &home);
    let selector = format!("{}={home}", socwarden_core::agent::credentials::AGENT_NAMESPACE_LABEL);
    let came_back = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (listed, watching) = tokio::sync::oneshot::channel();
    let watch = {
        let (bindings, selector, came_back) = (bindings.clone(), selector.clone(), came_back.clone());
        tokio::spawn(async move {
            let mut listed = Some(listed);
            let mut events = std::pin::pin!(watcher(bindings, watcher::Config::default().labels(&selector)));
            while let Some(e) = events.next().await {
                match e {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(_)) => {
                        came_back.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
    };
    watching.await?;
    let ks = KillSwitch::new();
    ks.set(&s.admin, true).await?;
    let remaining = wait_for("the pausing under way", T, || async {
        let n = bindings.list_metadata(&ListParams::default().labels(&selector)).await?.items.len();
        Ok((n < N).then_some(n))
    })
    .await?;
    op.kill();
    let left = bindings.list_metadata(&ListParams::default().labels(&selector)).await?.items.len();
    assert!(left > 0, "the operator paused all {N} before it could be killed: nothing was interrupted");
    println!("killed with {left} of {N} agents still to pause ({remaining} when the pausing was first seen)");

    let restarted = std::time::Instant::now();
    let _op = Operator::start().await?;
    let paused = |a: &SocAgent| condition(a, "Paused").is_some_and(|c| c.status == "True");
    wait_all_agents(&s.admin, &label, N, paused, Duration::from_secs(10)).await?;
    println!("all {N} paused {:.1}s after the restart began", restarted.elapsed().as_secs_f64());
    assert!(bindings.list_metadata(&ListParams::default().labels(&selector)).await?.items.is_empty());
    watch.abort();
    assert_eq!(came_back.load(std::sync::atomic::Ordering::Relaxed), 0, "a RoleBinding came back during the pausing");
    Ok(())
}
