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
//! - `workload`: stopping and restarting the workload of a paused agent.
//! - `agent`, `catalog`: the reconcilers that apply those decisions.
//! - `watch`, `index`, `context`, `metrics`, `server`, `run`: plumbing.

pub mod agent;
pub mod api;
pub mod catalog;
pub mod conditions;
pub mod context;
pub mod crdgen;
pub mod credentials;
pub mod duration;
pub mod index;
pub mod metrics;
pub mod pause;
pub mod plan;
pub mod policy;
pub mod rbac;
pub mod run;
pub mod server;
pub mod validate;
pub mod watch;
pub mod workload;
