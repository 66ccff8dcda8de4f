use super::{Condition, OPERATOR_SECRETS, Risk, SecretKeyRef};
use kube_core::{Message, Rule};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to fix in a Notifier with neither `url` nor `urlSecretRef`: the words of its status
/// (`socwarden_core::notify::problems`) and of the CRD's validation rule.
pub const URL_MISSING: &str = "set url, or urlSecretRef (a Secret in the operator's namespace holding the URL)";
/// … with both.
pub const URL_TWICE: &str = "set url or urlSecretRef, not both";
/// … with `format: webhook` and no `secretRef`.
pub const WEBHOOK_UNSIGNED: &str = "format webhook needs secretRef: the Secret (in the operator's namespace) and key holding the HMAC key its bodies are signed with";

/// The CEL rule of a Secret reference: not one of the operator's own Secrets (an endpoint
/// receiving bodies MACed with the stamp key would hold an oracle of it).
fn not_the_operators() -> Rule {
    let own: Vec<String> = OPERATOR_SECRETS.iter().map(|n| format!("'{n}'")).collect();
    Rule::new(format!("!(self.name in [{}])", own.join(", "))).message(Message::Expression(
        "'names ' + self.name + \", the operator's own Secret; give the endpoint a key of its own in another Secret\""
            .into(),
    ))
}

/// Whether the Notifier can deliver as configured (condition `Valid`, with what to fix if not).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifierStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

/// Where notices of approvals and pauses are sent: one sink, and which notices it gets. A
/// resource of its own, not a section of an AutonomyPolicy: who routes the SOC's chat channels
/// (platform or SOC operations) is not who sets autonomy, a policy has no place for a sink's
/// Secrets, and one notice can go to several sinks whichever policy its agent uses.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    crates(kube_core = "::kube_core"),
    validation = Rule::new("has(self.url) || has(self.urlSecretRef)").message(URL_MISSING),
    validation = Rule::new("!has(self.url) || !has(self.urlSecretRef)").message(URL_TWICE),
    validation = Rule::new("self.format != 'webhook' || has(self.secretRef)").message(WEBHOOK_UNSIGNED)
)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "socwarden.io",
    version = "v1alpha1",
    kind = "Notifier",
    shortname = "notifier",
    category = "socwarden",
    doc = "A sink (signed webhook, Slack or Microsoft Teams incoming webhook) for notices of pending approvals, decisions, executions and pauses.",
    status = "NotifierStatus",
    printcolumn(name = "Format", type_ = "string", json_path = ".spec.format"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type==\"Valid\")].status"),
    printcolumn(name = "Events", type_ = "string", json_path = ".spec.events"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NotifierSpec {
    /// How each notice is written: `webhook` (JSON, signed), `slack` (Block Kit), `teams`
    /// (an Adaptive Card, as Teams Workflows webhooks take).
    pub format: NoticeFormat,
    /// `http://` or `https://` URL the notices are POSTed to. Chat incoming-webhook URLs are
    /// credentials: give those in `urlSecretRef` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// The Secret (in the operator's namespace) and key holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = not_the_operators())]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// The Secret (in the operator's namespace) and key holding the HMAC-SHA256 key each body is
    /// signed with (header `X-Soc-Warden-Signature: sha256=<hex>`). Required for `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = not_the_operators())]
    pub secret_ref: Option<SecretKeyRef>,
    /// PEM CA certificates to trust for an https URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Which notices (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NoticeKind>,
    /// Only notices about agents in these namespaces (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only notices about these agents, by name (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Only request notices of actions at least this risky (agent notices always pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Risk")]
    pub min_risk: Option<Risk>,
    /// Base URL of the approval console, for links in the notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoticeFormat {
    #[default]
    Webhook,
    Slack,
    Teams,
}

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NoticeKind {
    /// A request waits for approvals (to its approvers).
    RequestPending,
    /// A pending request has used 80% of its time.
    RequestExpiring,
    /// A request was decided: approved, denied, expired, rejected, auto-approved, recommended.
    RequestDecided,
    /// A request's execution finished (or was rolled back).
    RequestExecuted,
    /// A request's execution failed.
    RequestFailed,
    /// An agent was paused (drift, kill switch, by hand), with the reason and signals.
    AgentPaused,
    /// An agent was resumed.
    AgentResumed,
    /// An agent's effective tier changed (promotion granted, demotion).
    TierChanged,
    /// A promotion waits (the declared tier was raised): what it still needs, to the approvers.
    PromotionPending,
    /// The kill switch of an AutonomyPolicy was turned on (every agent paused) or off.
    KillSwitch,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::RequestPending => "RequestPending",
            NoticeKind::RequestExpiring => "RequestExpiring",
            NoticeKind::RequestDecided => "RequestDecided",
            NoticeKind::RequestExecuted => "RequestExecuted",
            NoticeKind::RequestFailed => "RequestFailed",
            NoticeKind::AgentPaused => "AgentPaused",
            NoticeKind::AgentResumed => "AgentResumed",
            NoticeKind::TierChanged => "TierChanged",
            NoticeKind::PromotionPending => "PromotionPending",
            NoticeKind::KillSwitch => "KillSwitch",
        }
    }
}
