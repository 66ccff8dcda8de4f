//! The custom resources of SOC Warden (group `socwarden.io`, version `v1alpha1`).
//!
//! Only data lives here — the types, the condition types and reasons, durations, and the drift
//! report kept in a status. Every decision over these types is in `socwarden_core`. Doc comments
//! become `kubectl explain` text, and `#[x_kube(validation = ..)]` the CRDs' CEL validation rules:
//! what the API server refuses on its own, even while the operator is down (the operator's checks
//! in `socwarden_core` stay the authority; the rules share their words).

// `#[kube(printcolumn(name = .., type_ = ..), printcolumn(..))]` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

mod action;
mod agent;
pub mod conditions;
pub mod drift;
pub mod duration;
mod notifier;
mod policy;
mod request;

pub use action::*;
pub use agent::*;
pub use notifier::*;
pub use policy::*;
pub use request::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "socwarden.io";
pub const VERSION: &str = "v1alpha1";

/// The operator's own Secrets (in its namespace): the key admission stamps are signed with, and
/// the serving certificate's key. No SocAction or Notifier may name them: an endpoint receiving
/// bodies MACed with the stamp key would hold an oracle of it.
pub const OPERATOR_SECRETS: [&str; 2] = ["socwarden-signing-key", "socwarden-webhook-tls"];

/// Autonomy tiers, from least to most autonomous. The order is meaningful: `observe < assist <
/// supervised < autonomous`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The agent's requests are recorded as recommendations only, never executed.
    #[default]
    Observe,
    /// Every action needs human approval.
    Assist,
    /// Actions up to the policy's `supervised` ceiling (default: low risk) run alone.
    Supervised,
    /// Actions up to the policy's `autonomous` ceiling (default: medium risk) run alone.
    Autonomous,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Observe, Tier::Assist, Tier::Supervised, Tier::Autonomous];

    /// The tier one step up, if any.
    pub fn next(self) -> Option<Tier> {
        match self {
            Tier::Observe => Some(Tier::Assist),
            Tier::Assist => Some(Tier::Supervised),
            Tier::Supervised => Some(Tier::Autonomous),
            Tier::Autonomous => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Observe => "observe",
            Tier::Assist => "assist",
            Tier::Supervised => "supervised",
            Tier::Autonomous => "autonomous",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The risk of an action. `critical` actions never run without approval, at any tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Risk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespaced RBAC rule that an action grants to an agent. Wildcards are not accepted: every
/// API group, resource and verb is named.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// API groups of the resources; `""` is the core group.
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$|^$")))]
    pub api_groups: Vec<String>,
    /// Resources (plural, lower case), optionally with a subresource (`deployments/scale`).
    #[schemars(length(min = 1), inner(regex(pattern = r"^[a-z][-a-z0-9.]*(/[a-z]+)?$")))]
    pub resources: Vec<String>,
    /// Verbs allowed on those resources.
    #[schemars(length(min = 1))]
    pub verbs: Vec<Verb>,
    /// Optionally restrict the rule to these object names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// A Kubernetes API verb. Wildcards, `escalate`, `bind` and `impersonate` are deliberately absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Deletecollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Deletecollection => "deletecollection",
        }
    }
}

/// A status condition, following the Kubernetes API conventions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `CredentialsIssued`, `Paused`, `InvalidSpec`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A machine-readable CamelCase reason.
    pub reason: String,
    /// What happened and, when something is wrong, how to fix it.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
