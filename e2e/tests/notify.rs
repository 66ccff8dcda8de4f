//! Notices to approvers: a real HTTP receiver started by the test takes the operator's deliveries
//! for a signed webhook Notifier and a Slack-formatted one, checks every signature, answers the
//! first delivery of each notice with a 500 (the operator must retry with the same
//! Idempotency-Key), and records what arrived.

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, SocAgent, Tier};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"notifier test key: not a secret anywhere else";

/// One delivery as it arrived.
#[derive(Clone, Debug)]
struct Arrival {
    path: String,
    event: String,
    idempotency_key: String,
    signature_ok: Option<bool>,
    body: Value,
    answered: u16,
}

/// The receiver: fails the first delivery of each idempotency key with a 500, accepts the rest.
struct Receiver {
    port: u16,
    arrived: Arc<Mutex<Vec<Arrival>>>,
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, body).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    async fn start() -> Result<Self> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let r = Receiver { port: listener.local_addr()?.port(), arrived: Default::default() };
        let arrived = r.arrived.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let arrived = arrived.clone();
                tokio::spawn(async move {
                    let Ok((head, body)) = endpoint::read_request(&mut s).await else { return };
                    let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                    let key = endpoint::header(&head, "idempotency-key").unwrap_or_default();
                    let signature_ok = endpoint::header(&head, "x-soc-warden-signature")
                        .map(|sig| sig == format!("sha256={}", hmac_hex(KEY, &body)));
                    let answered = {
                        let mut all = arrived.lock().unwrap();
                        let seen = all.iter().any(|a: &Arrival| a.idempotency_key == key);
                        let answered = if seen { 200 } else { 500 };
                        all.push(Arrival {
                            path,
                            event: endpoint::header(&head, "x-soc-warden-event").unwrap_or_default(),
                            idempotency_key: key,
                            signature_ok,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            answered,
                        });
                        answered
                    };
                    let line = if answered == 200 { "200 OK" } else { "500 Internal Server Error" };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {line}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        Ok(r)
    }

    fn arrived(&self) -> Vec<Arrival> {
        self.arrived.lock().unwrap().clone()
    }

    /// The accepted deliveries on `path` of notices of `event` about request `request`.
    async fn wait(&self, path: &str, event: &str, pred: impl Fn(&Value) -> bool) -> Result<Arrival> {
        wait_for(&format!("{event} delivered to {path}"), T, || async {
            Ok(self
                .arrived()
                .into_iter()
                .find(|a| a.path == path && a.event == event && a.answered == 200 && pred(&a.body)))
        })
        .await
    }
}

#[tokio::test]
async fn approvers_are_told_of_a_pending_request_and_of_its_decision_signed_and_retried() -> Result<()> {
    if external_cluster() {
        bail!("the receiver listens on this machine's loopback, which only the local control plane's operator reaches");
    }
    let s = Scene::new().await?;
    let home = s.home().to_string();
    let receiver = Receiver::start().await?;
    let key_secret = unique("notify-key");
    ensure_namespace(&s.admin, OPERATOR_NAMESPACE).await?;
    Api::<Secret>::namespaced(s.admin.clone(), OPERATOR_NAMESPACE)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": key_secret}, "stringData": {"hmac": String::from_utf8_lossy(KEY)}}),
            )?,
        )
        .await?;
    let (hook, slack, teams, invalid) = (unique("hook"), unique("slack"), unique("teams"), unique("invalid"));
    let base = format!("http://127.0.0.1:{}", receiver.port);
    apply_yaml(
        &s.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {hook}}}\nspec:\n  format: webhook\n  url: {base}/hook\n  secretRef: {{name: {key_secret}, key: hmac}}\n  namespaces: [{home}]\n  consoleUrl: http://127.0.0.1:8181\n---\napiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {slack}}}\nspec:\n  format: slack\n  url: {base}/slack\n  events: [RequestPending]\n  namespaces: [{home}]\n  minRisk: medium\n---\napiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {teams}}}\nspec:\n  format: teams\n  url: {base}/teams\n  events: [RequestPending, KillSwitch]\n  namespaces: [{home}]\n  consoleUrl: http://127.0.0.1:8181\n---\napiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {invalid}}}\nspec:\n  format: webhook\n  url: {base}/invalid\n  secretRef: {{name: {key_secret}, key: hmac}}\n  namespaces: [{home}]\n  consoleUrl: \"javascript:alert(1)\"\n"
        ),
    )
    .await?;
    let isolate = unique("isolate");
    apply_yaml(&s.admin, &isolate_action_yaml(&isolate, "high")).await?;
    let op = Operator::start().await?;
    let bot = s.gated_bot(&isolate).await?;
    let request: ActionRequest = serde_json::from_value(json!({"metadata": {"name": "isolate-web-1"},
        "spec": {"agent": "bot", "action": isolate, "parameters": {"app": "web"},
            "target": {"kind": "Pod", "name": "web-1", "namespace": home}}}))?;
    Api::<ActionRequest>::namespaced(bot, &home).create(&PostParams::default(), &request).await?;

    // Pending: the approvers learn what waits, from whom it needs what, and the command.
    let is_ours = |b: &Value| b["request"] == "isolate-web-1" && b["namespace"] == home.as_str();
    let pending = receiver.wait("/hook", "RequestPending", is_ours).await?;
    let b = &pending.body;
    assert_eq!(b["type"], "RequestPending", "{b}");
    assert_eq!(b["agent"], "bot");
    assert_eq!(b["action"], isolate.as_str());
    assert_eq!(b["risk"], "high");
    assert_eq!(b["requiredApprovals"], 2, "{b}");
    assert_eq!(b["approverGroups"], json!(["soc-leads"]), "{b}");
    assert!(b["deadline"].as_str().is_some_and(|d| !d.is_empty()), "a deadline: {b}");
    assert!(
        b["effect"].as_array().is_some_and(|e| e.iter().any(|o| o
            .as_str()
            .unwrap_or_default()
            .contains("NetworkPolicy")
            && o.as_str().unwrap_or_default().contains("isolate-web"))),
        "the effect set names what the execution writes: {b}"
    );
    // The command and the link approve the content the notice shows, and nothing it becomes.
    let content = shown(&s.admin, &home, "isolate-web-1").await?;
    assert_eq!(b["content"], content.as_str(), "{b}");
    assert_eq!(b["command"], format!("kubectl warden approve isolate-web-1 -n {home} --seen {content}"));
    assert_eq!(b["link"], format!("http://127.0.0.1:8181/requests/{home}/isolate-web-1?seen={content}"));

    // Every delivery was signed with the Secret's key; the first try was answered 500 and the
    // retry carried the same Idempotency-Key.
    let tries: Vec<Arrival> =
        receiver.arrived().into_iter().filter(|a| a.idempotency_key == pending.idempotency_key).collect();
    assert!(tries.len() >= 2 && tries[0].answered == 500, "retried after a 500: {tries:?}");
    assert!(tries.iter().all(|t| t.signature_ok == Some(true)), "every try signed with the key: {tries:?}");

    // The Slack-formatted sink got the same notice as Block Kit (it takes RequestPending only).
    let slack_msg = receiver
        .wait("/slack", "RequestPending", |b| b["text"].as_str().is_some_and(|t| t.contains("isolate-web-1")))
        .await?;
    let blocks = slack_msg.body["blocks"].as_array().cloned().unwrap_or_default();
    assert_eq!(blocks.first().map(|b| b["type"].clone()), Some(json!("header")), "{}", slack_msg.body);
    assert!(
        blocks
            .iter()
            .any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("kubectl warden approve isolate-web-1"))),
        "{}",
        slack_msg.body
    );
    assert_eq!(slack_msg.signature_ok, None, "no key, no signature header");
    let wrong = soc_warden_e2e::chat::slack_problems(&slack_msg.body)?;
    assert!(wrong.is_empty(), "Slack's SDK refuses the message: {wrong:?}\n{}", slack_msg.body);
    // The Teams sink got it as an Adaptive Card, valid under the published schema.
    let card = receiver.wait("/teams", "RequestPending", |b| b.to_string().contains("isolate-web-1")).await?;
    let wrong = soc_warden_e2e::chat::teams_problems(&card.body)?;
    assert!(wrong.is_empty(), "the Adaptive Card schema refuses the message: {wrong:?}\n{}", card.body);
    let content = &card.body["attachments"][0]["content"];
    assert_eq!(b["link"], content["actions"][0]["url"], "the card links to the content it shows");
    let no_text = json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock"}]}}]});
    assert!(!soc_warden_e2e::chat::teams_problems(&no_text)?.is_empty(), "the schema refuses a TextBlock without text");
    let too_long =
        json!({"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]});
    assert!(!soc_warden_e2e::chat::slack_problems(&too_long)?.is_empty(), "the judge refuses what Slack refuses");

    // Two leads approve with the notice's command: the decision is told with who approved.
    let command = b["command"].as_str().unwrap_or_default().to_string();
    let args: Vec<&str> = command.strip_prefix("kubectl warden ").unwrap_or_default().split_whitespace().collect();
    for lead in ["lead-a", "lead-b"] {
        let (ok, out) = kubectl_warden(lead, &args)?;
        assert!(ok, "{out}");
    }
    wait_for("approved", T, || async {
        let r = Api::<ActionRequest>::namespaced(s.admin.clone(), &home).get("isolate-web-1").await?;
        Ok((r.status.and_then(|s| s.decision) == Some(Decision::Approved)).then_some(()))
    })
    .await?;
    let decided = receiver.wait("/hook", "RequestDecided", |b| is_ours(b) && b["decision"] == "Approved").await?;
    let by: Vec<String> =
        decided.body["approvedBy"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(by.contains(&"lead-a".to_string()) && by.contains(&"lead-b".to_string()), "{}", decided.body);
    let executed = receiver.wait("/hook", "RequestExecuted", |b| is_ours(b) && b["decision"] == "Executed").await?;
    assert!(executed.body["message"].as_str().is_some_and(|m| m.contains("isolate-web")), "{}", executed.body);
    assert!(
        !receiver.arrived().iter().any(|a| a.path == "/slack" && a.event != "RequestPending"),
        "the Slack sink takes pending requests only"
    );

    // A request nobody decides: told at 80% of its time (8 of 10 s), then told it expired.
    let fast = unique("fast");
    apply_yaml(&s.admin, &format!("apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {fast}}}\nspec: {{approvals: {{timeout: 10s}}}}\n")).await?;
    let mut slow = agent("slow", &home, Tier::Supervised, &[&isolate], &[&home]);
    slow.spec.approvers.groups = vec!["soc-leads".into()];
    slow.spec.policy_ref = fast;
    apply(&Api::<SocAgent>::namespaced(s.admin.clone(), &home), &slow).await?;
    wait_agent(&s.admin, &home, "slow", "Ready", T, ready).await?;
    let slow_token = with_token(&agent_token(&s.admin, &home, "slow").await?.unwrap()).await?;
    let late: ActionRequest = serde_json::from_value(json!({"metadata": {"name": "isolate-web-2"},
        "spec": {"agent": "slow", "action": isolate, "parameters": {"app": "web-2"},
            "target": {"kind": "Pod", "name": "web-2", "namespace": home}}}))?;
    Api::<ActionRequest>::namespaced(slow_token, &home).create(&PostParams::default(), &late).await?;
    let is_late = |b: &Value| b["request"] == "isolate-web-2" && b["namespace"] == home.as_str();
    let pending2 = receiver.wait("/hook", "RequestPending", is_late).await?;
    let expiring = receiver.wait("/hook", "RequestExpiring", is_late).await?;
    let expired = receiver.wait("/hook", "RequestDecided", |b| is_late(b) && b["decision"] == "Expired").await?;
    let at = |a: &Arrival| a.body["time"].as_str().unwrap_or_default().parse::<jiff::Timestamp>().ok();
    let expiring_command = expiring.body["command"].as_str().unwrap_or_default();
    assert!(
        expiring_command.starts_with(&format!("kubectl warden approve isolate-web-2 -n {home} --seen ")),
        "{expiring_command}"
    );
    assert_eq!(expiring.body["time"], pending2.body["deadline"], "an expiring notice is dated at the deadline");
    let (told, decided_at) = (at(&pending2).unwrap(), at(&expired).unwrap());
    let soon = receiver
        .arrived()
        .iter()
        .filter(|a| a.event == "RequestExpiring" && is_late(&a.body))
        .map(|a| a.idempotency_key.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(soon.len(), 1, "one expiring notice, retried under one key");
    assert!(decided_at.duration_since(told).as_secs_f64() >= 9.0, "expired after its 10 s: {told} → {decided_at}");

    // A promotion starts to wait (the tier raised, as Git would): the approvers are told what it
    // still needs, with the command that approves it and the agent's page in the console.
    Api::<SocAgent>::namespaced(s.admin.clone(), &home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"tier": "autonomous"}})))
        .await?;
    let is_bot = |b: &Value| b["agent"] == "bot" && b["namespace"] == home.as_str();
    let waiting = receiver.wait("/hook", "PromotionPending", is_bot).await?;
    assert_eq!(waiting.body["command"], format!("kubectl warden promote bot -n {home}"), "{}", waiting.body);
    assert_eq!(waiting.body["link"], format!("http://127.0.0.1:8181/agents/{home}/bot"));
    let why = waiting.body["message"].as_str().unwrap_or_default();
    assert!(why.contains("supervised → autonomous") && why.contains("dwell"), "{why}");

    // The kill switch: one notice when it goes on and one when it goes off, to every sink that
    // takes the type whatever its namespaces — not one notice per paused agent.
    let kill = KillSwitch::new();
    kill.set(&s.admin, true).await?;
    let names_it = |b: &Value| b["message"].as_str().is_some_and(|m| m.contains(&kill.name));
    let on = receiver.wait("/hook", "KillSwitch", |b| b["decision"] == "KillSwitchOn" && names_it(b)).await?;
    assert!(on.body["link"].as_str().is_some_and(|l| l.ends_with("/fleet")), "{}", on.body);
    let card = receiver.wait("/teams", "KillSwitch", |b| b.to_string().contains(&kill.name)).await?;
    let wrong = soc_warden_e2e::chat::teams_problems(&card.body)?;
    assert!(wrong.is_empty(), "{wrong:?}\n{}", card.body);
    for name in ["bot", "slow"] {
        wait_agent(&s.admin, &home, name, "paused", T, |a| {
            a.status.as_ref().and_then(|s| s.phase) == Some(socwarden_api::Phase::Paused)
        })
        .await?;
    }
    kill.set(&s.admin, false).await?;
    receiver.wait("/hook", "KillSwitch", |b| b["decision"] == "KillSwitchOff" && names_it(b)).await?;
    for name in ["bot", "slow"] {
        wait_agent(&s.admin, &home, name, "resumed", T, |a| {
            a.status.as_ref().and_then(|s| s.phase) == Some(socwarden_api::Phase::Active)
        })
        .await?;
    }
    let per_agent: Vec<Arrival> = receiver
        .arrived()
        .into_iter()
        .filter(|a| a.path == "/hook" && (a.event == "AgentPaused" || a.event == "AgentResumed"))
        .collect();
    assert!(per_agent.is_empty(), "the kill switch's pauses are told once, by its own notice: {per_agent:?}");
    // A pause by hand is told (the silence above is the kill switch's doing, not a deaf sink).
    let (ok, out) = kubectl_warden("lead-a", &["pause", "slow", "-n", &home])?;
    assert!(ok, "{out}");
    let paused =
        receiver.wait("/hook", "AgentPaused", |b| b["agent"] == "slow" && b["namespace"] == home.as_str()).await?;
    assert_eq!(paused.body["command"], format!("kubectl warden explain slow -n {home}"), "{}", paused.body);

    // A Notifier that cannot deliver says what to fix in its status (the CRD's rules refuse most
    // such Notifiers outright, e2e/tests/schema.rs; not this console link), and the valid ones say
    // they are.
    let valid = |name: String| {
        let admin = s.admin.clone();
        async move {
            let n = Api::<socwarden_api::Notifier>::all(admin).get(&name).await?;
            let c = n.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "Valid");
            Ok::<_, anyhow::Error>(c.map(|c| (c.status, c.message)))
        }
    };
    let (ok, why) = wait_for("the invalid Notifier's status", T, || valid(invalid.clone())).await?;
    assert!(ok == "False" && why.contains("consoleUrl javascript:alert(1) is not an http"), "{ok}: {why}");
    let (ok, why) = wait_for("the hook Notifier's status", T, || valid(hook.clone())).await?;
    assert_eq!(ok, "True", "{why}");
    assert!(!receiver.arrived().iter().any(|a| a.path == "/invalid"), "nothing is sent to an invalid Notifier");
    for n in [&hook, &slack, &teams, &invalid] {
        let _ = Api::<socwarden_api::Notifier>::all(s.admin.clone()).delete(n, &Default::default()).await;
    }

    let m = op.metrics().await?;
    let count = |outcome: &str| {
        m.lines()
            .find(|l| {
                l.starts_with(&format!("socwarden_notifications_total{{notifier=\"{hook}\",outcome=\"{outcome}\"}}"))
            })
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("delivered") >= 2.0 && count("retried") >= 2.0, "metrics:\n{m}");
    assert!(!m.contains(&format!("notifier=\"{invalid}\"")), "no delivery is even tried for an invalid Notifier:\n{m}");
    Ok(())
}

/// Attack: a phishing link in the approvers' channel. The agent writes a Markdown link, mentions
/// and formatting into a parameter that names a target (so into the request's effect, which the
/// notice shows) and into its justification; the Slack and Teams notices must carry them only as
/// text — judged by Slack's SDK and the Adaptive Card schema — and the only link is our console's.
#[tokio::test]
async fn an_agents_phishing_link_mentions_and_formatting_reach_the_approvers_inert() -> Result<()> {
    if external_cluster() {
        bail!("the receiver listens on this machine's loopback, which only the local control plane's operator reaches");
    }
    let s = Scene::new().await?;
    let home = s.home().to_string();
    let receiver = Receiver::start().await?;
    let (slack, teams) = (unique("slack"), unique("teams"));
    let base = format!("http://127.0.0.1:{}", receiver.port);
    apply_yaml(
        &s.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {slack}}}\nspec:\n  format: slack\n  url: {base}/slack\n  events: [RequestPending]\n  namespaces: [{home}]\n  consoleUrl: http://127.0.0.1:8181\n---\napiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {teams}}}\nspec:\n  format: teams\n  url: {base}/teams\n  events: [RequestPending]\n  namespaces: [{home}]\n  consoleUrl: http://127.0.0.1:8181\n"
        ),
    )
    .await?;
    // A free-text parameter naming a target: its value is part of the effect the notice shows.
    let disable = unique("disable");
    apply_yaml(
        &s.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {disable}}}\nspec:\n  risk: high\n  reversible: true\n  parameters: [{{name: account, type: string, required: true, targetKind: User}}]\n"
        ),
    )
    .await?;
    let _op = Operator::start().await?;
    let bot = s.gated_bot(&disable).await?;
    let bait = "[Approve in the SOC console](https://approve.evil.example/ok) <!channel> @here <https://approve.evil.example/b|Approve> *bold* _it_ ~s~ **strong**";
    let request: ActionRequest = serde_json::from_value(json!({"metadata": {"name": "disable-alice"},
        "spec": {"agent": "bot", "action": disable, "parameters": {"account": bait},
            "target": {"kind": "Pod", "name": "web-1", "namespace": home}, "justification": bait}}))?;
    Api::<ActionRequest>::namespaced(bot, &home).create(&PostParams::default(), &request).await?;

    let ours = format!("http://127.0.0.1:8181/requests/{home}/disable-alice");
    let markers = ["approve.evil.example", "<!channel>", "@here", "*bold*", "_it_", "~s~", "**strong**"];
    let slack_msg = receiver.wait("/slack", "RequestPending", |b| b.to_string().contains("disable-alice")).await?;
    let m = &slack_msg.body;
    assert!(m.to_string().contains("approve.evil.example"), "the approvers see what the agent wrote (as text): {m}");
    assert!(!m.to_string().contains("https://approve.evil"), "a bare URL a client would link: {m}");
    let wrong = soc_warden_e2e::chat::slack_problems(m)?;
    assert!(wrong.is_empty(), "Slack's SDK refuses the message: {wrong:?}\n{m}");
    // Our console link carries the content the notice shows (`?seen=`, as the command's `--seen`).
    let text = m.to_string();
    let seen = text
        .split("--seen ")
        .nth(1)
        .map(|t| t.chars().take_while(char::is_ascii_hexdigit).collect::<String>())
        .filter(|h| h.len() == 64)
        .ok_or_else(|| anyhow::anyhow!("no --seen hash in the command: {m}"))?;
    let ours = format!("{ours}?seen={seen}");
    let live = soc_warden_e2e::chat::slack_live(m, &markers, &[&ours])?;
    assert!(live.is_empty(), "live in Slack: {live:?}\n{m}");
    assert!(
        m["blocks"].as_array().is_some_and(|b| b.iter().any(|b| b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("kubectl warden approve disable-alice -n {home}"))))),
        "the command still comes through: {m}"
    );

    let card = receiver.wait("/teams", "RequestPending", |b| b.to_string().contains("disable-alice")).await?;
    let c = &card.body;
    assert!(c.to_string().contains("approve.evil.example"), "the approvers see what the agent wrote (as text): {c}");
    assert!(!c.to_string().contains("https://approve.evil"), "a bare URL a client would link: {c}");
    let wrong = soc_warden_e2e::chat::teams_problems(c)?;
    assert!(wrong.is_empty(), "the Adaptive Card schema refuses the message: {wrong:?}\n{c}");
    let live = soc_warden_e2e::chat::teams_live(c, &markers, &[&ours])?;
    assert!(live.is_empty(), "live in Teams: {live:?}\n{c}");
    assert_eq!(c["attachments"][0]["content"]["actions"][0]["url"], ours.as_str(), "our console link still works");

    // The judges see live text where it is: the same words in Markdown-rendering elements.
    let old_slack = json!({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": bait}}]});
    assert!(!soc_warden_e2e::chat::slack_live(&old_slack, &markers, &[&ours])?.is_empty(), "mrkdwn is live");
    let old_card = json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "FactSet", "facts": [{"title": "Effect", "value": bait}]},
            {"type": "TextBlock", "text": bait}]}}]});
    assert_eq!(
        soc_warden_e2e::chat::teams_live(&old_card, &markers, &[&ours])?.len(),
        2,
        "a Fact and a TextBlock render Markdown"
    );
    for n in [&slack, &teams] {
        let _ = Api::<socwarden_api::Notifier>::all(s.admin.clone()).delete(n, &Default::default()).await;
    }
    Ok(())
}

/// A receiver that takes one delivery every `every` and answers 429 to the rest, as a rate-limited
/// chat sink does; records the events it accepted.
async fn rate_limited(every: Duration) -> Result<(u16, Arc<Mutex<Vec<String>>>)> {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted: Arc<Mutex<Vec<String>>> = Default::default();
    let last: Arc<Mutex<Option<std::time::Instant>>> = Default::default();
    let seen = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (seen, last) = (seen.clone(), last.clone());
            tokio::spawn(async move {
                let Ok((head, body)) = endpoint::read_request(&mut s).await else { return };
                let ok = {
                    let mut l = last.lock().unwrap();
                    let ok = l.is_none_or(|t| t.elapsed() >= every);
                    if ok {
                        *l = Some(std::time::Instant::now());
                        let text = String::from_utf8_lossy(&body).to_string();
                        seen.lock().unwrap().push(format!(
                            "{} {text}",
                            endpoint::header(&head, "x-soc-warden-event").unwrap_or_default()
                        ));
                    }
                    ok
                };
                let line = if ok { "200 OK" } else { "429 Too Many Requests" };
                let _ = s
                    .write_all(format!("HTTP/1.1 {line}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                    .await;
            });
        }
    });
    Ok((port, accepted))
}

/// Hardening III (notices): one agent's stream of decisions pushes a rate-limited chat sink into
/// 429s; the request another agent's approvers must act on is still delivered, ahead of the flood.
#[tokio::test]
async fn a_flood_of_decisions_does_not_crowd_out_what_approvers_must_act_on() -> Result<()> {
    if external_cluster() {
        bail!("the receiver listens on this machine's loopback, which only the local control plane's operator reaches");
    }
    let s = Scene::new().await?;
    let (home, scope) = (s.home().to_string(), s.scope().to_string());
    let (port, accepted) = rate_limited(Duration::from_secs(3)).await?;
    let (chat, note, isolate) = (unique("chat"), unique("note"), unique("isolate"));
    apply_yaml(
        &s.admin,
        &format!(
            "apiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {chat}}}\nspec:\n  format: slack\n  url: http://127.0.0.1:{port}/chat\n  namespaces: [{home}]\n---\napiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {note}}}\nspec:\n  risk: low\n"
        ),
    )
    .await?;
    apply_yaml(&s.admin, &isolate_action_yaml(&isolate, "high")).await?;
    let _op = Operator::start().await?;
    let noisy = agent("noisy", &home, Tier::Supervised, &[&note], &[&scope]);
    apply(&Api::<SocAgent>::namespaced(s.admin.clone(), &home), &noisy).await?;
    wait_agent(&s.admin, &home, "noisy", "Ready", T, ready).await?;
    let noisy = with_token(&agent_token(&s.admin, &home, "noisy").await?.unwrap()).await?;
    let bot = s.gated_bot(&isolate).await?;
    for i in 0..50 {
        let r: ActionRequest = serde_json::from_value(json!({"metadata": {"name": format!("note-{i}")},
            "spec": {"agent": "noisy", "action": note, "target": {"kind": "Pod", "name": "web-1", "namespace": scope}}}))?;
        Api::<ActionRequest>::namespaced(noisy.clone(), &home).create(&PostParams::default(), &r).await?;
    }
    wait_for("the flood decided", T, || async {
        Ok((decision_of(&s.admin, &home, "note-49").await?.is_some()).then_some(()))
    })
    .await?;
    let request: ActionRequest = serde_json::from_value(json!({"metadata": {"name": "isolate-web-1"},
        "spec": {"agent": "bot", "action": isolate, "parameters": {"app": "web"},
            "target": {"kind": "Pod", "name": "web-1", "namespace": home}}}))?;
    Api::<ActionRequest>::namespaced(bot, &home).create(&PostParams::default(), &request).await?;
    let filed = std::time::Instant::now();
    wait_for("the pending request reached the approvers", Duration::from_secs(45), || async {
        Ok(accepted
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.starts_with("RequestPending") && a.contains("isolate-web-1"))
            .then_some(()))
    })
    .await?;
    let routine = accepted.lock().unwrap().iter().filter(|a| a.starts_with("RequestDecided")).count();
    println!(
        "pending notice delivered {:.1} s after filing, {routine} routine notices accepted before it",
        filed.elapsed().as_secs_f64()
    );
    Ok(())
}
