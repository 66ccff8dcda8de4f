use super::{Condition, Risk};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much autonomy each tier carries. `default` ships with the chart; agents name theirs in
/// `spec.policyRef`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "AutonomyPolicy",
    status = "AutonomyPolicyStatus",
    shortname = "apolicy",
    category = "socwarden",
    doc = "What runs without human approval at each autonomy tier, and the cluster-wide kill switch.",
    printcolumn(name = "Supervised", type_ = "string", json_path = ".spec.autonomy.supervised"),
    printcolumn(name = "Autonomous", type_ = "string", json_path = ".spec.autonomy.autonomous"),
    printcolumn(name = "KillSwitch", type_ = "boolean", json_path = ".spec.killSwitch"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AutonomyPolicySpec {
    /// Per tier, the highest risk that runs without approval. `observe` never runs anything
    /// (requests become recommendations) and `critical` is never autonomous.
    #[serde(default)]
    pub autonomy: Ceilings,
    /// true pauses every agent in the cluster at once, whichever policy it uses: RoleBindings
    /// deleted, tokens revoked, workloads scaled to zero. Setting it back to false resumes them.
    #[serde(default)]
    pub kill_switch: bool,
}

/// The highest risk that runs without approval, per tier. Ceilings may not decrease with the tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ceilings {
    /// Default none: every action needs approval.
    #[serde(default = "none")]
    pub assist: Ceiling,
    /// Default low.
    #[serde(default = "low")]
    pub supervised: Ceiling,
    /// Default medium.
    #[serde(default = "medium")]
    pub autonomous: Ceiling,
}

impl Default for Ceilings {
    fn default() -> Self {
        Self { assist: Ceiling::None, supervised: Ceiling::Low, autonomous: Ceiling::Medium }
    }
}

fn none() -> Ceiling {
    Ceiling::None
}
fn low() -> Ceiling {
    Ceiling::Low
}
fn medium() -> Ceiling {
    Ceiling::Medium
}

/// A risk ceiling: `none` means nothing runs without approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ceiling {
    None,
    Low,
    Medium,
    High,
}

impl Ceiling {
    /// Whether an action of this risk runs without approval under this ceiling.
    pub fn allows(self, risk: Risk) -> bool {
        match self {
            Ceiling::None => false,
            Ceiling::Low => risk <= Risk::Low,
            Ceiling::Medium => risk <= Risk::Medium,
            Ceiling::High => risk <= Risk::High,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutonomyPolicyStatus {
    /// `Valid`: whether the policy can be used.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
