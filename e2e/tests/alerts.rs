//! The shipped alert rules in a real Prometheus (Debian's package, started by the test on a
//! loopback port) scraping a running operator: pausing an agent makes SocWardenAgentPaused fire.

use anyhow::Result;
use kube::api::Api;
use serde_json::Value;
use soc_warden_e2e::prometheus::Prometheus;
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::time::Duration;

#[tokio::test]
async fn pausing_an_agent_fires_the_paused_alert_in_a_real_prometheus() -> Result<()> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    default_policy(&admin).await?;
    let ns = Namespaces::create(&admin, &["home"]).await?;
    let home = ns.get(0);
    let op = Operator::start().await?;
    let prom = Prometheus::start(op.metrics_port)?;
    let agents: Api<SocAgent> = Api::namespaced(admin.clone(), home);
    let mut a = agent("watched", home, Tier::Supervised, &[], &[home]);
    apply(&agents, &a).await?;
    wait_agent(&admin, home, "watched", "Ready", Duration::from_secs(30), ready).await?;

    // Scraped and healthy: nothing fires for this agent, and the operator is up.
    let firing_for = |alerts: &[Value], name: &str| {
        alerts
            .iter()
            .any(|x| x["labels"]["alertname"] == name && x["labels"]["agent"] == "watched" && x["state"] == "firing")
    };
    wait_for("prometheus scraping the operator", Duration::from_secs(60), || async {
        Ok((!prom.query("up{job=\"soc-warden\"} == 1").await?.is_empty()).then_some(()))
    })
    .await?;
    assert!(!firing_for(&prom.alerts().await?, "SocWardenAgentPaused"));

    a.spec.paused = true;
    apply(&agents, &a).await?;
    let alerts = wait_for("SocWardenAgentPaused firing", Duration::from_secs(60), || async {
        let alerts = prom.alerts().await?;
        Ok(firing_for(&alerts, "SocWardenAgentPaused").then_some(alerts))
    })
    .await?;
    let paused = alerts.iter().find(|x| x["labels"]["alertname"] == "SocWardenAgentPaused").unwrap();
    assert_eq!(paused["labels"]["reason"], "Manual");
    assert_eq!(paused["labels"]["namespace"], home);
    assert!(paused["annotations"]["summary"].as_str().unwrap_or("").contains("is paused (Manual)"));
    assert!(!alerts.iter().any(|x| x["labels"]["alertname"] == "SocWardenOperatorDown"));

    // Resuming ends it.
    a.spec.paused = false;
    apply(&agents, &a).await?;
    wait_for("SocWardenAgentPaused resolved", Duration::from_secs(60), || async {
        Ok((!firing_for(&prom.alerts().await?, "SocWardenAgentPaused")).then_some(()))
    })
    .await?;
    Ok(())
}
