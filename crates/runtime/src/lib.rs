//! SOC Warden's runtime: everything that talks to Kubernetes, the network or the clock. Every
//! decision it applies is made by `socwarden_core` (types in `socwarden_api`); the reconcilers read
//! top-down as dereference (client) → decide (core) → apply (client) → status.
//!
//! Where each thing is done:
//! - `controller::agent`, `controller::catalog`, `controller::request`: the reconcilers.
//! - `k8s`: the shared Kubernetes plumbing (finalizer, status write with memo, Events, error
//!   categories); `events`: creating the Events (once each, no cache).
//! - `webhook`: the admission webhook's I/O (stamps, signatures, immutability, early refusals,
//!   SocAgents' and DriftReports' lifetime).
//! - `execute`: carrying out approved actions (manifests, signed HTTP calls) and rollbacks.
//! - `monitor`: the behaviour models in memory, waking agents that must be contained.
//! - `intake`: the audit sink's intake (batches of any size read as they arrive; what is judged,
//!   what is dropped, and whose agent is contained unjudged under a flood).
//! - `records`: matching agents' writes (audit events) with the requests that cover them.
//! - `report`: writing each agent's DriftReport (drift and baseline, kept from the agent; the
//!   drift pause, kept past the agent's deletion).
//! - `workload`: stopping and restarting the workload of a paused agent (and deleting its pods).
//! - `decisionlog`: writing the append-only decision log.
//! - `notify`: delivering notices to the Notifier sinks (what and where: core `notify`).
//! - `mcp`: the MCP gateway (agents' tools, calls filed as stamped requests; decisions in core `mcp`).
//! - `leader`: leader election on a Lease (only the leader reconciles).
//! - `tls`: the serving certificate; `signing_key`: the key stamps are signed with;
//!   `webhook_config`: registering the admission webhook.
//! - `kinds`: the kinds the API server serves (discovery), refreshed every minute.
//! - `probe`: `warden probe`, the chart's `helm test` (one GET, TLS checked for the Service's name).
//! - `watch`, `index`, `context`, `metrics`, `server`, `run`, `crdgen`: plumbing.

pub mod context;
pub mod controller;
pub mod crdgen;
pub mod decisionlog;
pub mod events;
pub mod execute;
pub mod index;
pub mod intake;
pub mod k8s;
pub mod kinds;
pub mod leader;
pub mod mcp;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod peer;
pub mod performed;
pub mod probe;
pub mod records;
pub mod reference;
pub mod report;
pub mod run;
pub mod server;
pub mod shard;
pub mod signing_key;
pub mod tls;
pub mod watch;
pub mod webhook;
pub mod webhook_config;
pub mod workload;

#[cfg(test)]
mod layout {
    use std::collections::{BTreeMap, BTreeSet};

    /// The modules each module of this crate names (`crate::x`, `crate::controller::y`, `use
    /// crate::{x, …}`), tests left out.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        for dir in [root.clone(), root.join("controller")] {
            for entry in std::fs::read_dir(&dir).expect("the sources") {
                let path = entry.expect("a source").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut out = BTreeMap::new();
        for path in files {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let name = match path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
                Some("controller") if stem != "mod" => format!("controller::{stem}"),
                Some("controller") => "controller".to_string(),
                _ => stem,
            };
            if matches!(name.as_str(), "lib" | "main") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source");
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
            let mut names = BTreeSet::new();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                if let Some(list) = rest.strip_prefix('{') {
                    let list = &list[..list.find('}').unwrap_or(0)];
                    names.extend(list.split(',').filter_map(|x| x.trim().split("::").next()).map(String::from));
                    continue;
                }
                let word =
                    |s: &str| s.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_string();
                let first = word(rest);
                match rest.strip_prefix("controller::") {
                    Some(sub) => names.insert(format!("controller::{}", word(sub))),
                    None => names.insert(first),
                };
            }
            names.remove(&name);
            out.insert(name, names);
        }
        out
    }

    /// No two modules import each other, directly or through others: where a thing is decided can
    /// be read from the top down.
    #[test]
    fn no_module_imports_one_that_imports_it() {
        let graph = imports();
        assert!(graph.contains_key("context") && graph["intake"].contains("context"), "the graph is read: {graph:?}");
        // From each module, every module it reaches; a module that reaches itself is in a cycle.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut path: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, via)) = path.pop() {
                for next in graph.get(&at).into_iter().flatten().filter(|n| graph.contains_key(*n)) {
                    let mut route = via.clone();
                    route.push(next.clone());
                    assert!(next != start, "a cycle of imports: {}", route.join(" -> "));
                    if seen.insert(next.clone()) {
                        path.push((next.clone(), route));
                    }
                }
            }
        }
    }
}
