//! The reconcilers: SocAgents (credentials, pause, tier), SocActions (delegability) and
//! ActionRequests (the gate, execution, rollback).

pub mod agent;
pub mod catalog;
pub mod request;
