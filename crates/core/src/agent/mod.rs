//! Deciding one SocAgent: its validity, RBAC, credentials, pause, tier and status.

pub mod authority;
pub mod credentials;
pub mod pause;
pub mod plan;
pub mod policy;
pub mod promotion;
pub mod rbac;
pub mod transitions;
pub mod validate;
