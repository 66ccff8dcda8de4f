//! Notices to approvers and responders: which decisions become notices, which sink takes which
//! notice, and what each sink is sent (a signed JSON body, a Slack Block Kit message, a Microsoft
//! Teams Adaptive Card) — with the exact `kubectl warden` command to run. In chat, an agent's words
//! are text only (`defang`, Slack `plain_text`, Teams `TextRun`): no link, mention or formatting
//! of theirs is live. The runtime's `notify` builds each `Notice` from what it decided and
//! delivers it off the decision's path.

use crate::decisionlog::Happened;
use socwarden_api::{NoticeFormat, NoticeKind, NotifierSpec, Risk};

/// One notice: plain data about one transition.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    #[serde(rename = "type")]
    pub kind: Option<NoticeKind>,
    /// When it happened (RFC 3339).
    pub time: String,
    pub namespace: String,
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// What happened (written as its name: Pending, Approved, Denied, Executed, Paused …).
    pub decision: Happened,
    /// The reason in words (the gate's or the pause's message).
    pub message: String,
    /// Every object the request would write or select, as `Kind namespace/name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effect: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_approvals: Option<u32>,
    /// Who may approve: the agent's approvers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approver_users: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
    /// Who approved so far (or decided).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// When a pending request expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The command to act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The content hash of the request this notice shows (`signature::request_content`): its
    /// command and link approve exactly that content, and nothing the action became since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The notice a decision-log line makes, if any: its kind by what happened, except the pauses and
/// resumes the kill switch causes — one KillSwitch notice tells those, not one per agent.
pub fn notice_kind(e: &crate::decisionlog::Entry) -> Option<NoticeKind> {
    let by_kill_switch = e.policy.as_deref() == Some(socwarden_api::conditions::reason::KILL_SWITCH);
    match e.decision {
        Happened::Paused | Happened::Resumed if by_kill_switch => None,
        d => d.notice(),
    }
}

/// What is wrong with a Notifier's spec, each in words that say how to fix it (empty: it can
/// deliver). The CRD's validation rules refuse most of these in the API server's own words; the
/// status still says them for a Notifier stored before those rules, or through a CRD without them.
pub fn problems(spec: &NotifierSpec) -> Vec<String> {
    let http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    let mut p = Vec::new();
    match (&spec.url, &spec.url_secret_ref) {
        (None, None) => p.push(socwarden_api::URL_MISSING.into()),
        (Some(_), Some(_)) => p.push(socwarden_api::URL_TWICE.into()),
        (Some(u), None) if !http(u) => p.push(format!("url {u} is not an http:// or https:// URL")),
        _ => {}
    }
    if spec.format == NoticeFormat::Webhook && spec.secret_ref.is_none() {
        p.push(socwarden_api::WEBHOOK_UNSIGNED.into());
    }
    for (field, r) in [("urlSecretRef", &spec.url_secret_ref), ("secretRef", &spec.secret_ref)] {
        if let Some(r) = r {
            p.extend(crate::envelope::secret_problem(field, &r.name));
        }
    }
    if let Some(c) = spec.console_url.as_deref().filter(|c| !http(c)) {
        p.push(format!("consoleUrl {c} is not an http:// or https:// URL"));
    }
    p
}

/// Whether the sink `spec` takes `n`: its event types, namespaces, agents and minimum risk
/// (a notice without a risk, about an agent, passes the risk filter; a cluster-wide notice —
/// the kill switch — concerns every namespace and agent, so their filters pass it).
pub fn routes(spec: &NotifierSpec, n: &Notice) -> bool {
    let Some(kind) = n.kind else { return false };
    let cluster_wide = n.namespace.is_empty();
    (spec.events.is_empty() || spec.events.contains(&kind))
        && (spec.namespaces.is_empty() || cluster_wide || spec.namespaces.contains(&n.namespace))
        && (spec.agents.is_empty() || cluster_wide || spec.agents.contains(&n.agent))
        && match (spec.min_risk, n.risk) {
            (Some(min), Some(r)) => r >= min,
            _ => true,
        }
}

/// The command that acts on the notice: approve a pending request, explain a paused agent.
pub fn command(n: &Notice) -> Option<String> {
    match (n.kind?, &n.request) {
        (NoticeKind::RequestPending | NoticeKind::RequestExpiring, Some(r)) => Some(match &n.content {
            Some(seen) => format!("kubectl warden approve {r} -n {} --seen {seen}", n.namespace),
            // Without the content it shows what runs and approves nothing.
            None => format!("kubectl warden approve {r} -n {}", n.namespace),
        }),
        (NoticeKind::AgentPaused, _) => Some(format!("kubectl warden explain {} -n {}", n.agent, n.namespace)),
        (NoticeKind::PromotionPending, _) => Some(format!("kubectl warden promote {} -n {}", n.agent, n.namespace)),
        _ => None,
    }
}

/// The same for every delivery of one notice to one sink, retries included, so a receiver
/// drops duplicates; different for each sink and each transition.
pub fn idempotency_key(notifier: &str, n: &Notice) -> String {
    let text = format!(
        "{notifier}\n{}\n{}\n{}\n{}\n{}\n{}",
        n.kind.map(|k| k.as_str()).unwrap_or_default(),
        n.namespace,
        n.agent,
        n.request.as_deref().unwrap_or_default(),
        n.decision,
        n.time
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// When a pending request filed at `created` and expiring at `expires` is said to expire soon:
/// once 80% of its time has passed.
pub fn expiring_at(created: jiff::Timestamp, expires: jiff::Timestamp) -> jiff::Timestamp {
    let total = expires.duration_since(created);
    created.checked_add(total.checked_mul(4).unwrap_or(total) / 5).unwrap_or(expires)
}

/// A link to the notice's page in the approval console, if its URL is known.
pub fn link(console: Option<&str>, n: &Notice) -> Option<String> {
    let base = console?.trim_end_matches('/');
    Some(match (&n.request, &n.content) {
        // The page compares the content the notice showed with the request's now.
        (Some(r), Some(seen)) => format!("{base}/requests/{}/{r}?seen={seen}", n.namespace),
        (Some(r), None) => format!("{base}/requests/{}/{r}", n.namespace),
        (None, _) if n.agent.is_empty() => format!("{base}/fleet"),
        (None, _) => format!("{base}/agents/{}/{}", n.namespace, n.agent),
    })
}

/// One line saying what happened.
pub fn headline(n: &Notice) -> String {
    let what = match (&n.action, &n.request) {
        (Some(a), Some(r)) => format!("{a} ({r})"),
        _ => String::new(),
    };
    let risk = n.risk.map(|r| format!(", {r} risk")).unwrap_or_default();
    match n.kind {
        Some(NoticeKind::RequestPending) => {
            format!("Approval needed: {} asks to run {what}{risk} in {}", n.agent, n.namespace)
        }
        Some(NoticeKind::RequestExpiring) => {
            format!("Expiring soon: {what}{risk} of {} in {} still waits for approval", n.agent, n.namespace)
        }
        Some(NoticeKind::RequestDecided) => format!("{}: {what} of {} in {}", n.decision, n.agent, n.namespace),
        Some(NoticeKind::RequestExecuted) => format!("{}: {what} of {} in {}", n.decision, n.agent, n.namespace),
        Some(NoticeKind::RequestFailed) => format!("Execution failed: {what} of {} in {}", n.agent, n.namespace),
        Some(NoticeKind::AgentPaused) => format!("Agent paused: {} in {}", n.agent, n.namespace),
        Some(NoticeKind::AgentResumed) => format!("Agent resumed: {} in {}", n.agent, n.namespace),
        Some(NoticeKind::TierChanged) => format!("{}: {} in {}", n.decision, n.agent, n.namespace),
        Some(NoticeKind::PromotionPending) => format!("Promotion waiting: {} in {}", n.agent, n.namespace),
        Some(NoticeKind::KillSwitch) if n.decision == Happened::KillSwitchOn => {
            "KILL SWITCH ON: every agent is paused".to_string()
        }
        Some(NoticeKind::KillSwitch) => "Kill switch off: agents resume".to_string(),
        None => n.message.clone(),
    }
}

/// Facts worth a line each, in order.
fn facts(n: &Notice) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(r) = n.required_approvals {
        let from: Vec<String> = n
            .approver_users
            .iter()
            .map(|u| format!("user {u}"))
            .chain(n.approver_groups.iter().map(|g| format!("group {g}")))
            .collect();
        f.push(("Needs", format!("{r} approval(s) from {}", from.join(", "))));
    }
    if !n.approved_by.is_empty() {
        f.push(("Approved by", n.approved_by.join(", ")));
    }
    if !n.effect.is_empty() {
        f.push(("Effect", n.effect.join("; ")));
    }
    if let Some(d) = &n.deadline {
        f.push(("Deadline", d.clone()));
    }
    f
}

/// What the sink is sent for `n`.
pub fn body(format: NoticeFormat, n: &Notice, console: Option<&str>) -> serde_json::Value {
    let mut n = n.clone();
    n.command = n.command.clone().or_else(|| command(&n));
    let link = link(console, &n);
    match format {
        NoticeFormat::Webhook => {
            let mut v = serde_json::to_value(&n).unwrap_or_default();
            if let (Some(l), Some(o)) = (link, v.as_object_mut()) {
                o.insert("link".into(), l.into());
            }
            v
        }
        NoticeFormat::Slack => slack(&n, link.as_deref()),
        NoticeFormat::Teams => teams(&n, link.as_deref()),
    }
}

/// Agent-supplied text (a justification, a parameter, a target's name, the gate's message that
/// quotes them, an effect's names) as a chat client shows it: the text itself, with the scheme of
/// every URL defanged (`https://` becomes `hxxps://`, as SOCs write indicators) so that no client
/// turns it into a live link even where it links bare URLs. It must still go only into elements
/// that render no Markdown (Slack `plain_text`, Adaptive Card `TextRun`): this function does not
/// escape Markdown, mentions or formatting, the element type does.
pub fn defang(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i);
        // The scheme: the letters right before "://".
        let scheme_len = before.chars().rev().take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c)).count();
        let (head, scheme) = before.split_at(before.len() - scheme_len);
        out.push_str(head);
        out.push_str(&defang_scheme(scheme));
        out.push_str("[:]//");
        rest = &after[3..];
    }
    out.push_str(rest);
    out
}

/// `http` → `hxxp`, `https` → `hxxps` (any case); any other scheme as it is (its `://` is
/// defanged by the caller).
fn defang_scheme(scheme: &str) -> String {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => format!("hxxp{}", &scheme[4..]),
        _ => scheme.to_string(),
    }
}

/// A Slack `plain_text` object: Slack renders no formatting, link or mention in it (and turns no
/// `:name:` into an emoji).
fn slack_plain(text: &str, max: usize) -> serde_json::Value {
    serde_json::json!({"type": "plain_text", "text": truncate(&defang(text), max), "emoji": false})
}

/// A Slack incoming-webhook message: `text` (the notification fallback) and Block Kit blocks — a
/// header, the reason, the facts as label/value fields, the command, and a button to the console.
/// Every text that may carry an agent's words is `plain_text`; `mrkdwn` holds only our labels and
/// the command (names and flags, in a code span). `mrkdwn: false` keeps the fallback unformatted,
/// and no link is unfurled.
fn slack(n: &Notice, link: Option<&str>) -> serde_json::Value {
    let title = defang(&headline(n));
    let mut blocks = vec![serde_json::json!({"type": "header", "text": slack_plain(&title, 150)})];
    if !n.message.is_empty() {
        blocks.push(serde_json::json!({"type": "section", "text": slack_plain(&n.message, 3000)}));
    }
    let fields: Vec<serde_json::Value> = facts(n)
        .into_iter()
        .take(5)
        .flat_map(|(k, v)| [serde_json::json!({"type": "mrkdwn", "text": format!("*{k}*")}), slack_plain(&v, 2000)])
        .collect();
    if !fields.is_empty() {
        blocks.push(serde_json::json!({"type": "section", "fields": fields}));
    }
    if let Some(c) = &n.command {
        blocks.push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", slack_escape(c))}}));
    }
    if let Some(l) = link {
        blocks.push(serde_json::json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in the console"}, "url": l}
        ]}));
    }
    let footer = format!("SOC Warden · {} · {}", n.kind.map(|k| k.as_str()).unwrap_or_default(), n.time);
    blocks.push(serde_json::json!({"type": "context", "elements": [slack_plain(&footer, 2000)]}));
    serde_json::json!({"text": title, "mrkdwn": false, "unfurl_links": false, "unfurl_media": false, "blocks": blocks})
}

/// Slack's escaping for `mrkdwn` (`&`, `<`, `>`): for our own text only, since escaping leaves
/// `*bold*`, `_italic_` and `~strike~` live.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An Adaptive Card `RichTextBlock` of `TextRun`s: a `TextRun` renders no Markdown (a `TextBlock`
/// and a `FactSet` do), so an agent's `[text](url)` stays text. Each run is `(text, style)`.
fn teams_rich(runs: Vec<(String, serde_json::Value)>) -> serde_json::Value {
    let inlines: Vec<serde_json::Value> = runs
        .into_iter()
        .map(|(text, style)| {
            let mut run = serde_json::json!({"type": "TextRun", "text": defang(&text)});
            if let (Some(r), Some(s)) = (run.as_object_mut(), style.as_object()) {
                r.extend(s.clone());
            }
            run
        })
        .collect();
    serde_json::json!({"type": "RichTextBlock", "inlines": inlines})
}

/// A Microsoft Teams message for a Workflows (Power Automate) webhook: one Adaptive Card (1.4) —
/// the headline, the reason, the facts, the command in monospace, and a button to the console.
/// (Office 365 connector "message cards" are retired; Workflows take Adaptive Cards.) All text is
/// in `TextRun`s (see `teams_rich`); the only link is our console's, as the card's action.
fn teams(n: &Notice, link: Option<&str>) -> serde_json::Value {
    let title = defang(&headline(n));
    let alarm = match n.kind {
        Some(NoticeKind::RequestFailed | NoticeKind::AgentPaused) => true,
        Some(NoticeKind::KillSwitch) => n.decision == Happened::KillSwitchOn,
        _ => false,
    };
    let color = if alarm {
        "Attention"
    } else if n.kind == Some(NoticeKind::RequestPending) {
        "Warning"
    } else {
        "Default"
    };
    let mut body = vec![teams_rich(vec![(
        title.clone(),
        serde_json::json!({"weight": "Bolder", "size": "Medium", "color": color}),
    )])];
    if !n.message.is_empty() {
        body.push(teams_rich(vec![(n.message.clone(), serde_json::json!({}))]));
    }
    for (k, v) in facts(n) {
        body.push(teams_rich(vec![
            (format!("{k}: "), serde_json::json!({"weight": "Bolder"})),
            (v, serde_json::json!({})),
        ]));
    }
    if let Some(c) = &n.command {
        body.push(teams_rich(vec![(c.clone(), serde_json::json!({"fontType": "Monospace"}))]));
    }
    let mut card = serde_json::json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "fallbackText": title,
        "body": body,
    });
    if let Some(l) = link {
        card["actions"] = serde_json::json!([{"type": "Action.OpenUrl", "title": "Open in the console", "url": l}]);
    }
    serde_json::json!({
        "type": "message",
        "summary": title,
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max - 1).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Notice {
        Notice {
            kind: Some(NoticeKind::RequestPending),
            time: "2026-11-30T01:00:00Z".into(),
            namespace: "soc-agents".into(),
            agent: "triage-bot".into(),
            request: Some("isolate-web-1".into()),
            action: Some("isolate-pod".into()),
            risk: Some(Risk::High),
            decision: Happened::Pending,
            message: "needs 2 approval(s) <from> the agent's approvers & leads".into(),
            effect: vec!["NetworkPolicy web/isolate-web-1".into(), "Pod web/web-1".into()],
            required_approvals: Some(2),
            approver_groups: vec!["soc-leads".into()],
            deadline: Some("2026-11-30T01:15:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn decisions_become_notices() {
        use crate::decisionlog::Entry;
        let mut pause = Entry::new(Happened::Paused, "ns", "bot", "paused for drift");
        pause.policy = Some("Drift".into());
        assert_eq!(notice_kind(&pause), Some(NoticeKind::AgentPaused));
        for d in [Happened::Paused, Happened::Resumed] {
            let mut e = Entry::new(d, "ns", "bot", "");
            e.policy = Some("KillSwitch".into());
            assert_eq!(notice_kind(&e), None, "{d} by the kill switch: its own notice tells it once");
        }
    }

    #[test]
    fn a_request_expires_soon_at_80_percent_of_its_time() {
        let created: jiff::Timestamp = "2026-11-30T01:00:00Z".parse().unwrap();
        let expires: jiff::Timestamp = "2026-11-30T01:15:00Z".parse().unwrap();
        assert_eq!(expiring_at(created, expires).to_string(), "2026-11-30T01:12:00Z");
        assert_eq!(expiring_at(expires, expires), expires, "no time: at once");
        assert_eq!(Happened::Expiring.notice(), Some(NoticeKind::RequestExpiring));
        let n = Notice { kind: Some(NoticeKind::RequestExpiring), ..pending() };
        assert!(command(&n).unwrap().starts_with("kubectl warden approve isolate-web-1"));
        assert!(headline(&n).starts_with("Expiring soon"));
    }

    #[test]
    fn routing_by_type_namespace_agent_and_risk() {
        let n = pending();
        let all = NotifierSpec::default();
        let cases = [
            (all.clone(), true, "no filter takes everything"),
            (NotifierSpec { events: vec![NoticeKind::AgentPaused], ..all.clone() }, false, "other type"),
            (NotifierSpec { events: vec![NoticeKind::RequestPending], ..all.clone() }, true, "its type"),
            (NotifierSpec { namespaces: vec!["other".into()], ..all.clone() }, false, "other namespace"),
            (NotifierSpec { agents: vec!["triage-bot".into()], ..all.clone() }, true, "its agent"),
            (NotifierSpec { agents: vec!["other".into()], ..all.clone() }, false, "other agent"),
            (NotifierSpec { min_risk: Some(Risk::Critical), ..all.clone() }, false, "below min risk"),
            (NotifierSpec { min_risk: Some(Risk::High), ..all.clone() }, true, "at min risk"),
        ];
        for (spec, want, case) in cases {
            assert_eq!(routes(&spec, &n), want, "{case}");
        }
        let paused = Notice { kind: Some(NoticeKind::AgentPaused), risk: None, ..pending() };
        assert!(
            routes(&NotifierSpec { min_risk: Some(Risk::Critical), ..all }, &paused),
            "an agent notice has no risk and passes"
        );
        assert!(!routes(&NotifierSpec::default(), &Notice::default()), "a notice of no kind goes nowhere");
        let kill =
            Notice { kind: Some(NoticeKind::KillSwitch), decision: Happened::KillSwitchOn, ..Default::default() };
        let narrow = NotifierSpec {
            namespaces: vec!["payments".into()],
            agents: vec!["triage-bot".into()],
            ..Default::default()
        };
        assert!(routes(&narrow, &kill), "the kill switch concerns every namespace and agent");
        assert!(
            !routes(&NotifierSpec { events: vec![NoticeKind::AgentPaused], ..narrow }, &kill),
            "but not every type"
        );
        assert_eq!(headline(&kill), "KILL SWITCH ON: every agent is paused");
        assert_eq!(link(Some("http://127.0.0.1:8181"), &kill).as_deref(), Some("http://127.0.0.1:8181/fleet"));
    }

    /// Attack 10: what a chat notice offers to approve is the content it showed, in the command
    /// and in the console link; without a content the command only shows what runs.
    #[test]
    fn the_command_and_the_link_carry_the_content_the_notice_shows() {
        let seen = "ab".repeat(32);
        let n = Notice { content: Some(seen.clone()), ..pending() };
        assert_eq!(
            command(&n).as_deref(),
            Some(format!("kubectl warden approve isolate-web-1 -n soc-agents --seen {seen}").as_str())
        );
        assert_eq!(
            link(Some("http://127.0.0.1:8181/"), &n).as_deref(),
            Some(format!("http://127.0.0.1:8181/requests/soc-agents/isolate-web-1?seen={seen}").as_str())
        );
        assert!(!command(&pending()).unwrap().contains("--seen"));
        assert!(!link(Some("http://c"), &pending()).unwrap().contains("seen="));
    }

    #[test]
    fn the_command_approves_a_pending_request_or_explains_a_pause() {
        assert_eq!(command(&pending()).as_deref(), Some("kubectl warden approve isolate-web-1 -n soc-agents"));
        let paused = Notice { kind: Some(NoticeKind::AgentPaused), ..pending() };
        assert_eq!(command(&paused).as_deref(), Some("kubectl warden explain triage-bot -n soc-agents"));
        let decided = Notice { kind: Some(NoticeKind::RequestDecided), ..pending() };
        assert_eq!(command(&decided), None);
        let promotion = Notice { kind: Some(NoticeKind::PromotionPending), request: None, ..pending() };
        assert_eq!(command(&promotion).as_deref(), Some("kubectl warden promote triage-bot -n soc-agents"));
    }

    #[test]
    fn idempotency_key_is_per_sink_and_transition() {
        let n = pending();
        assert_eq!(idempotency_key("a", &n), idempotency_key("a", &n));
        assert_ne!(idempotency_key("a", &n), idempotency_key("b", &n));
        let approved = Notice { kind: Some(NoticeKind::RequestDecided), decision: Happened::Approved, ..pending() };
        assert_ne!(idempotency_key("a", &n), idempotency_key("a", &approved));
        assert_eq!(idempotency_key("a", &n).len(), 32);
    }

    #[test]
    fn the_webhook_body_carries_everything_an_approver_needs() {
        let v = body(NoticeFormat::Webhook, &pending(), Some("http://127.0.0.1:8080/"));
        assert_eq!(v["type"], "RequestPending");
        assert_eq!(v["risk"], "high");
        assert_eq!(v["requiredApprovals"], 2);
        assert_eq!(v["approverGroups"][0], "soc-leads");
        assert_eq!(v["effect"][1], "Pod web/web-1");
        assert_eq!(v["deadline"], "2026-11-30T01:15:00Z");
        assert_eq!(v["command"], "kubectl warden approve isolate-web-1 -n soc-agents");
        assert_eq!(v["link"], "http://127.0.0.1:8080/requests/soc-agents/isolate-web-1");
    }

    #[test]
    fn the_slack_message_is_block_kit_within_its_limits() {
        let v = body(NoticeFormat::Slack, &pending(), Some("http://127.0.0.1:8080"));
        assert!(v["text"].as_str().unwrap().starts_with("Approval needed: triage-bot"));
        assert_eq!(v["mrkdwn"], false, "the fallback text is not formatted");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text", "a header takes plain text only");
        assert_eq!(blocks[1]["text"]["type"], "plain_text", "the reason quotes the agent: plain text");
        assert_eq!(blocks[1]["text"]["text"], "needs 2 approval(s) <from> the agent's approvers & leads");
        let fields = blocks[2]["fields"].as_array().unwrap();
        assert!(fields.len() <= 10, "a section holds at most 10 fields");
        assert_eq!(fields[0]["text"], "*Needs*", "our label");
        assert_eq!(
            (fields[1]["type"].as_str(), fields[1]["text"].as_str()),
            (Some("plain_text"), Some("2 approval(s) from group soc-leads"))
        );
        assert!(
            blocks.iter().any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("kubectl warden approve")))
        );
        let button = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(button["elements"][0]["url"], "http://127.0.0.1:8080/requests/soc-agents/isolate-web-1");
        assert_eq!(blocks.last().unwrap()["type"], "context");
        let long = Notice { action: Some("x".repeat(400)), ..pending() };
        let v = body(NoticeFormat::Slack, &long, None);
        assert!(v["blocks"][0]["text"]["text"].as_str().unwrap().chars().count() <= 150, "header text ≤ 150");
    }

    #[test]
    fn the_teams_message_is_an_adaptive_card() {
        let v = body(NoticeFormat::Teams, &pending(), Some("http://127.0.0.1:8080"));
        assert_eq!(v["type"], "message");
        let a = &v["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &a["content"];
        assert_eq!((card["type"].as_str(), card["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
        let body = card["body"].as_array().unwrap();
        let run = |b: &serde_json::Value, i: usize| b["inlines"][i].clone();
        assert!(run(&body[0], 0)["text"].as_str().unwrap().contains("isolate-pod"));
        assert_eq!(run(&body[0], 0)["color"], "Warning");
        assert!(
            body.iter()
                .any(|b| run(b, 0)["text"] == "Needs: " && run(b, 1)["text"] == "2 approval(s) from group soc-leads")
        );
        assert!(
            body.iter().any(
                |b| run(b, 0)["fontType"] == "Monospace" && run(b, 0)["text"].as_str().unwrap().contains("approve")
            )
        );
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(card["actions"][0]["url"], "http://127.0.0.1:8080/requests/soc-agents/isolate-web-1");
    }

    #[test]
    fn defang_breaks_every_url_scheme_and_nothing_else() {
        for (text, want) in [
            ("https://approve.evil.example/x", "hxxps[:]//approve.evil.example/x"),
            ("[Approve](HTTP://evil.example)", "[Approve](hxxp[:]//evil.example)"),
            ("ftp://x and mailto:a@b", "ftp[:]//x and mailto:a@b"),
            ("a://b://c", "a[:]//b[:]//c"),
            ("no url: 10.0.0.1/32 <!channel> *b*", "no url: 10.0.0.1/32 <!channel> *b*"),
            ("é://ü", "é[:]//ü"),
            ("://", "[:]//"),
        ] {
            assert_eq!(defang(text), want, "{text}");
        }
    }

    /// Every string of `v` with the object that holds it and its key.
    fn strings<'a>(
        v: &'a serde_json::Value,
        parent: &'a serde_json::Value,
        key: &'a str,
        out: &mut Vec<(&'a serde_json::Value, &'a str, &'a str)>,
    ) {
        match v {
            serde_json::Value::String(s) => out.push((parent, key, s)),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, parent, key, out)),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| strings(x, v, k, out)),
            _ => {}
        }
    }

    /// An agent's words built to phish, mention and format, where they reach a notice: the gate's
    /// message that quotes a parameter, and the effect (a parameter naming a target).
    fn phishing() -> Notice {
        let bait = "[Approve in the SOC console](https://approve.evil.example/ok) <!channel> @here <https://approve.evil.example/b|Approve> *bold* _it_ ~s~ `code` **strong**";
        Notice {
            message: format!("parameter account = {bait:?} does not match \"[a-z]+\""),
            effect: vec![format!("User {bait} (parameter account)")],
            ..pending()
        }
    }

    #[test]
    fn an_agents_links_mentions_and_formatting_reach_chat_only_as_plain_text() {
        let console = "http://127.0.0.1:8080";
        let slack = body(NoticeFormat::Slack, &phishing(), Some(console));
        let mut all = Vec::new();
        strings(&slack, &slack, "", &mut all);
        let carriers: Vec<_> = all.iter().filter(|(_, _, s)| s.contains("approve.evil")).collect();
        assert!(carriers.len() >= 2, "the reason and the effect are shown: {slack}");
        for (parent, key, s) in &carriers {
            assert_eq!(
                (*key, parent["type"].as_str()),
                ("text", Some("plain_text")),
                "Slack formats {s:?} unless it is plain_text"
            );
            assert!(!s.contains("https://"), "a bare URL would be linked: {s}");
        }
        for (parent, key, s) in &all {
            if parent["type"] == "mrkdwn" {
                assert!(!s.contains("evil") && !s.contains("@here") && !s.contains("<!"), "{key}: {s}");
            }
        }
        let urls: Vec<_> = all.iter().filter(|(_, k, _)| *k == "url").map(|(_, _, s)| *s).collect();
        assert_eq!(urls, ["http://127.0.0.1:8080/requests/soc-agents/isolate-web-1"], "the only link is ours");

        let teams = body(NoticeFormat::Teams, &phishing(), Some(console));
        let mut all = Vec::new();
        strings(&teams, &teams, "", &mut all);
        let carriers: Vec<_> = all.iter().filter(|(_, _, s)| s.contains("approve.evil")).collect();
        assert!(carriers.len() >= 2, "the reason and the effect are shown: {teams}");
        for (parent, key, s) in &carriers {
            assert_eq!(
                (*key, parent["type"].as_str()),
                ("text", Some("TextRun")),
                "Teams renders Markdown in {s:?} unless in a TextRun"
            );
            assert!(parent.get("selectAction").is_none() && !s.contains("https://"), "{s}");
        }
        for (parent, _, _) in &all {
            assert!(
                !matches!(parent["type"].as_str(), Some("TextBlock" | "FactSet")),
                "Markdown-rendering element in {teams}"
            );
        }
        let urls: Vec<_> = all.iter().filter(|(_, k, _)| *k == "url").map(|(_, _, s)| *s).collect();
        assert_eq!(urls, ["http://127.0.0.1:8080/requests/soc-agents/isolate-web-1"], "the only link is ours");

        // The signed webhook is data for a program: the words verbatim, as JSON strings.
        let hook = body(NoticeFormat::Webhook, &phishing(), Some(console));
        assert_eq!(hook["message"], phishing().message.as_str());
        assert_eq!(hook["link"], "http://127.0.0.1:8080/requests/soc-agents/isolate-web-1");
    }
}
