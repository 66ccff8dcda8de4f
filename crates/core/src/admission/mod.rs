//! Deciding ActionRequests and Approvals: the gate, what an approval counts for, identities,
//! parameters and signatures.

pub mod approvals;
pub mod effect;
pub mod gate;
pub mod identity;
pub mod kinds;
pub mod params;
pub mod quota;
pub mod selector;
pub mod signature;
