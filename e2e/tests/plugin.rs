//! `kubectl warden`, run as the `lead-a` identity (and others) against the local control plane.

use anyhow::{Result, bail};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn decision(admin: &kube::Client, ns: &str, name: &str) -> Result<Option<Decision>> {
    Ok(Api::<ActionRequest>::namespaced(admin.clone(), ns).get(name).await?.status.and_then(|s| s.decision))
}

#[tokio::test]
async fn a_lead_works_the_queue_and_the_agents_from_the_terminal() -> Result<()> {
    if external_cluster() {
        bail!("runs as the local control plane's identities (e2e/cluster up)");
    }
    let admin = admin().await?;
    install_crds(&admin).await?;
    default_policy(&admin).await?;
    apply_yaml(&admin, &std::fs::read_to_string(repo().join("examples/05-people.yaml"))?).await?;
    let ns = Namespaces::create(&admin, &["home"]).await?;
    let home = ns.get(0).to_string();
    let isolate = unique("isolate");
    apply_yaml(&admin, &format!("apiVersion: socwarden.io/v1alpha1\nkind: SocAction\nmetadata: {{name: {isolate}}}\nspec: {{risk: medium}}\n")).await?;
    let _op = Operator::start().await?;
    let mut a = agent("bot", &home, Tier::Supervised, &[&isolate], &[&home]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    apply(&Api::<SocAgent>::namespaced(admin.clone(), &home), &a).await?;
    wait_agent(&admin, &home, "bot", "Ready", T, ready).await?;
    let bot = with_token(&agent_token(&admin, &home, "bot").await?.unwrap()).await?;
    let file = |name: &str| -> ActionRequest {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"agent": "bot", "action": isolate, "target": {"kind": "Pod", "name": "web-1", "namespace": home}}}))
        .unwrap()
    };
    for r in ["r1", "r2", "r3"] {
        Api::<ActionRequest>::namespaced(bot.clone(), &home).create(&PostParams::default(), &file(r)).await?;
    }
    wait_for("pending", T, || async {
        Ok((decision(&admin, &home, "r3").await? == Some(Decision::Pending)).then_some(()))
    })
    .await?;

    let (ok, help) = kubectl_warden("lead-a", &["--help"])?;
    assert!(ok);
    for cmd in ["pending", "approve", "deny", "pause", "resume", "promote", "explain", "whoami"] {
        assert!(help.contains(cmd), "--help lists {cmd}:\n{help}");
    }
    // Who am I, as the API server says (SelfSubjectReview), and which agents I approve for.
    let (ok, out) = kubectl_warden("lead-a", &["whoami", "-n", &home])?;
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("lead-a"), "{out}");
    assert!(out.contains("soc-leads") && out.contains(&format!("approver of: {home}/bot")), "{out}");
    let (ok, out) = kubectl_warden("analyst", &["whoami", "-n", &home])?;
    assert!(ok && out.contains(&format!("approver of: no agent in namespace {home}")), "{out}");
    let (ok, out) = kubectl_warden("lead-a", &["pending", "-n", &home])?;
    assert!(ok, "{out}");
    assert!(out.contains("r1") && out.contains("bot") && out.contains(&isolate) && out.contains("0/1"), "{out}");
    let listed =
        seen_in(&out, "r1").unwrap_or_else(|| panic!("pending prints the approve command with --seen:\n{out}"));

    // Without --seen, approve shows what it would approve and approves nothing.
    let (ok, out) = kubectl_warden("lead-a", &["approve", "r1", "-n", &home])?;
    assert!(!ok && out.contains("nothing approved yet") && out.contains("what runs"), "{out}");
    assert_eq!(seen_in(&out, "r1").as_deref(), Some(listed.as_str()), "{out}");
    let (ok, out) =
        kubectl_warden("lead-a", &["approve", "r1", "-n", &home, "--seen", &listed, "--comment", "confirmed"])?;
    assert!(ok && out.contains("as lead-a"), "{out}");
    wait_for("r1 approved", T, || async {
        Ok((decision(&admin, &home, "r1").await? == Some(Decision::Approved)).then_some(()))
    })
    .await?;
    let (ok, out) = kubectl_warden("lead-b", &["deny", "r2", "-n", &home])?;
    assert!(ok, "{out}");
    wait_for("r2 denied", T, || async {
        Ok((decision(&admin, &home, "r2").await? == Some(Decision::Denied)).then_some(()))
    })
    .await?;
    let (ok, out) = kubectl_warden("analyst", &["approve", "r3", "-n", &home])?;
    assert!(!ok && out.contains("refused") && out.contains("analyst is not an approver"), "{out}");
    let (_, out) = kubectl_warden("lead-a", &["pending", "-n", &home])?;
    assert!(out.contains("r3") && !out.contains("r1 "), "{out}");

    let (ok, out) = kubectl_warden("lead-a", &["explain", "bot", "-n", &home])?;
    assert!(
        ok && out.contains("is Active")
            && out.contains("enforced tier: supervised")
            && out.contains(&format!("needs approval: [{isolate}]")),
        "{out}"
    );

    // Pause and resume at once.
    let (ok, out) = kubectl_warden("lead-a", &["pause", "bot", "-n", &home])?;
    assert!(ok, "{out}");
    wait_agent(&admin, &home, "bot", "paused", T, |a| condition(a, "Paused").is_some_and(|c| c.status == "True"))
        .await?;
    let (_, out) = kubectl_warden("lead-a", &["explain", "bot", "-n", &home])?;
    assert!(out.contains("paused (Manual)") && out.contains("kubectl warden resume"), "{out}");
    let (ok, out) = kubectl_warden("lead-a", &["resume", "bot", "-n", &home])?;
    assert!(ok, "{out}");
    wait_agent(&admin, &home, "bot", "resumed", T, ready).await?;

    // A promotion raised in Git waits for the leads; `promote` records one approval.
    Api::<SocAgent>::namespaced(as_user("gitops").await?, &home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"tier": "autonomous"}})))
        .await?;
    wait_agent(&admin, &home, "bot", "promotion pending", T, |a| {
        condition(a, "PromotionPending").is_some_and(|c| c.status == "True")
    })
    .await?;
    let (ok, out) = kubectl_warden("lead-a", &["promote", "bot", "-n", &home])?;
    assert!(ok && out.contains("supervised → autonomous") && out.contains("as lead-a"), "{out}");
    // The approval counts (one is enough for this agent); dwell time and evidence still hold it.
    let waits = wait_agent(&admin, &home, "bot", "approval counted", T, |a| {
        condition(a, "PromotionPending")
            .is_some_and(|c| c.status == "True" && !c.message.contains("needs 1 approval from"))
    })
    .await?;
    let msg = condition(&waits, "PromotionPending").unwrap().message;
    assert!(msg.contains("dwell") && msg.contains("shadow evidence"), "{msg}");
    let (_, out) = kubectl_warden("lead-a", &["explain", "bot", "-n", &home])?;
    assert!(
        out.contains("Its promotion waits") && out.contains("dwell") && out.contains("enforced tier: supervised"),
        "{out}"
    );
    Ok(())
}

/// Attack 10 (issue 28) from the terminal: lead-a lists the queue, the catalog editor then adds an
/// object to the action, and lead-a's approval of what the list showed is refused with the reason;
/// the list then shows the new content. Nothing is approved, nothing runs.
#[tokio::test]
async fn a_lead_approves_only_the_content_the_terminal_showed() -> Result<()> {
    let (s, isolate, _op, bot) = Scene::gated_isolation().await?;
    let home = s.home().to_string();
    let r = request("r1", "bot", &isolate, json!({"app": "web"}), &home, "web-1");
    file(&bot, &home, &r).await?;
    wait_for("pending", T, || async {
        Ok((decision(&s.admin, &home, "r1").await? == Some(Decision::Pending)).then_some(()))
    })
    .await?;
    let (ok, out) = kubectl_warden("lead-a", &["pending", "-n", &home])?;
    assert!(ok, "{out}");
    let listed =
        seen_in(&out, "r1").unwrap_or_else(|| panic!("pending prints the approve command with --seen:\n{out}"));

    edit_manifest(&s.admin, &isolate, OPEN_TOO).await?;
    let (ok, out) = kubectl_warden("lead-a", &["approve", "r1", "-n", &home, "--seen", &listed])?;
    assert!(!ok, "an approval of what the list showed before the edit is refused:\n{out}");
    assert!(out.contains("refused:") && out.contains("ActionRequest r1: the action changed since you looked"), "{out}");
    let (_, out) = kubectl_warden("lead-a", &["approve", "r1", "-n", &home])?;
    assert!(out.contains("open-till-web"), "reviewing again shows what it runs now:\n{out}");
    assert_ne!(seen_in(&out, "r1"), Some(listed), "{out}");

    let st = Api::<ActionRequest>::namespaced(s.admin.clone(), &home).get("r1").await?.status.unwrap_or_default();
    assert_eq!((st.decision, st.approvals.len()), (Some(Decision::Pending), 0), "{}", st.message);
    Ok(())
}
