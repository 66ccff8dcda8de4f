//! Writes each agent's DriftReport (what it shows is `socwarden_core::behaviour::report`): created
//! when there is first something to report, its status written only when it changes. Agents cannot
//! read it. It also keeps the agent's drift pause (`spec.pause`, `pause::kept`), so it is owned by
//! nothing: an owner reference would let the garbage collector take the pause with the agent. The
//! agent's finalizer deletes it with the agent, unless it keeps a drift pause (`release`).

use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use socwarden_api::{
    BaselineStatus, Condition, DriftReport, DriftReportSpec, DriftReportStatus, DriftStatus, PauseStatus, SocAgent,
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

/// What is known of an agent's report object: whether it exists, and the drift pause it keeps.
#[derive(Clone, Debug, Default, PartialEq)]
struct Known {
    exists: bool,
    pause: Option<PauseStatus>,
}

/// The agents' DriftReports: read and written through the client, and what this replica last
/// wrote and knows of each.
pub struct Reports {
    client: kube::Client,
    written: Mutex<HashMap<AgentKey, Shown>>,
    known: Mutex<HashMap<AgentKey, Known>>,
}

impl Reports {
    pub fn new(client: kube::Client) -> Self {
        Self { client, written: Mutex::default(), known: Mutex::default() }
    }

    pub fn shown(&self, key: &AgentKey) -> Option<Shown> {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn wrote(&self, key: &AgentKey, status: &DriftReportStatus) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), Shown::of(status));
    }

    fn known(&self, key: &AgentKey) -> Option<Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn know(&self, key: &AgentKey, k: Known) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), k);
    }

    /// Whether the agent's report is known to exist (its agent then holds the finalizer).
    pub fn exists(&self, key: &AgentKey) -> bool {
        self.shown(key).is_some() || self.known(key).is_some_and(|k| k.exists)
    }

    pub fn forget(&self, key: &AgentKey) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        self.known.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Forgets every report: another replica may write them while this one does not lead.
    pub fn forget_all(&self) {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What an agent's report kept for it: the baseline (for a model that starts afresh) and the
/// drift pause (for an agent that was deleted and created again, or whose status was lost).
#[derive(Debug, Default)]
pub struct Kept {
    pub baseline: Option<BaselineStatus>,
    pub pause: Option<PauseStatus>,
}

impl Reports {
    /// Reads what the report kept: once per agent and process (a new agent too: it may be one
    /// deleted while paused for drift), and the baseline only for an agent an operator reconciled
    /// before (it has a status) and the monitor does not know yet (`modelled`: it does).
    pub async fn kept(&self, agent: &SocAgent, key: &AgentKey, modelled: bool) -> kube::Result<Kept> {
        let wants_baseline = agent.status.is_some() && !modelled;
        let known = self.known(key);
        if let (false, Some(k)) = (wants_baseline, &known) {
            return Ok(Kept { baseline: None, pause: k.pause.clone() });
        }
        let api: Api<DriftReport> = Api::namespaced(self.client.clone(), &key.0);
        let report = api.get_opt(&key.1).await?;
        let pause = report.as_ref().and_then(|r| r.spec.pause.clone());
        self.know(key, Known { exists: report.is_some(), pause: pause.clone() });
        let status = report.and_then(|r| r.status);
        if let Some(s) = &status {
            self.wrote(key, s);
        }
        let baseline = status.and_then(|s| s.baseline).filter(|_| wants_baseline);
        Ok(Kept { baseline, pause })
    }

    /// Makes the report keep `pause` (`pause::kept`: the drift pause while it holds, none once
    /// lifted), creating the report when there is a pause to keep. Written before the agent's status
    /// shows the pause or its resume, so that no status ever shows what the report does not keep. Also
    /// removes the owner reference an earlier version set on the report.
    pub async fn keep(&self, key: &AgentKey, pause: Option<&PauseStatus>) -> kube::Result<()> {
        let known = self.known(key).unwrap_or_default();
        let exists = known.exists || self.shown(key).is_some();
        if known.pause.as_ref() == pause && (exists || pause.is_none()) {
            return Ok(());
        }
        let api: Api<DriftReport> = Api::namespaced(self.client.clone(), &key.0);
        let patch = json!({"metadata": {"ownerReferences": null}, "spec": {"pause": pause}});
        let patched = |r: kube::Result<DriftReport>| match r {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        };
        let mut done = exists && patched(api.patch(&key.1, &PatchParams::default(), &Patch::Merge(&patch)).await)?;
        if !done && pause.is_some() {
            match api.create(&PostParams::default(), &new_report(key, pause.cloned())).await {
                Ok(_) => done = true,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    done = patched(api.patch(&key.1, &PatchParams::default(), &Patch::Merge(&patch)).await)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.know(key, Known { exists: done, pause: pause.cloned().filter(|_| done) });
        Ok(())
    }

    /// When the agent is deleted: its report goes with it, unless it keeps a drift pause, which must
    /// hold for an agent of that name created again until an approver resumes it.
    pub async fn release(&self, key: &AgentKey) -> kube::Result<bool> {
        let api: Api<DriftReport> = Api::namespaced(self.client.clone(), &key.0);
        let Some(report) = api.get_opt(&key.1).await? else { return Ok(false) };
        if report.spec.pause.is_some() {
            return Ok(true);
        }
        crate::k8s::delete_gone(&api, &key.1).await?;
        Ok(false)
    }

    /// Writes the report's status when it changed, creating the report first if needed.
    pub async fn write(&self, key: &AgentKey, status: &DriftReportStatus) -> kube::Result<()> {
        let shown = self.shown(key);
        if shown.as_ref().is_some_and(|s| s.digest == digest(status)) {
            return Ok(());
        }
        let api: Api<DriftReport> = Api::namespaced(self.client.clone(), &key.0);
        if !self.exists(key) {
            let report = new_report(key, None);
            match api.create(&PostParams::default(), &report).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await?;
        self.wrote(key, status);
        Ok(())
    }
}

fn new_report(key: &AgentKey, pause: Option<PauseStatus>) -> DriftReport {
    DriftReport {
        metadata: ObjectMeta {
            name: Some(key.1.clone()),
            namespace: Some(key.0.clone()),
            labels: Some(socwarden_core::agent::credentials::labels(&key.0, &key.1)),
            ..Default::default()
        },
        spec: DriftReportSpec { agent: key.1.clone(), pause },
        status: None,
    }
}
