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
