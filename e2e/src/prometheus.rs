//! A real Prometheus (Debian's package, started on a loopback port) with the shipped alert rules
//! (`alerts/soc-warden.rules.yaml`), scraping what a test says, every second.

use crate::{free_port, http_get, repo, unique};
use anyhow::{Context as _, Result};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Scrapes the operator at `127.0.0.1:<target_port>` (job `soc-warden`).
    pub fn start(target_port: u16) -> Result<Self> {
        Self::start_with(&format!("static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]"))
    }

    /// Scrapes with `targets`, the rest of a scrape config (job `soc-warden`), e.g.
    /// `kubernetes_sd_configs: …` and `relabel_configs: …` as YAML flow maps on one line each.
    pub fn start_with(targets: &str) -> Result<Self> {
        let dir = repo().join(format!("target/e2e-logs/{}", unique("prometheus")));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n- job_name: soc-warden\n{}\n",
                repo().join("alerts/soc-warden.rules.yaml").display(),
                targets.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
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

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/api/v1/alerts", self.port)).await?;
        anyhow::ensure!(code == 200, "prometheus answered {code}");
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["data"]["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The result of an instant query (`/api/v1/query`): its vector.
    pub async fn query(&self, q: &str) -> Result<Vec<Value>> {
        let mut url = format!("http://127.0.0.1:{}/api/v1/query?query=", self.port);
        for b in q.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                url.push(b as char);
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        let (code, body) = http_get(&url).await?;
        anyhow::ensure!(code == 200, "prometheus answered {code}: {body}");
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
