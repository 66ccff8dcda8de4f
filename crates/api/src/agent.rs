use super::{Condition, Tier};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Duration of at least 10 minutes written as `10m`, `90m`, `1h`, `1h30m` or `900s`.
pub const TTL_PATTERN: &str = r"^([1-9][0-9]*h([0-9]+m)?|[1-9][0-9]+m|([6-9][0-9]{2}|[1-9][0-9]{3,})s)$";
/// The shortest token lifetime: the shortest token the API server issues.
pub const MIN_TTL: Duration = Duration::from_secs(600);
/// The longest token lifetime: tokens are meant to be short-lived.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// `maxLength` of the TTL: far beyond any TTL of at most a day (`86400s`, `23h59m`), and short
/// enough that the CEL rule's sums cannot overflow.
pub const TTL_MAX_LENGTH: u32 = 16;

fn ttl_at_most_a_day() -> kube_core::Rule {
    crate::duration::at_most(
        TTL_PATTERN,
        MAX_TTL,
        "is longer than 24h; tokens are meant to be short-lived: write a shorter one, such as 1h",
    )
}

/// One AI agent of the SOC: its autonomy tier, the actions it may take, who approves them, where
/// it acts, and the credentials the operator issues to it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "SocAgent",
    namespaced,
    status = "SocAgentStatus",
    shortname = "sagent",
    category = "socwarden",
    doc = "An AI agent of the Security Operations Center and the autonomy it was granted.",
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier", description = "Declared autonomy tier"),
    printcolumn(
        name = "Effective",
        type_ = "string",
        json_path = ".status.effectiveTier",
        description = "Tier enforced now"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SocAgentSpec {
    /// Declared autonomy tier: observe, assist, supervised or autonomous. Lowering it takes effect
    /// at once; the credentials always follow the effective tier (see status.effectiveTier).
    pub tier: Tier,
    /// Names of the SocActions this agent may request. An unknown name makes the agent fail closed
    /// (no action grants) until it is fixed.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")), length(max = 64))]
    pub actions: Vec<String>,
    /// Humans who may approve this agent's gated actions and promotions.
    #[serde(default)]
    pub approvers: Approvers,
    /// Where the agent's credentials and actions apply.
    pub scope: Scope,
    /// Optional workload that runs the agent; pausing scales it to zero replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// The short-lived token issued to the agent.
    #[serde(default)]
    pub credentials: CredentialSpec,
    /// Behaviour monitoring: how the baseline is learned and what drift does.
    #[serde(default)]
    pub baseline: BaselineSpec,
    /// Manual kill switch for this agent: true revokes its credentials and stops its workload.
    #[serde(default)]
    pub paused: bool,
    /// Name of the AutonomyPolicy that decides what runs without approval at each tier.
    #[serde(default = "default_policy_ref")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub policy_ref: String,
}

pub fn default_policy_ref() -> String {
    "default".to_string()
}

/// Behaviour monitoring of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct BaselineSpec {
    /// How long normal behaviour is observed before drift is judged (default 24h).
    #[serde(default = "default_learning")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub learning_period: String,
    /// low (acts at a drift score of 0.9), medium (0.7) or high (0.5).
    #[serde(default)]
    pub sensitivity: crate::drift::Sensitivity,
    /// Pause: contain the agent when the score reaches the threshold. Alert: only report.
    #[serde(default)]
    pub on_drift: OnDrift,
}

impl Default for BaselineSpec {
    fn default() -> Self {
        Self { learning_period: default_learning(), sensitivity: Default::default(), on_drift: Default::default() }
    }
}

fn default_learning() -> String {
    "24h".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnDrift {
    #[default]
    Pause,
    Alert,
}

/// Who may approve (M-of-N).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Kubernetes user names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Kubernetes groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How many distinct approvers a gated action or a promotion needs.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub min_approvals: u32,
}

fn one() -> u32 {
    1
}

impl Default for Approvers {
    fn default() -> Self {
        Self { users: Vec::new(), groups: Vec::new(), min_approvals: one() }
    }
}

/// The namespaces where the agent acts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Namespaces where the agent's action grants apply (a Role and RoleBinding in each).
    #[schemars(length(min = 1, max = 64), inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub namespaces: Vec<String>,
}

/// A workload in the agent's namespace with a scale subresource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Name of the workload in the agent's namespace.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Seconds a pod of a paused agent is given to stop (its pods are deleted with this grace
    /// period, not the pod's own; default 2, at most 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 30))]
    pub grace_period_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }
}

/// The token the operator issues (TokenRequest API), bound to a Secret it owns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct CredentialSpec {
    /// Lifetime of each token, at least 10 minutes and at most 24 hours (`10m`, `1h`, `1h30m`,
    /// `900s`). The token is replaced at 80% of its lifetime.
    #[serde(default = "default_ttl")]
    #[schemars(regex(pattern = TTL_PATTERN), length(max = TTL_MAX_LENGTH))]
    #[x_kube(validation = ttl_at_most_a_day())]
    pub ttl: String,
    /// Extra audiences for tools that validate the token with a TokenReview. The API server's own
    /// audience is always included, so the agent can file ActionRequests with the same token.
    #[serde(default)]
    pub audiences: Vec<String>,
}

impl Default for CredentialSpec {
    fn default() -> Self {
        Self { ttl: default_ttl(), audiences: Vec::new() }
    }
}

fn default_ttl() -> String {
    "1h".to_string()
}

// Written with a JSON merge patch: `None` serializes as null so that the patch removes the field.
/// Observed state of a SocAgent, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SocAgentStatus {
    /// Pending, Active, Paused or Error.
    #[serde(default)]
    #[schemars(with = "Phase")]
    pub phase: Option<Phase>,
    /// The tier enforced now. It lags `spec.tier` while a promotion waits for its evidence and
    /// approvals (condition PromotionPending); a lower `spec.tier` applies at once.
    #[serde(default)]
    #[schemars(with = "Tier")]
    pub effective_tier: Option<Tier>,
    /// Since when the effective tier holds (RFC 3339).
    #[serde(default)]
    pub tier_since: Option<String>,
    /// Shadow evidence for the next tier: human decisions on requests it would have run alone.
    #[serde(default)]
    pub shadow: Option<ShadowStatus>,
    /// While a promotion waits: every rule of the policy, met or what it still misses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionStatus>,
    /// When the agent was last paused for drift, and when that pause was lifted.
    #[serde(default)]
    pub last_drift_pause: Option<String>,
    #[serde(default)]
    pub resumed_at: Option<String>,
    /// Ready, CredentialsIssued, Paused, PromotionPending, InvalidSpec. The drift assessment and
    /// the baseline are in the DriftReport of the same name, which the agent cannot read.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The credentials currently issued.
    #[serde(default)]
    pub credentials: Option<CredentialStatus>,
    /// Why and since when the agent is paused.
    #[serde(default)]
    pub pause: Option<PauseStatus>,
    /// Actions that run without approval at the effective tier (their grants are in the agent's Roles).
    #[serde(default)]
    pub autonomous_actions: Vec<String>,
    /// Actions that need approval at the effective tier.
    #[serde(default)]
    pub gated_actions: Vec<String>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

/// The promotion an agent waits for, as a checklist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The tier it would reach (one step above the effective tier).
    pub to: Tier,
    /// Each rule of the policy, in the order they are judged.
    pub checks: Vec<PromotionCheck>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionCheck {
    pub rule: PromotionRule,
    pub met: bool,
    /// What is missing while the rule does not hold.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub missing: String,
}

/// The rules a promotion waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PromotionRule {
    /// One tier at a time.
    OneStep,
    /// The minimum dwell at the current tier.
    Dwell,
    /// No drift pause within the clean window.
    CleanWindow,
    /// The cooling-off after a drift pause was lifted.
    CoolingOff,
    /// Approvals from the agent's approvers.
    Approvals,
    /// Agreement of the humans' decisions with what the next tier would have run alone.
    ShadowEvidence,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// The tier whose behaviour was shadowed.
    #[schemars(with = "Tier")]
    pub tier: Option<Tier>,
    /// Human decisions (approve or deny) on requests that tier would have run alone.
    pub decisions: u32,
    /// How many of them approved, i.e. agreed with running it.
    pub agreed: u32,
    /// The part of the evidence already counted, whose requests retention may since have
    /// deleted: `decisions` and `agreed` are these plus the kept requests decided after `through`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<CarriedEvidence>,
}

/// Shadow decisions counted at the tier held since `since`, up to and including `through`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarriedEvidence {
    pub since: String,
    pub through: String,
    pub decisions: u32,
    pub agreed: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// Learning, Normal, Drifting or Inconclusive (no activity to judge by).
    pub state: crate::drift::State,
    /// In [0, 1]; the agent is contained at the sensitivity's threshold (onDrift: Pause).
    pub score: f64,
    /// The threshold of the agent's sensitivity.
    pub threshold: f64,
    /// Each contributing signal, observed against expected.
    #[serde(default)]
    pub signals: Vec<crate::drift::Signal>,
    /// The tokens the judged calls were made with, as the API server's audit events name them
    /// (`JTI=<token id>`), most recent first: for an unrecorded write, the token that made it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    pub evaluated_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineStatus {
    /// When learning started.
    pub since: String,
    /// When learning ended; absent while learning.
    #[serde(default)]
    pub learned_at: Option<String>,
    /// What was learned (bounded: 64 keys per kind, 64 targets).
    pub counts: crate::drift::Baseline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Active,
    Paused,
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Active => "Active",
            Phase::Paused => "Paused",
            Phase::Error => "Error",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// ServiceAccount the token belongs to (in the agent's namespace).
    pub service_account: String,
    /// Secret holding the token under the key `token`; deleting it kills the token.
    pub secret_name: String,
    /// When the current token was issued (RFC 3339); absent while revoked.
    #[serde(default)]
    pub issued_at: Option<String>,
    /// When the current token expires (RFC 3339); absent while revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The current token's id as the API server's audit events name the calls made with it
    /// (`JTI=<its jti claim>`); the decision log's `CredentialsIssued`/`TokenRotated` line names it
    /// too. Absent while revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseStatus {
    /// Manual, KillSwitch or Drift.
    pub reason: String,
    /// When the pause began (RFC 3339).
    pub since: String,
    /// Identifies this pause, so that a resume can refer to it.
    pub id: String,
}

/// The behaviour baseline and the drift assessment of one SocAgent, kept apart from it: the agent
/// reads its own SocAgent, and a score it could read is an oracle (an injected agent would stay
/// just under the threshold). Written by the operator; readable by people, never by agents.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "DriftReport",
    namespaced,
    status = "DriftReportStatus",
    shortname = "drift",
    category = "socwarden",
    doc = "The behaviour baseline and drift assessment of the SocAgent of the same name; agents cannot read it.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.drift.state"),
    printcolumn(name = "Score", type_ = "number", json_path = ".status.drift.score"),
    printcolumn(name = "Threshold", type_ = "number", json_path = ".status.drift.threshold"),
    printcolumn(name = "Learned", type_ = "string", json_path = ".status.baseline.learnedAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DriftReportSpec {
    /// The SocAgent (in this namespace) it reports on.
    pub agent: String,
    /// The drift pause in force, kept here by the operator so that it survives the SocAgent's
    /// deletion and re-creation: a SocAgent of this name is paused under it until an approver
    /// resumes it (the report is owned by nothing, and is kept when its agent is deleted while
    /// this is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftReportStatus {
    /// The latest drift assessment.
    #[serde(default)]
    pub drift: Option<DriftStatus>,
    /// The learned baseline (kept so that a restart does not forget it).
    #[serde(default)]
    pub baseline: Option<BaselineStatus>,
    /// Lists of the baseline that filled while learning, and what novelty is judged on instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<String>,
    /// Drifted.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
