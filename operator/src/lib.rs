//! SOC Warden: keeps the AI agents of a Security Operations Center inside the autonomy they were
//! granted.
//!
//! Where each thing is decided:
//! - `api`: the custom resources (data only).
//! - `policy`: which tier lets which risk run without approval.
//! - `rbac`: what RBAC an agent gets and whether the operator may delegate it.
//! - `validate`: what is wrong with an agent's spec, and how to fix it.
//! - `pause`: whether an agent is paused, and why.
//! - `credentials`: names of the credential objects, and when a token is (re)issued.
//! - `plan`: the whole desired state of one agent, and its status.
//! - `gate`: what happens to an ActionRequest (checks in order, approvals, quorum, expiry).
//! - `params`: parameter schemas, scope and protected targets, execution templates.
//! - `drift`: the behaviour baseline, the drift score and what to do about it.
//! - `promotion`: which tier is enforced while a promotion waits for evidence and approvals.
//! - `signature`: what the admission webhook signs and how it is verified.
//! - `workload`: stopping and restarting the workload of a paused agent.
//! - `agent`, `catalog`, `request`: the reconcilers that apply those decisions.
//! - `webhook`: the admission webhook (stamps, signatures, immutability, early refusals).
//! - `execute`: carrying out approved actions (manifests, signed HTTP calls) and rollbacks.
//! - `decisionlog`: the append-only decision log.
//! - `audit`: reading the API server's audit events into observations.
//! - `monitor`: the behaviour models in memory, waking agents that must be contained.
//! - `leader`: leader election on a Lease (only the leader reconciles).
//! - `watch`, `index`, `context`, `tls`, `metrics`, `server`, `run`: plumbing.

pub mod agent;
pub mod api;
pub mod audit;
pub mod catalog;
pub mod conditions;
pub mod context;
pub mod crdgen;
pub mod credentials;
pub mod decisionlog;
pub mod drift;
pub mod duration;
pub mod execute;
pub mod gate;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod params;
pub mod pause;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod rbac;
pub mod request;
pub mod run;
pub mod server;
pub mod signature;
#[cfg(test)]
mod testutil;
pub mod tls;
pub mod validate;
pub mod watch;
pub mod webhook;
pub mod workload;
