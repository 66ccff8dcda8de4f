//! Traffic of an agent acting with its own token, for the behaviour tests.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use socwarden_api::ActionRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Normal behaviour: list pods in scope every 150–450 ms, file a `read` request every ~4 s.
pub struct Normal {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Normal {
    pub fn start(bot: Client, home: String, scope: String, agent: String, read: String, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), calls.clone());
        let task = tokio::spawn(async move {
            let mut x = seed | 1;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                tokio::time::sleep(Duration::from_millis(150 + x % 300)).await;
                let _ = Api::<Pod>::namespaced(bot.clone(), &scope).list(&ListParams::default()).await;
                c.fetch_add(1, Ordering::Relaxed);
                i += 1;
                if i.is_multiple_of(13) {
                    let r: ActionRequest = serde_json::from_value(json!({
                        "metadata": {"name": format!("normal-{agent}-{i}")},
                        "spec": {"agent": agent, "action": read, "target": {"kind": "Pod", "name": "web-1", "namespace": scope}}
                    }))
                    .unwrap();
                    let _ =
                        Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await;
                }
            }
        });
        Self { stop, calls, task }
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.calls.load(Ordering::Relaxed)
    }
}

/// One audit EventList of `n` reads of ConfigMaps in `scope` by the agents `noisy-0..agents` of
/// `home` (the flood test and benchmark post it to the sink, as an API server would).
pub fn flood_batch(home: &str, scope: &str, agents: usize, n: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("flood-{i}"), "stage": "ResponseComplete", "verb": "get",
                "requestURI": format!("/api/v1/namespaces/{scope}/configmaps/c-{}", i % 50),
                "user": {"username": socwarden_core::admission::identity::agent_user(home, &format!("noisy-{}", i % agents))},
                "objectRef": {"resource": "configmaps", "namespace": scope, "name": format!("c-{}", i % 50), "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})).unwrap()
}

/// Creates pods `names` (labelled `app: victim`, an image nothing pulls) in `namespace`, as the
/// admin: what an agent's unrecorded deletes aim at.
pub async fn victim_pods(admin: &Client, namespace: &str, names: &[String]) -> anyhow::Result<()> {
    let api = Api::<Pod>::namespaced(admin.clone(), namespace);
    for name in names {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "victim"}},
            "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}
        }))?;
        api.create(&PostParams::default(), &p).await?;
    }
    Ok(())
}

/// Deletes `victims` one after another as the agent `bot`, 100 ms apart, until a delete is
/// refused; returns how many got through.
pub async fn delete_until_refused(bot: &Client, scope: &str, victims: &[String]) -> usize {
    let api = Api::<Pod>::namespaced(bot.clone(), scope);
    let mut through = 0;
    for v in victims {
        if api.delete(v, &DeleteParams::default()).await.is_err() {
            break;
        }
        through += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    through
}

/// A low-risk SocAction granting `verbs` on pods, with a required `alertId` parameter when
/// `alert_parameter` (as MCP tools take one); returns its name.
pub async fn pod_action(admin: &Client, prefix: &str, verbs: &str, alert_parameter: bool) -> anyhow::Result<String> {
    let name = crate::unique(prefix);
    let parameters = if alert_parameter {
        "  description: Read the pods of an alert\n  parameters: [{name: alertId, type: string, required: true, pattern: \"[A-Z]+-[0-9]+\"}]\n"
    } else {
        ""
    };
    crate::apply_yaml(
        admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {name}}}\nspec:\n  risk: low\n{parameters}  grants: [{{apiGroups: [\"\"], resources: [pods], verbs: [{verbs}]}}]\n"
        ),
    )
    .await?;
    Ok(name)
}

/// Agent `prober` in `home` with `action` over `scope`, approved by soc-leads, learning for 20 s;
/// Ready. Returns its token.
pub async fn prober(admin: &Client, home: &str, scope: &str, action: &str) -> anyhow::Result<String> {
    let mut a = crate::agent("prober", home, socwarden_api::Tier::Supervised, &[action], &[scope]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.baseline.learning_period = "20s".into();
    crate::apply(&Api::<socwarden_api::SocAgent>::namespaced(admin.clone(), home), &a).await?;
    crate::wait_agent(admin, home, "prober", "Ready", Duration::from_secs(40), crate::ready).await?;
    Ok(crate::agent_token(admin, home, "prober").await?.expect("a token"))
}

/// Whether the agent is paused for drift.
pub fn paused_for_drift(a: &socwarden_api::SocAgent) -> bool {
    crate::condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
}

/// Calls `tool` with `args` (a call its grant refuses) through the MCP gateway up to `n` times,
/// until the gateway refuses the agent itself (contained); returns how many calls were refused
/// as tool errors before that.
pub async fn probe_over_mcp(
    bot: &crate::McpAgent,
    tool: &str,
    args: &serde_json::Value,
    n: usize,
) -> anyhow::Result<usize> {
    let mut refused = 0;
    for _ in 0..n {
        let r = bot.call(tool, args, &[]).await?;
        if r.code != 0 {
            break; // contained already: the gateway refuses the agent
        }
        anyhow::ensure!(r.out["isError"] == true, "a probe was not refused: {}", r.out);
        refused += 1;
    }
    Ok(refused)
}
