use super::{Condition, Tier};
use kube_core::{Message, Rule};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an edit of a record's spec is refused: the admission webhook's words and the CRD's rule's.
pub fn spec_immutable(kind: &str) -> String {
    format!("{kind} spec is immutable; create a new one instead")
}

/// The CEL transition rule that keeps the spec of a `kind` record as it was created: the API
/// server holds it even while the operator (and its webhook) is down.
fn immutable(kind: &str) -> Rule {
    Rule::new("self == oldSelf").message(Message::Message(spec_immutable(kind)))
}

/// An agent asks to act. Created by the agent with its own token (or by a human on its behalf);
/// immutable once created. The admission webhook stamps `requester` from the authenticated user
/// and signs it; the operator decides, deterministically, and executes what was approved.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"), validation = immutable("ActionRequest"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "ActionRequest",
    namespaced,
    status = "ActionRequestStatus",
    shortname = "areq",
    category = "socwarden",
    doc = "A request by an agent to take a catalog action, and the decision taken on it.",
    printcolumn(name = "Agent", type_ = "string", json_path = ".spec.agent"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".status.decision"),
    printcolumn(name = "Execution", type_ = "string", json_path = ".status.execution.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequestSpec {
    /// The SocAgent (in this namespace) on whose behalf the action is requested.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub agent: String,
    /// The SocAction requested; it must be in the agent's `spec.actions`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub action: String,
    /// Parameters, checked against the action's parameter schema.
    #[serde(default)]
    #[schemars(schema_with = "parameters_schema")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// What the action is aimed at.
    pub target: Target,
    /// Why (the model's reasoning), kept for audit; never interpreted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 8192))]
    pub justification: String,
    /// Set by the admission webhook: the authenticated user who created the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requester: String,
    /// Set by the admission webhook: that user's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requester_groups: Vec<String>,
    /// Set by the admission webhook: a random value that makes each stamp unique.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// Set by the admission webhook: HMAC of the stamp, with a key only the operator holds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

fn parameters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Parameters, checked against the action's parameter schema.",
        "additionalProperties": {"x-kubernetes-preserve-unknown-fields": true}
    })
}

/// The object an action is aimed at. `namespace`, when given, must be in the agent's scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Kind of target, e.g. Pod, Deployment, IP, User.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9]{0,62}$"))]
    pub kind: String,
    /// Name of the target (an object name, an address, an account).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a namespaced Kubernetes target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
}

/// The decision on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    /// Waiting for approvals.
    Pending,
    /// Ran without approval: autonomous at the agent's effective tier.
    AutoApproved,
    /// Approved by the required number of approvers.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Not decided in time; never executed.
    Expired,
    /// Refused by a deterministic check (catalog, parameters, scope, protection, budget, stamp).
    Rejected,
    /// The agent is at the observe tier: recorded as a recommendation, never executed.
    Recommended,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pending => "Pending",
            Decision::AutoApproved => "AutoApproved",
            Decision::Approved => "Approved",
            Decision::Denied => "Denied",
            Decision::Expired => "Expired",
            Decision::Rejected => "Rejected",
            Decision::Recommended => "Recommended",
        }
    }

    /// Whether the request may (or did) run.
    pub fn runs(self) -> bool {
        matches!(self, Decision::AutoApproved | Decision::Approved)
    }

    pub fn is_final(self) -> bool {
        self != Decision::Pending
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExecutionState {
    Running,
    Succeeded,
    Failed,
    RolledBack,
    /// The action has no execution: the agent acted itself under the request (see `performed`).
    ActedOn,
    /// The action has no execution, and the agent did not act under the request in its window.
    NotActedOn,
}

impl ExecutionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Running => "Running",
            ExecutionState::Succeeded => "Succeeded",
            ExecutionState::Failed => "Failed",
            ExecutionState::RolledBack => "RolledBack",
            ExecutionState::ActedOn => "ActedOn",
            ExecutionState::NotActedOn => "NotActedOn",
        }
    }
}

// Written with a JSON merge patch: `None` serializes as null so that the patch removes the field.
/// What was decided, by whom, and what ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequestStatus {
    #[serde(default)]
    #[schemars(with = "Decision")]
    pub decision: Option<Decision>,
    /// Why, in words.
    #[serde(default)]
    pub message: String,
    /// Approvals counted (or the deny that decided).
    #[serde(default)]
    pub approvals: Vec<ApprovalRecord>,
    /// Distinct approvals needed.
    pub required_approvals: Option<u32>,
    /// Hash of agent, action, parameters and target: what an approval is bound to.
    pub binding: Option<String>,
    /// Hash of the SocAction's spec the request was decided on: approvals bind to it, and the
    /// execution runs only that content (an edited action is never run under an old decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_hash: Option<String>,
    /// When a pending request expires.
    pub expires_at: Option<String>,
    pub decided_at: Option<String>,
    /// The AutonomyPolicy (name@generation) and agent tier the decision was taken under.
    pub policy: Option<String>,
    pub tier: Option<Tier>,
    pub execution: Option<ExecutionStatus>,
    /// Every object the request touches when it runs, computed when it is decided (and while it
    /// waits): what its manifest writes, the pods those objects select at that moment, and the
    /// parameters that name targets. Scope and protected targets apply to all of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effect: Vec<EffectObject>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One object of a request's effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectObject {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// How the request reaches it: `written`, `selected by NetworkPolicy isolate-web`, `parameter ip`.
    pub via: String,
}

impl std::fmt::Display for EffectObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{} ({})", self.kind, self.name, self.via),
            None => write!(f, "{} {} ({})", self.kind, self.name, self.via),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The Approval object.
    pub name: String,
    pub approver: String,
    pub decision: ApprovalDecision,
    pub at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatus {
    #[serde(default)]
    #[schemars(with = "ExecutionState")]
    pub state: Option<ExecutionState>,
    /// What happened (object applied, HTTP status, error).
    #[serde(default)]
    pub result: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Objects applied by a manifest execution (removed on rollback).
    #[serde(default)]
    pub applied: Vec<AppliedObject>,
    /// What the agent itself did under the request: its writes this request covered, from the API
    /// server's audit log (the first 20; `performedCount` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performed: Vec<PerformedCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_count: Option<u32>,
}

/// One write of the agent, covered by the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformedCall {
    pub verb: String,
    /// `resource`, `group/resource` or either with `/subresource`.
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// When the API server answered (RFC 3339).
    pub at: String,
    /// The HTTP status it answered with.
    pub code: u16,
    /// The token it was made with, as the API server's audit events name it (`JTI=<token id>`;
    /// absent when the API server did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `delete pods web/web-1 → 200`.
impl std::fmt::Display for PerformedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let object = match (self.namespace.is_empty(), self.name.is_empty()) {
            (false, false) => format!(" {}/{}", self.namespace, self.name),
            (false, true) => format!(" in {}", self.namespace),
            (true, false) => format!(" {}", self.name),
            (true, true) => String::new(),
        };
        write!(f, "{} {}{object} → {}", self.verb, self.resource, self.code)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// `Kind namespace/name`, as messages and the decision log name an object.
impl std::fmt::Display for AppliedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A human decision: on an ActionRequest, on a tier promotion, or on resuming a paused agent.
/// The approver is stamped from the authenticated user by the admission webhook and signed;
/// approvals are immutable.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"), validation = immutable("Approval"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "Approval",
    namespaced,
    shortname = "appr",
    category = "socwarden",
    doc = "A human decision on an ActionRequest, a tier promotion or the resumption of a paused agent.",
    printcolumn(name = "Request", type_ = "string", json_path = ".spec.actionRequest"),
    printcolumn(name = "Promotion", type_ = "string", json_path = ".spec.promotion.tier"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision"),
    printcolumn(name = "Approver", type_ = "string", json_path = ".spec.approver"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// The ActionRequest (in this namespace) decided on. Exactly one of actionRequest, promotion
    /// and resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_request: Option<String>,
    /// A promotion of an agent (in this namespace) to the next tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionRef>,
    /// Resuming an agent (in this namespace) paused for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeRef>,
    /// approve or deny.
    pub decision: ApprovalDecision,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub comment: String,
    /// Set by the admission webhook: the authenticated user who approved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approver: String,
    /// Set by the admission webhook: that user's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
    /// The content hash of the ActionRequest as its approver reviewed it
    /// (`kubectl warden pending` and `kubectl warden approve` print it, the console and the chat
    /// links send it). Required to approve a request: the admission webhook refuses an approval
    /// whose hash is no longer the request's content (its SocAction was edited since), so nobody
    /// approves what they were not shown. A deny needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub seen: Option<String>,
    /// Set by the admission webhook: what the approval is bound to (request UID and content hash,
    /// or agent UID and tier).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bound_to: String,
    /// Set by the admission webhook: HMAC of the stamp, with a key only the operator holds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    #[default]
    Approve,
    Deny,
}

impl ApprovalDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalDecision::Approve => "approve",
            ApprovalDecision::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRef {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub agent: String,
    /// The tier the agent is promoted to (one step above its effective tier).
    pub tier: Tier,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeRef {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub agent: String,
    /// The `status.pause.id` of the pause being lifted.
    pub pause_id: String,
}
