//! Writes each agent's DriftReport (what it shows is `socwarden_core::behaviour::report`): created
//! when there is first something to report, owned by the SocAgent (garbage-collected with it), its
//! status written only when it changes. Agents cannot read it.

use crate::context::Context;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use socwarden_api::{BaselineStatus, DriftReport, DriftReportSpec, DriftReportStatus, SocAgent};
use socwarden_core::admission::identity::AgentKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// The report status last written per agent (its presence: the object exists).
#[derive(Default)]
pub struct Reports {
    written: Mutex<HashMap<AgentKey, DriftReportStatus>>,
}

impl Reports {
    pub fn shown(&self, key: &AgentKey) -> Option<DriftReportStatus> {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn wrote(&self, key: &AgentKey, status: DriftReportStatus) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), status);
    }

    pub fn forget(&self, key: &AgentKey) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The baseline a report kept, for a model that starts afresh (a restart, a new leader). Read
/// only for an agent an operator has reconciled before (it has a status): a new agent has none.
pub async fn kept_baseline(ctx: &Context, agent: &SocAgent, key: &AgentKey) -> kube::Result<Option<BaselineStatus>> {
    if agent.status.is_none() || ctx.monitor.knows(key) {
        return Ok(None);
    }
    let api: Api<DriftReport> = Api::namespaced(ctx.client.clone(), &key.0);
    let Some(report) = api.get_opt(&key.1).await? else { return Ok(None) };
    if let Some(s) = report.status.clone() {
        ctx.reports.wrote(key, s);
    }
    Ok(report.status.and_then(|s| s.baseline))
}

/// Writes the report's status when it changed, creating the report first if needed.
pub async fn write(ctx: &Context, agent: &SocAgent, key: &AgentKey, status: &DriftReportStatus) -> kube::Result<()> {
    let shown = ctx.reports.shown(key);
    if shown.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<DriftReport> = Api::namespaced(ctx.client.clone(), &key.0);
    if shown.is_none() {
        let report = DriftReport {
            metadata: ObjectMeta {
                name: Some(key.1.clone()),
                namespace: Some(key.0.clone()),
                labels: Some(socwarden_core::agent::credentials::labels(&key.0, &key.1)),
                owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: SocAgent::api_version(&()).to_string(),
                    kind: SocAgent::kind(&()).to_string(),
                    name: agent.name_any(),
                    uid: agent.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..Default::default()
            },
            spec: DriftReportSpec { agent: key.1.clone() },
            status: None,
        };
        match api.create(&PostParams::default(), &report).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await?;
    ctx.reports.wrote(key, status.clone());
    Ok(())
}
