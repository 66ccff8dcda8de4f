//! The approval console in a real headless Chromium: two leads work the queue from their browsers
//! (each console acting with its own lead's kubeconfig), an analyst is offered no buttons, and the
//! console refuses what a hostile page or a rebound DNS name would send. Screenshots of every page
//! land in `target/e2e-artifacts`.

use anyhow::Result;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use soc_warden_e2e::browser::raw;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Approval, Decision, ExecutionState, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

async fn state(admin: &kube::Client, ns: &str, name: &str) -> Result<(Option<Decision>, Option<ExecutionState>)> {
    let s = Api::<ActionRequest>::namespaced(admin.clone(), ns).get(name).await?.status.unwrap_or_default();
    Ok((s.decision, s.execution.and_then(|e| e.state)))
}

#[tokio::test]
async fn leads_work_the_queue_from_a_browser_and_everyone_else_is_refused() -> Result<()> {
    let (s, isolate, _op, bot) = Scene::gated_isolation().await?;
    let home = s.home().to_string();
    for (name, app) in [("isolate-web", "web"), ("isolate-db", "db")] {
        let r: ActionRequest = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"agent": "bot", "action": isolate, "parameters": {"app": app},
                "justification": "EDR alert 4411: beaconing to a known C2 address",
                "target": {"kind": "Pod", "name": format!("{app}-1"), "namespace": home}}}))?;
        Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await?;
        // Creation times have a resolution of one second: the queue's order needs them apart.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_for("both pending", T, || async {
        let a = state(&s.admin, &home, "isolate-web").await?.0;
        let b = state(&s.admin, &home, "isolate-db").await?.0;
        Ok((a == Some(Decision::Pending) && b == Some(Decision::Pending)).then_some(()))
    })
    .await?;
    let browser = Browser::start().await?;

    // lead-a opens the URL the console printed: the token becomes a cookie and leaves the URL.
    let lead_a = Console::start("lead-a", &["-n", &home])?;
    browser.goto(&lead_a.url).await?;
    let card = "[data-name=\"isolate-web\"]";
    browser.wait_element(card, T).await?;
    assert!(!browser.url().await?.contains("token="), "the session token does not stay in the address bar");
    let effect = browser.wait_text(&format!("{card} [data-testid=effect]"), T, |t| !t.is_empty()).await?;
    assert!(effect.contains("NetworkPolicy") && effect.contains("isolate-web"), "the effect set is shown: {effect}");
    let runs = browser.wait_text(&format!("{card} [data-testid=runs]"), T, |t| !t.is_empty()).await?;
    assert!(
        runs.contains("kind: NetworkPolicy") && runs.contains("name: isolate-web") && runs.contains(&home),
        "the rendered manifest is shown: {runs}"
    );
    let page = browser.page_text().await?;
    assert!(page.contains("Acting as") && page.contains("beaconing to a known C2"), "{page}");
    // Who lead-a is, as the API server says (SelfSubjectReview): the user and its groups.
    let me = browser.wait_text("[data-testid=identity]", T, |t| t.contains("soc-leads")).await?;
    assert!(me.starts_with("Acting as lead-a (") && me.contains("system:authenticated"), "{me}");
    assert!(page.find("isolate-web") < page.find("isolate-db"), "oldest first");
    browser.screenshot("console-queue").await?;

    // lead-a approves with a comment; the approval carries lead-a, stamped by the webhook.
    let comment = browser.wait_element(&format!("{card} textarea"), T).await?;
    browser.type_into(&comment, "confirmed in the EDR").await?;
    browser.click(&browser.wait_element(&format!("{card} [data-testid=approve]"), T).await?).await?;
    browser.wait_text(&format!("{card} .outcome"), T, |t| t.contains("Recorded: approve by lead-a")).await?;
    let approvals = Api::<Approval>::namespaced(s.admin.clone(), &home).list(&ListParams::default()).await?.items;
    let mine: Vec<&Approval> =
        approvals.iter().filter(|a| a.spec.action_request.as_deref() == Some("isolate-web")).collect();
    assert_eq!(mine.len(), 1, "one approval recorded");
    assert_eq!(mine[0].spec.approver, "lead-a", "stamped with the browser user's identity");
    assert_eq!(mine[0].spec.comment, "confirmed in the EDR");
    assert_eq!(state(&s.admin, &home, "isolate-web").await?.0, Some(Decision::Pending), "one of two approvals");

    // A forged cross-origin POST carrying lead-a's valid session cookie is refused, and records nothing.
    let cookie = lead_a.cookie();
    let decide = serde_json::to_vec(&json!({"namespace": home, "request": "isolate-db", "decision": "approve"}))?;
    let forged = [("cookie", cookie.as_str()), ("origin", "http://evil.example"), ("content-type", "application/json")];
    let (code, _, body) = raw(lead_a.port, "POST", "/api/decide", &forged, &decide).await?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cross-origin"), "{body}");
    let form = [("cookie", cookie.as_str()), ("origin", "null"), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(raw(lead_a.port, "POST", "/api/decide", &form, b"decision=approve").await?.0, 403);
    // A page of another site reaching the console through a rebound DNS name: wrong Host.
    let rebound = [("host", "attacker.example:80"), ("cookie", cookie.as_str())];
    let (code, _, body) = raw(lead_a.port, "GET", "/api/queue", &rebound, b"").await?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("wrong Host"), "{body}");
    // No token, a wrong token, or a path of its own it does not serve.
    assert_eq!(raw(lead_a.port, "GET", "/api/queue", &[], b"").await?.0, 401);
    let wrong = format!("warden-console={}", "0".repeat(lead_a.token.len()));
    assert_eq!(raw(lead_a.port, "GET", "/api/queue", &[("cookie", wrong.as_str())], b"").await?.0, 401);
    assert_eq!(raw(lead_a.port, "GET", "/api/v1/secrets", &[("cookie", cookie.as_str())], b"").await?.0, 404);
    // Its own page, with its own Origin, still works (the refusals are not a broken endpoint).
    let (code, _, body) = raw(lead_a.port, "GET", "/api/queue", &[("cookie", cookie.as_str())], b"").await?;
    assert_eq!(code, 200, "{body}");
    let forged_count = Api::<Approval>::namespaced(s.admin.clone(), &home)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|a| a.spec.action_request.as_deref() == Some("isolate-db"))
        .count();
    assert_eq!(forged_count, 0, "the refused writes recorded nothing");

    // lead-b, in another console, watches the request's own page and approves there; the page
    // follows the decision and the execution live, without a reload.
    let lead_b = Console::start("lead-b", &["-n", &home])?;
    browser.goto(&lead_b.url).await?;
    browser.wait_element(card, T).await?;
    browser.goto(&format!("http://127.0.0.1:{}/requests/{home}/isolate-web", lead_b.port)).await?;
    browser.click(&browser.wait_element("[data-testid=approve]", T).await?).await?;
    browser.wait_text(".outcome", T, |t| t.contains("Recorded: approve by lead-b")).await?;
    browser.wait_text("[data-testid=decision]", T, |t| t == "Approved").await?;
    browser.wait_text("[data-testid=execution]", T, |t| t == "Succeeded").await?;
    let story = browser.wait_text("[data-testid=story]", T, |t| t.contains("execution Succeeded")).await?;
    assert!(story.contains("approve by lead-a") && story.contains("approve by lead-b"), "{story}");
    assert_eq!(
        state(&s.admin, &home, "isolate-web").await?,
        (Some(Decision::Approved), Some(ExecutionState::Succeeded))
    );
    browser.screenshot("console-request").await?;

    // The analyst may create Approvals (RBAC), but is no approver of this agent: no buttons,
    // and the reason, from the webhook's own dry-run answer.
    let analyst = Console::start("analyst", &["-n", &home])?;
    browser.goto(&analyst.url).await?;
    let db = "[data-name=\"isolate-db\"]";
    let why = browser.wait_text(&format!("{db} [data-testid=cannot-decide]"), T, |t| !t.is_empty()).await?;
    assert!(why.contains("analyst is not an approver"), "{why}");
    assert!(browser.find_all("[data-testid=approve]").await?.is_empty(), "no approve button for the analyst");
    assert!(browser.find_all("[data-testid=deny]").await?.is_empty(), "no deny button for the analyst");

    // The fleet and the agent's page, with a promotion waiting (the tier raised, as Git would).
    Api::<SocAgent>::namespaced(s.admin.clone(), &home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"tier": "autonomous"}})))
        .await?;
    let mut hunter = agent("hunter", &home, Tier::Assist, &[&isolate], &[&home]);
    hunter.spec.paused = true;
    apply(&Api::<SocAgent>::namespaced(s.admin.clone(), &home), &hunter).await?;
    browser.goto(&lead_a.url.replace("/?token", "/fleet?token")).await?;
    let row = browser.wait_text("[data-testid=agent-row]", T, |t| t.contains("bot")).await?;
    assert!(row.contains("supervised") && row.contains("Active"), "{row}");
    // The paused agent comes first and says so once the operator records the pause (the page follows live).
    let first = browser.wait_text("tbody tr:first-child", T, |t| t.contains("PAUSED")).await?;
    assert!(first.contains("hunter") && first.contains("Manual"), "{first}");
    browser.screenshot("console-fleet").await?;
    browser.goto(&format!("http://127.0.0.1:{}/agents/{home}/bot", lead_a.port)).await?;
    let checklist = browser.wait_text("[data-testid=promotion]", T, |t| t.contains("Dwell time")).await?;
    assert!(checklist.contains("supervised → autonomous"), "{checklist}");
    let unmet = browser.script("return [...document.querySelectorAll('li.unmet')].map(e => e.textContent)").await?;
    let unmet: Vec<String> = serde_json::from_value(unmet)?;
    assert!(unmet.iter().any(|u| u.starts_with("Dwell time")), "{unmet:?}");
    assert!(unmet.iter().any(|u| u.starts_with("Approvals")), "{unmet:?}");

    // From the agent's page, lead-a approves the waiting promotion: an Approval of the promotion,
    // stamped lead-a; the checklist then counts it, live.
    browser.click(&browser.wait_element("[data-testid=act-promote]", T).await?).await?;
    browser
        .wait_text("[data-testid=actions] .outcome", T, |t| t.contains("Done: approval") && t.contains("as lead-a"))
        .await?;
    let promoted_by: Vec<String> = Api::<Approval>::namespaced(s.admin.clone(), &home)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|a| a.spec.promotion.as_ref().is_some_and(|p| p.agent == "bot" && p.tier == Tier::Autonomous))
        .map(|a| a.spec.approver)
        .collect();
    assert_eq!(promoted_by, ["lead-a"], "one promotion approval, stamped with the browser user");
    browser.wait_text("[data-testid=promotion]", T, |t| t.contains("needs 2 approvals from soc-leads, has 1")).await?;
    browser.screenshot("console-agent").await?;

    // Pause now, then resume, from the same page: the agent's credentials follow.
    browser.click(&browser.wait_element("[data-testid=act-pause]", T).await?).await?;
    let phase = |want: socwarden_api::Phase| {
        let admin = s.admin.clone();
        let home = home.clone();
        async move {
            let a = Api::<SocAgent>::namespaced(admin, &home).get("bot").await?;
            Ok((a.status.and_then(|s| s.phase) == Some(want)).then_some(()))
        }
    };
    wait_for("bot paused from the console", T, || phase(socwarden_api::Phase::Paused)).await?;
    browser.click(&browser.wait_element("[data-testid=act-resume]", T).await?).await?;
    wait_for("bot resumed from the console", T, || phase(socwarden_api::Phase::Active)).await?;

    // The analyst, on the same page, is offered neither (and told why).
    browser.goto(&analyst.url.replace("/?token", &format!("/agents/{home}/bot?token"))).await?;
    let why = browser.wait_text("[data-testid=actions]", T, |t| t.contains("Promotion:")).await?;
    assert!(why.contains("analyst is not an approver") && why.contains("may not pause"), "{why}");
    for act in ["pause", "resume", "promote"] {
        assert!(
            browser.find_all(&format!("[data-testid=act-{act}]")).await?.is_empty(),
            "no {act} button for the analyst"
        );
    }

    // A kill switch turned on shows on every page, live.
    let kill = KillSwitch::new();
    kill.set(&s.admin, true).await?;
    let banner = browser.wait_text("#killswitch", T, |t| t.contains("KILL SWITCH ON")).await?;
    assert!(banner.contains(&kill.name), "{banner}");
    kill.set(&s.admin, false).await?;
    Ok(())
}

/// Attack 10 (issue 28): lead-a has the request's page open, showing only `isolate-web`; the
/// catalog editor then adds an object that opens the pods to everyone. The page says the action
/// changed, and lead-a's click on Approve — an approval of what lead-a looked at — is refused with
/// the reason; nothing is recorded, nothing runs. Once lead-a says they reviewed the new content,
/// the approval names it and is recorded.
#[tokio::test]
async fn a_lead_approves_only_what_the_page_showed() -> Result<()> {
    let (s, isolate, _op, bot) = Scene::gated_isolation().await?;
    let home = s.home().to_string();
    let r: ActionRequest = serde_json::from_value(json!({"metadata": {"name": "isolate-web"},
        "spec": {"agent": "bot", "action": isolate, "parameters": {"app": "web"},
            "target": {"kind": "Pod", "name": "web-1", "namespace": home}}}))?;
    Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &r).await?;
    wait_for("pending", T, || async {
        Ok((state(&s.admin, &home, "isolate-web").await?.0 == Some(Decision::Pending)).then_some(()))
    })
    .await?;
    let browser = Browser::start().await?;
    let lead_a = Console::start("lead-a", &["-n", &home])?;
    browser.goto(&lead_a.url.replace("/?token", &format!("/requests/{home}/isolate-web?token"))).await?;
    let runs = browser.wait_text("[data-testid=runs]", T, |t| t.contains("isolate-web")).await?;
    assert!(!runs.contains("open-till"), "{runs}");
    browser.wait_element("[data-testid=approve]", T).await?;

    edit_manifest(&s.admin, &isolate, OPEN_TOO).await?;
    // The page follows the edit and says so.
    let changed = browser.wait_text("[data-testid=changed]", T, |t| !t.is_empty()).await?;
    assert!(changed.contains("The action changed since you looked") && changed.contains(&isolate), "{changed}");
    browser.wait_text("[data-testid=runs]", T, |t| t.contains("open-till-web")).await?;
    browser.screenshot("console-action-changed").await?;

    browser.click(&browser.wait_element("[data-testid=approve]", T).await?).await?;
    let outcome = browser.wait_text(".outcome", T, |t| !t.is_empty()).await?;
    assert!(
        outcome.starts_with("Refused:")
            && outcome.contains("ActionRequest isolate-web: the action changed since you looked"),
        "an approval of what lead-a looked at is refused: {outcome}"
    );
    let approvals = Api::<Approval>::namespaced(s.admin.clone(), &home).list(&ListParams::default()).await?.items;
    assert!(approvals.is_empty(), "nothing recorded: {approvals:?}");
    let st =
        Api::<ActionRequest>::namespaced(s.admin.clone(), &home).get("isolate-web").await?.status.unwrap_or_default();
    assert_eq!((st.decision, st.approvals.len()), (Some(Decision::Pending), 0), "{}", st.message);

    // lead-a reviews what it runs now: the approval names the new content and is recorded.
    browser.click(&browser.wait_element("[data-testid=reviewed]", T).await?).await?;
    wait_for("the notice gone once reviewed", T, || async {
        Ok(browser.find_all("[data-testid=changed]").await?.is_empty().then_some(()))
    })
    .await?;
    browser.click(&browser.wait_element("[data-testid=approve]", T).await?).await?;
    browser.wait_text(".outcome", T, |t| t.contains("Recorded: approve by lead-a")).await?;
    let now = Api::<ActionRequest>::namespaced(s.admin.clone(), &home).get("isolate-web").await?;
    let approvals = Api::<Approval>::namespaced(s.admin.clone(), &home).list(&ListParams::default()).await?.items;
    assert_eq!(approvals.len(), 1);
    let action = Api::<socwarden_api::SocAction>::all(s.admin.clone()).get(&isolate).await?;
    let content = socwarden_core::admission::signature::request_content(&now.spec, &action.spec);
    assert_eq!(approvals[0].spec.seen.as_deref(), Some(content.as_str()), "it names the content shown now");
    Ok(())
}
