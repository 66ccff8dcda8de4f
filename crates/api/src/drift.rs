//! The behaviour baseline and drift report as they are kept in a SocAgent's status. Data only: the
//! learning, scoring and judging are in `socwarden_core::behaviour`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What an agent normally does, learned (or declared) and kept in its status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// Seconds of behaviour the counts cover.
    pub seconds: f64,
    /// Requests per action during that time.
    #[serde(default)]
    pub actions: BTreeMap<String, u64>,
    /// API calls per `verb group/resource` during that time (successful ones).
    #[serde(default)]
    pub api: BTreeMap<String, u64>,
    /// Targets seen (at most 64; `(other)` once more were seen).
    #[serde(default)]
    pub targets: BTreeSet<String>,
    /// Coarser keys, for novelty once the exact lists are full: API resources without the verb
    /// (`apps/deployments`), and their first segment (`apps`, or a core resource).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub api_resources: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub api_groups: BTreeSet<String>,
    /// Targets' kind and namespace (`Pod/web`), and kind alone (`Pod`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub target_scopes: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub target_kinds: BTreeSet<String>,
    /// API calls refused with 403 during learning.
    #[serde(default)]
    pub forbidden: u64,
    /// Requests decided, and of them denied or expired, during learning.
    #[serde(default)]
    pub decided: u64,
    #[serde(default)]
    pub denied: u64,
}

/// How sensitive detection is; the threshold the score must reach to act.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Acts at 0.9: only strong, combined evidence.
    Low,
    /// Acts at 0.7.
    #[default]
    Medium,
    /// Acts at 0.5: a single never-seen action is enough.
    High,
}

impl Sensitivity {
    pub fn threshold(self) -> f64 {
        match self {
            Sensitivity::Low => 0.9,
            Sensitivity::Medium => 0.7,
            Sensitivity::High => 0.5,
        }
    }
}

/// The kinds of drift signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SignalKind {
    /// A rate far above the baseline's (per action, per API call).
    Rate,
    /// The mix of actions and API calls diverged from the baseline's.
    Mix,
    /// An action, an API call or a target never seen while learning.
    Novelty,
    /// API calls refused with 403, rejected requests: attempts beyond scope.
    OutOfScope,
    /// The share of requests humans denied or let expire.
    Denials,
    /// No activity to judge by.
    Silence,
    /// A write no approved request covers: contained at once, whatever the sensitivity.
    Unrecorded,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Rate => "rate",
            SignalKind::Mix => "mix",
            SignalKind::Novelty => "novelty",
            SignalKind::OutOfScope => "outOfScope",
            SignalKind::Denials => "denials",
            SignalKind::Silence => "silence",
            SignalKind::Unrecorded => "unrecorded",
        }
    }
}

impl std::fmt::Display for SignalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// Which signal: rate, mix, novelty, outOfScope, denials, silence or unrecorded.
    pub signal: SignalKind,
    /// What was seen, in words.
    pub observed: String,
    /// What the baseline expects.
    pub expected: String,
    pub score: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum State {
    /// Still learning the baseline.
    Learning,
    /// Behaviour within the baseline.
    Normal,
    /// Score at or above the threshold.
    Drifting,
    /// No activity to judge by: not taken for health.
    Inconclusive,
}
