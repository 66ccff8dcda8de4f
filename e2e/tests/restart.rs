//! Crash safety: the operator is killed (SIGKILL) while it reconciles 100 agents, started again,
//! and must converge with nothing duplicated, nothing left over, and no token issued twice.

use anyhow::Result;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use soc_warden_e2e::*;
use socwarden_api::{Risk, SocAction, SocAgent, Tier, Verb};
use std::collections::BTreeMap;
use std::time::Duration;

const N: usize = 100;

async fn tokens(admin: &Client, home: &str) -> Result<BTreeMap<String, String>> {
    let lp = ListParams::default().labels(&format!("socwarden.io/agent-namespace={home}"));
    let secrets = Api::<Secret>::namespaced(admin.clone(), home).list(&lp).await?;
    Ok(secrets
        .items
        .into_iter()
        .filter_map(|s| {
            let agent = s.labels().get("socwarden.io/agent")?.clone();
            let t = s.data.as_ref()?.get("token")?;
            Some((agent, String::from_utf8_lossy(&t.0).to_string()))
        })
        .collect())
}

async fn count<K>(admin: &Client, ns: &str, home: &str) -> Result<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let lp = ListParams::default().labels(&format!("socwarden.io/agent-namespace={home}"));
    Ok(Api::<K>::namespaced(admin.clone(), ns).list(&lp).await?.items.len())
}

#[tokio::test]
async fn killing_the_operator_mid_reconcile_converges_without_duplicates() -> Result<()> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    default_policy(&admin).await?;
    let ns = Namespaces::create(&admin, &["home", "scope"]).await?;
    let (home, scope) = (ns.get(0).to_string(), ns.get(1).to_string());
    let read = unique("read-pods");
    apply(&Api::<SocAction>::all(admin.clone()), &action(&read, Risk::Low, "", "pods", &[Verb::List])).await?;

    let run = unique("restart");
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), &home);
    // The agents exist before the operator starts: no webhook reviews their creates meanwhile.
    forget_webhook(&admin).await?;
    stream::iter(0..N)
        .map(|i| {
            let (agents, read, home, scope, run) =
                (agents.clone(), read.clone(), home.clone(), scope.clone(), run.clone());
            async move {
                let mut a = agent(&format!("agent-{i:03}"), &home, Tier::Supervised, &[&read], &[&scope]);
                a.metadata.labels = Some([("e2e-run".to_string(), run)].into());
                apply(&agents, &a).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let label = format!("e2e-run={run}");

    let mut first = Operator::start().await?;
    // Let it get part of the way, then crash it.
    wait_all_agents(&admin, &label, N / 4, ready, Duration::from_secs(120)).await?;
    first.kill();
    let before = tokens(&admin, &home).await?;
    let ready_before: Vec<String> = agents
        .list(&ListParams::default().labels(&label))
        .await?
        .items
        .into_iter()
        .filter(ready)
        .map(|a| a.name_any())
        .collect();
    eprintln!("killed with {} of {N} ready, {} tokens issued", ready_before.len(), before.len());
    assert!(ready_before.len() < N, "the crash should come mid-way");

    let second = Operator::start().await?;
    let took = wait_all_agents(&admin, &label, N, ready, Duration::from_secs(180)).await?;
    eprintln!("converged {took:?} after the restart");

    // Exactly one of each object per agent: nothing duplicated, nothing half-made.
    assert_eq!(count::<ServiceAccount>(&admin, &home, &home).await?, N);
    assert_eq!(count::<Secret>(&admin, &home, &home).await?, N);
    for ns in [&home, &scope] {
        assert_eq!(count::<Role>(&admin, ns, &home).await?, N, "Roles in {ns}");
        assert_eq!(count::<RoleBinding>(&admin, ns, &home).await?, N, "RoleBindings in {ns}");
    }
    // An agent that was ready before the crash kept its token: none was issued twice.
    let after = tokens(&admin, &home).await?;
    assert_eq!(after.len(), N);
    for name in &ready_before {
        assert_eq!(before.get(name), after.get(name), "{name} got a second token after the restart");
    }
    // Every token works, in scope only.
    for (name, token) in after.iter().step_by(10) {
        let bot = with_token(token).await?;
        assert_eq!(
            status_of(Api::<Pod>::namespaced(bot.clone(), &scope).list(&ListParams::default())).await,
            200,
            "{name}"
        );
        assert_eq!(status_of(Api::<Pod>::namespaced(bot, &home).list(&ListParams::default())).await, 403, "{name}");
    }
    let m = second.metrics().await?;
    let issued = metric(&m, "socwarden_tokens_issued_total", &[("reason", "no token issued yet")]).unwrap_or(0.0);
    assert!(
        issued as usize <= N - ready_before.len(),
        "second run issued {issued} tokens for {} agents without one",
        N - ready_before.len()
    );
    Ok(())
}
