//! Behaviour: audit events and requests as observations, the learned baseline, drift signals and
//! the judgement.

pub mod audit;
pub mod drift;
pub mod records;
pub mod report;
