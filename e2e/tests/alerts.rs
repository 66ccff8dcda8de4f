//! The shipped alert rules in a real Prometheus (Debian's package, started by the test on a
//! loopback port) scraping a running operator: pausing an agent makes SocWardenAgentPaused fire.

use anyhow::{Context as _, Result};
use kube::api::Api;
use serde_json::Value;
use soc_warden_e2e::*;
use socwarden_api::{SocAgent, Tier};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(target_port: u16) -> Result<Self> {
        let dir = repo().join(format!("target/e2e-logs/{}", unique("prometheus")));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n- job_name: soc-warden\n  static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
                repo().join("alerts/soc-warden.rules.yaml").display()
            ),
        )?;
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting prometheus (Debian package prometheus; e2e/cluster deps installs it)")?;
        Ok(Self { child, port })
    }

    async fn alerts(&self) -> Result<Vec<Value>> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/api/v1/alerts", self.port)).await?;
        anyhow::ensure!(code == 200, "prometheus answered {code}");
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["data"]["alerts"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        let (code, body) =
            http_get(&format!("http://127.0.0.1:{}/api/v1/query?query=up%7Bjob%3D%22soc-warden%22%7D", prom.port))
                .await?;
        Ok((code == 200 && body.contains("\"1\"")).then_some(()))
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
