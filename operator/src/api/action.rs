use super::{Condition, Grant, Risk};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An entry of the action catalog, written by security administrators: what the action risks and
/// which RBAC rules an agent receives when the action is autonomous for it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "SocAction",
    status = "SocActionStatus",
    shortname = "saction",
    category = "socwarden",
    doc = "An action an agent may request, its risk, and the RBAC rules it grants when autonomous.",
    printcolumn(name = "Risk", type_ = "string", json_path = ".spec.risk"),
    printcolumn(name = "Reversible", type_ = "boolean", json_path = ".spec.reversible"),
    printcolumn(
        name = "Delegable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Delegable\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SocActionSpec {
    /// low, medium, high or critical. The AutonomyPolicy decides, per tier, the highest risk that
    /// runs without approval; critical never does.
    pub risk: Risk,
    /// Whether the action can be rolled back.
    #[serde(default)]
    pub reversible: bool,
    /// What the action does, for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// RBAC rules the agent itself receives, in each of its scope namespaces, while this action is
    /// autonomous at its effective tier. Each must be within what the operator may delegate.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// The fail-safe default, used only for an object that cannot be decoded: critical, grants nothing.
impl Default for SocActionSpec {
    fn default() -> Self {
        Self { risk: Risk::Critical, reversible: false, description: String::new(), grants: Vec::new() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocActionStatus {
    /// `Delegable`: whether every grant is within what the operator may delegate.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The parts of `grants` the operator may not delegate (agents listing this action fail closed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelegable: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
