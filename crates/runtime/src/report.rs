//! Writes each agent's DriftReport (what it shows is `socwarden_core::behaviour::report`): created
//! when there is first something to report, owned by the SocAgent (garbage-collected with it), its
//! status written only when it changes. Agents cannot read it.

use crate::context::Context;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use socwarden_api::{
    BaselineStatus, Condition, DriftReport, DriftReportSpec, DriftReportStatus, DriftStatus, SocAgent,
};
use socwarden_core::admission::identity::AgentKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// What the report last written per agent shows (its presence: the object exists): the drift
/// (Events are about its changes), the `Drifted` condition (its transition time is kept) and a
/// digest of the rest (a baseline can hold a thousand keys: not kept twice per agent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shown {
    pub drift: Option<DriftStatus>,
    pub conditions: Vec<Condition>,
    digest: u64,
}

fn digest(status: &DriftReportStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Shown {
    fn of(status: &DriftReportStatus) -> Self {
        Self { drift: status.drift.clone(), conditions: status.conditions.clone(), digest: digest(status) }
    }

    /// The previous status as `report::status` needs it (conditions only).
    pub fn previous(&self) -> DriftReportStatus {
        DriftReportStatus { conditions: self.conditions.clone(), ..Default::default() }
    }
}

#[derive(Default)]
pub struct Reports {
    written: Mutex<HashMap<AgentKey, Shown>>,
}

impl Reports {
    pub fn shown(&self, key: &AgentKey) -> Option<Shown> {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn wrote(&self, key: &AgentKey, status: &DriftReportStatus) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), Shown::of(status));
    }

    pub fn forget(&self, key: &AgentKey) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Forgets every report: another replica may write them while this one does not lead.
    pub fn forget_all(&self) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
    if let Some(s) = &report.status {
        ctx.reports.wrote(key, s);
    }
    Ok(report.status.and_then(|s| s.baseline))
}

/// Writes the report's status when it changed, creating the report first if needed.
pub async fn write(ctx: &Context, agent: &SocAgent, key: &AgentKey, status: &DriftReportStatus) -> kube::Result<()> {
    let shown = ctx.reports.shown(key);
    if shown.as_ref().is_some_and(|s| s.digest == digest(status)) {
        return Ok(());
    }
    let api: Api<DriftReport> = Api::namespaced(ctx.client.clone(), &key.0);
    if shown.is_none() {
        let report = DriftReport {
            metadata: ObjectMeta {
                name: Some(key.1.clone()),
                namespace: Some(key.0.clone()),
                labels: Some(socwarden_core::agent::credentials::labels(&key.0, &key.1)),
                owner_references: Some(vec![crate::controller::agent::owner_ref(agent)]),
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
    ctx.reports.wrote(key, status);
    Ok(())
}
