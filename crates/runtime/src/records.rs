//! Approved vs done, against the caches: the calls of an audit batch are matched with the decided
//! requests of their agents (the decision is `socwarden_core::behaviour::records`); a covered call
//! is never novel and a covered write is recorded on its request; a write with no record contains
//! its agent at once.

use crate::context::Context;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use socwarden_api::ActionRequest;
use socwarden_core::admission::identity::AgentKey;
use socwarden_core::agent::rbac::Rule;
use socwarden_core::behaviour::audit::Call;
use socwarden_core::behaviour::drift::Observation;
use socwarden_core::behaviour::records::{self, Access, Record};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What an audit batch comes to once its writes are matched with their records.
#[derive(Default)]
pub struct Checked {
    pub observations: Vec<(AgentKey, Observation)>,
    /// Writes no record covers, per agent (the first of each agent is enough to contain it).
    pub unrecorded: Vec<(AgentKey, Access)>,
}

/// The decided requests of one agent that may cover its writes, from the caches (and what this
/// replica wrote and the cache does not show yet), each beside its request.
fn records_of<'a>(ctx: &Context, requests: &'a [Arc<ActionRequest>]) -> (Vec<Record<'a>>, Vec<&'a ActionRequest>) {
    let kinds = ctx.stores.kinds.current();
    requests
        .iter()
        .filter_map(|r| {
            let status = ctx.request_status_written.shown_by(r.as_ref(), r.status.as_ref())?;
            status.decision.filter(|d| d.runs())?;
            let action = ctx.stores.actions.get(&ObjectRef::new(&r.spec.action))?;
            let grants = action.spec.grants.iter().map(Rule::from_grant).collect();
            let name = r.metadata.name.as_deref().unwrap_or_default();
            Some((Record::of(name, &r.spec, &status, grants, &kinds)?, r.as_ref()))
        })
        .unzip()
}

/// Matches the calls of a batch with their records. Agents for which `skip` holds (paused: their
/// calls are refused by design) are not looked up. The request cache is read once per batch.
pub fn check(ctx: &Context, calls: Vec<Call>, skip: impl Fn(&AgentKey) -> bool) -> Checked {
    let mut out = Checked::default();
    let mut wanted: HashSet<AgentKey> = calls.iter().filter(|c| c.access.is_some()).map(|c| c.agent.clone()).collect();
    wanted.retain(|agent| !skip(agent));
    let mut requests: HashMap<AgentKey, Vec<Arc<ActionRequest>>> = HashMap::new();
    if !wanted.is_empty() {
        for r in ctx.stores.requests.state() {
            let key = (r.metadata.namespace.clone().unwrap_or_default(), r.spec.agent.clone());
            if wanted.contains(&key) {
                requests.entry(key).or_default().push(r);
            }
        }
    }
    let mut records: HashMap<AgentKey, (Vec<Record>, Vec<&ActionRequest>)> = HashMap::new();
    for call in calls {
        let Call { agent, mut observation, access } = call;
        if let Some(a) = access.filter(|_| wanted.contains(&agent)) {
            let mine = requests.get(&agent).map(Vec::as_slice).unwrap_or_default();
            let (recs, reqs) = records.entry(agent.clone()).or_insert_with(|| records_of(ctx, mine));
            match records::covering(&a, recs).and_then(|found| recs.iter().position(|r| std::ptr::eq(r, found))) {
                Some(i) => {
                    observation.recorded = true;
                    // Written on the request by the holder of its agent's shard, which gets the
                    // call too (relayed, see `peer`): kept here only for the agents this replica holds.
                    if a.writes() && ctx.owns(&agent.0, &agent.1) {
                        ctx.performed.add(reqs[i].uid().unwrap_or_default(), ObjectRef::from_obj(reqs[i]), a);
                    }
                }
                None if a.writes() => out.unrecorded.push((agent.clone(), a)),
                None => {}
            }
        }
        out.observations.push((agent, observation));
    }
    out
}
