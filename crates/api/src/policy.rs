use super::{Condition, Risk};
use kube_core::{Message, Rule};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much autonomy each tier carries. `default` ships with the chart; agents name theirs in
/// `spec.policyRef`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
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
    /// How gated actions are approved.
    #[serde(default)]
    pub approvals: ApprovalRules,
    /// What a tier promotion needs.
    #[serde(default)]
    pub promotion: PromotionRules,
    /// How many requests an agent may file: beyond these the admission webhook refuses, saying why.
    #[serde(default)]
    pub requests: RequestQuota,
}

/// Per agent: requests waiting for a decision, and requests filed per minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct RequestQuota {
    /// Requests of one agent not decided yet (default 20).
    #[serde(default = "twenty")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_pending: u32,
    /// Requests one agent may file per minute (default 60; counted by each operator replica).
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_per_minute: u32,
    /// Decided requests (and their approvals) are deleted this long after their decision
    /// (default 168h); the decision log stays the durable record. A reversible execution still in
    /// effect keeps its request (deleting it rolls back). Budgets and promotion evidence count only
    /// what is kept: keep it longer than an hour and than the promotion windows.
    #[serde(default = "week")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub retention: String,
    /// Requests one agent keeps at most, decided ones included (default 5000): past it, the agent
    /// files nothing more until retention deletes some. Without it, filing at the allowed rate
    /// would keep some 600,000 decided requests per agent and week in etcd and every cache.
    #[serde(default = "five_thousand")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_kept: u32,
}

impl Default for RequestQuota {
    fn default() -> Self {
        Self { max_pending: twenty(), max_per_minute: sixty(), retention: week(), max_kept: five_thousand() }
    }
}

fn five_thousand() -> u32 {
    5000
}

fn week() -> String {
    "168h".into()
}

fn sixty() -> u32 {
    60
}

/// Approval of gated actions. The approvals a request needs are the larger of the agent's
/// `approvers.minApprovals` and this policy's number for the action's risk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRules {
    /// A gated request not decided within this time is Expired, never executed (default 15m).
    #[serde(default = "fifteen_minutes")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub timeout: String,
    /// Approvals needed per risk (defaults: low 1, medium 1, high 2, critical 2).
    #[serde(default)]
    pub required: RequiredApprovals,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        Self { timeout: fifteen_minutes(), required: RequiredApprovals::default() }
    }
}

fn fifteen_minutes() -> String {
    "15m".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequiredApprovals {
    #[serde(default = "n1")]
    #[schemars(range(min = 1, max = 10))]
    pub low: u32,
    #[serde(default = "n1")]
    #[schemars(range(min = 1, max = 10))]
    pub medium: u32,
    #[serde(default = "n2")]
    #[schemars(range(min = 1, max = 10))]
    pub high: u32,
    #[serde(default = "n2")]
    #[schemars(range(min = 1, max = 10))]
    pub critical: u32,
}

impl Default for RequiredApprovals {
    fn default() -> Self {
        Self { low: 1, medium: 1, high: 2, critical: 2 }
    }
}

fn n1() -> u32 {
    1
}
fn n2() -> u32 {
    2
}

/// What raising an agent's tier needs, one step at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionRules {
    /// Minimum time at the current tier (default 24h).
    #[serde(default = "day")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub min_dwell: String,
    /// No drift pause within this window before the promotion (default 24h).
    #[serde(default = "day")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub clean_window: String,
    /// After a drift pause, no promotion for this long after the resume (default 72h).
    #[serde(default = "three_days")]
    #[schemars(regex(pattern = crate::duration::PATTERN), length(min = 2, max = crate::duration::MAX_LENGTH))]
    #[x_kube(validation = crate::duration::at_most_ten_years())]
    pub cooling_off: String,
    /// Shadow evidence: at least this many human decisions on requests the next tier would have
    /// run alone (default 20) …
    #[serde(default = "twenty")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_shadow_decisions: u32,
    /// … agreeing with what the next tier would have done at least this often (default 0.9).
    #[serde(default = "ninety")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_shadow_agreement: f64,
}

impl Default for PromotionRules {
    fn default() -> Self {
        Self {
            min_dwell: day(),
            clean_window: day(),
            cooling_off: three_days(),
            min_shadow_decisions: twenty(),
            min_shadow_agreement: ninety(),
        }
    }
}

fn day() -> String {
    "24h".into()
}
fn three_days() -> String {
    "72h".into()
}
fn twenty() -> u32 {
    20
}
fn ninety() -> f64 {
    0.9
}

/// The highest risk that runs without approval, per tier. Ceilings may not decrease with the tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    crates(kube_core = "::kube_core"),
    validation = never_below("assist", "supervised"),
    validation = never_below("supervised", "autonomous")
)]
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

/// The CEL rule that the ceiling of tier `hi` is not below that of the tier `lo` under it, with
/// the words of `socwarden_core::agent::policy::validate` (the operator's own check, which marks
/// such a policy invalid and fails its agents closed).
fn never_below(lo: &str, hi: &str) -> Rule {
    // `{'none': 0, 'low': 1, 'medium': 2, 'high': 3}`: the order of `Ceiling`.
    let ranks: Vec<String> = Ceiling::ALL.iter().enumerate().map(|(i, c)| format!("'{}': {i}", c.as_str())).collect();
    let rank = format!("{{{}}}", ranks.join(", "));
    Rule::new(format!("{rank}[self.{lo}] <= {rank}[self.{hi}]")).message(Message::Expression(format!(
        "'ceilings must not decrease with the tier: autonomy.{lo} is ' + self.{lo} + ' but autonomy.{hi} is ' + self.{hi} + '; raise autonomy.{hi} or lower autonomy.{lo}'"
    )))
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
    /// Every ceiling, lowest first.
    pub const ALL: [Ceiling; 4] = [Ceiling::None, Ceiling::Low, Ceiling::Medium, Ceiling::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Ceiling::None => "none",
            Ceiling::Low => "low",
            Ceiling::Medium => "medium",
            Ceiling::High => "high",
        }
    }

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
