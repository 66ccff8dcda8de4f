use super::{Condition, Grant, Risk};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An entry of the action catalog, written by security administrators: what the action risks and
/// which RBAC rules an agent receives when the action is autonomous for it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
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
    /// The parameters every ActionRequest for this action must carry, checked before anything
    /// runs: an LLM's output is only acted on once it fits this schema.
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    /// How the operator performs the action itself once it is approved (or autonomous). Without
    /// it, the action is carried out by the agent with its own grants, and the request is a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// Per-agent budgets over a sliding hour; a request beyond them is Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Targets no agent may act on with this action, at any tier: requests for them are Rejected.
    #[serde(default)]
    pub protected_targets: Vec<TargetSelector>,
}

/// The fail-safe default, used only for an object that cannot be decoded: critical, grants nothing.
impl Default for SocActionSpec {
    fn default() -> Self {
        Self {
            risk: Risk::Critical,
            reversible: false,
            description: String::new(),
            grants: Vec::new(),
            parameters: Vec::new(),
            execution: None,
            limits: None,
            protected_targets: Vec::new(),
        }
    }
}

/// One parameter of an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSpec {
    /// Name, used as `${name}` in the execution template.
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$"))]
    pub name: String,
    /// string, integer, boolean, ip (v4 or v6 address) or cidr.
    #[serde(rename = "type", default = "string_type")]
    pub type_: ParameterType,
    /// Whether requests must give it.
    #[serde(default)]
    pub required: bool,
    /// For strings: a regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// For strings: the longest value allowed (default 253).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_length: Option<u32>,
    /// For integers: bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// This parameter names a target of this kind (`IP`, `User`, `Pod`, …): its value is part of the
    /// request's effect, and `protectedTargets` and scope apply to it as to `spec.target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<String>,
}

impl ParameterSpec {
    /// A required parameter `name` of type `type_`, without further constraints.
    pub fn new(name: impl Into<String>, type_: ParameterType) -> Self {
        Self {
            name: name.into(),
            type_,
            required: true,
            pattern: None,
            allowed: vec![],
            max_length: None,
            minimum: None,
            maximum: None,
            target_kind: None,
        }
    }
}

fn string_type() -> ParameterType {
    ParameterType::String
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
    Ip,
    Cidr,
}

/// How the operator carries out an approved action: exactly one of `manifest` or `http`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// A Kubernetes manifest (YAML) applied with server-side apply in the target's namespace.
    /// `${param}`, `${target.name}`, `${target.namespace}` and `${request.name}` are replaced inside
    /// string values only (never in keys or structure). Deleting the ActionRequest of a reversible
    /// action removes what was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// An HTTP call to a SOAR/EDR endpoint, signed with HMAC-SHA256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExecution>,
}

/// `POST`s the request as JSON to `url` with the headers `X-SOC-Warden-Signature: sha256=<hex
/// HMAC of the body>` and `Idempotency-Key: <ActionRequest UID>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpExecution {
    /// `http://` or `https://` URL (https needs `caBundle` unless the endpoint has a public CA).
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// The Secret (in the operator's namespace) and key holding the HMAC key.
    pub secret_ref: SecretKeyRef,
    /// PEM CA certificates to trust for an https endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Seconds before the call is abandoned (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Budgets per agent, over the last hour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// At most this many approved or autonomous executions of this action per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_executions_per_hour: Option<u32>,
    /// At most this many distinct targets per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_targets_per_hour: Option<u32>,
}

/// Matches targets; every field given must match. `namePattern` is a regular expression.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_pattern: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocActionStatus {
    /// `Delegable`: whether every grant is within what the operator may delegate. `Executable`:
    /// whether every object the manifest execution writes is within the safe envelope.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The parts of `grants` the operator may not delegate (agents listing this action fail closed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelegable: Vec<String>,
    /// Why the manifest execution may not run (its requests are Rejected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexecutable: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
