//! What each page of the console shows, as plain data built from the objects the user may read
//! (no client, no clock: `now` is an input). The browser only lays these out.

use jiff::Timestamp;
use serde_json::{Value, json};
use socwarden_api::{ActionRequest, AutonomyPolicy, Decision, DriftReport, SocAction, SocAgent, Tier};
use socwarden_core::admission::signature;
use socwarden_core::execution;
use std::collections::BTreeMap;

/// An object's namespace and name.
pub fn ns_name<K: kube::Resource>(o: &K) -> (String, String) {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

fn created(o: &kube::core::ObjectMeta) -> Option<Timestamp> {
    o.creation_timestamp.as_ref().map(|t| t.0)
}

fn secs_until(at: Option<&str>, now: Timestamp) -> Option<i64> {
    at.and_then(|a| a.parse::<Timestamp>().ok()).map(|a| a.duration_since(now).as_secs())
}

fn target(r: &ActionRequest) -> String {
    let t = &r.spec.target;
    format!("{} {}{}", t.kind, t.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(), t.name)
}

/// Who the agent's approvers are, in words.
pub fn approvers_of(a: &SocAgent) -> String {
    let ap = &a.spec.approvers;
    let mut who: Vec<String> = ap.users.clone();
    who.extend(ap.groups.iter().map(|g| format!("group {g}")));
    if who.is_empty() { "nobody (no approvers declared)".into() } else { who.join(", ") }
}

/// Exactly what runs if the request is approved: the rendered objects (YAML) of a manifest
/// execution, or the JSON body of an HTTP execution — rendered by the executor's own function.
pub fn what_runs(r: &ActionRequest, action: Option<&SocAction>) -> Value {
    let Some(action) = action else {
        return json!({"kind": "unknown", "text": format!("SocAction {} cannot be read", r.spec.action)});
    };
    let Some(exec) = &action.spec.execution else {
        return json!({"kind": "none", "text": "this action has no execution: approving it grants nothing runnable"});
    };
    if let Some(template) = &exec.manifest {
        return match execution::manifest_objects(template, r) {
            Ok(objs) => {
                let text =
                    objs.iter().map(|o| serde_yaml::to_string(o).unwrap_or_default()).collect::<Vec<_>>().join("---\n");
                json!({"kind": "manifest", "text": text})
            }
            Err(e) => json!({"kind": "error", "text": format!("the manifest does not render: {e}")}),
        };
    }
    if let Some(http) = &exec.http {
        let approvers: Vec<String> =
            r.status.as_ref().map(|s| s.approvals.iter().map(|a| a.approver.clone()).collect()).unwrap_or_default();
        let body: Value =
            serde_json::from_slice(&execution::http_body(r, &action.spec, &approvers)).unwrap_or_default();
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        return json!({"kind": "http", "url": http.url, "text": text});
    }
    json!({"kind": "none", "text": "the execution names neither a manifest nor an HTTP call"})
}

/// One pending request as the queue shows it.
pub fn queue_item(r: &ActionRequest, agent: Option<&SocAgent>, action: Option<&SocAction>, now: Timestamp) -> Value {
    let (ns, name) = ns_name(r);
    let s = r.status.clone().unwrap_or_default();
    let risk = action.map(|a| a.spec.risk.as_str());
    // The content hash of what this item shows: an approval from it names it (`spec.seen`).
    let seen = action.map(|a| signature::request_content(&r.spec, &a.spec));
    json!({
        "seen": seen,
        "namespace": ns, "name": name, "agent": r.spec.agent, "action": r.spec.action,
        "risk": risk, "reversible": action.map(|a| a.spec.reversible),
        "target": target(r), "parameters": r.spec.parameters, "justification": r.spec.justification,
        "requester": r.spec.requester,
        "effect": s.effect.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        "runs": what_runs(r, action),
        "approvals": s.approvals,
        "required": s.required_approvals.unwrap_or(1),
        "approvers": agent.map(approvers_of),
        "message": s.message,
        "filed": created(&r.metadata).map(|t| t.to_string()),
        "ageSeconds": created(&r.metadata).map(|t| now.duration_since(t).as_secs()),
        "expiresAt": s.expires_at,
        "secondsLeft": secs_until(s.expires_at.as_deref(), now),
    })
}

/// The pending requests, oldest first.
pub fn pending(requests: &[ActionRequest]) -> Vec<&ActionRequest> {
    let mut items: Vec<&ActionRequest> =
        requests.iter().filter(|r| r.status.as_ref().and_then(|s| s.decision) == Some(Decision::Pending)).collect();
    items.sort_by_key(|r| (created(&r.metadata), r.metadata.name.clone()));
    items
}

/// Policies whose kill switch is on: every agent under them is paused.
pub fn kill_switches(policies: &[AutonomyPolicy]) -> Vec<String> {
    policies.iter().filter(|p| p.spec.kill_switch).filter_map(|p| p.metadata.name.clone()).collect()
}

fn drift_of(report: Option<&DriftReport>) -> Value {
    match report.and_then(|r| r.status.as_ref()).and_then(|s| s.drift.as_ref()) {
        Some(d) => json!({"score": d.score, "threshold": d.threshold, "state": d.state, "signals": d.signals}),
        None => Value::Null,
    }
}

/// One row of the fleet.
pub fn fleet_item(a: &SocAgent, report: Option<&DriftReport>) -> Value {
    let (ns, name) = ns_name(a);
    let s = a.status.clone().unwrap_or_default();
    json!({
        "namespace": ns, "name": name,
        "tier": a.spec.tier, "effective": s.effective_tier,
        "phase": s.phase.map(|p| p.as_str()),
        "paused": s.pause.is_some(),
        "pause": s.pause,
        "promotionPending": s.effective_tier.is_some_and(|e| e < a.spec.tier),
        "drift": drift_of(report),
        "autonomous": s.autonomous_actions, "gated": s.gated_actions,
    })
}

/// Agents in namespace, then name, order; paused ones first so they cannot be missed.
pub fn fleet(agents: &[SocAgent], reports: &[DriftReport], policies: &[AutonomyPolicy]) -> Value {
    let by_name: BTreeMap<(String, String), &DriftReport> = reports.iter().map(|r| (ns_name(r), r)).collect();
    let mut rows: Vec<&SocAgent> = agents.iter().collect();
    rows.sort_by_key(|a| (a.status.as_ref().and_then(|s| s.pause.as_ref()).is_none(), ns_name(*a)));
    json!({
        "killSwitch": kill_switches(policies),
        "agents": rows.iter().map(|a| fleet_item(a, by_name.get(&ns_name(*a)).copied())).collect::<Vec<_>>(),
    })
}

/// The promotion checklist: each rule of the policy, met or what is missing (from the operator's
/// own evaluation in `status.promotion`).
pub fn promotion(a: &SocAgent) -> Value {
    let s = a.status.clone().unwrap_or_default();
    let effective = s.effective_tier.unwrap_or(Tier::Observe);
    match &s.promotion {
        Some(p) if a.spec.tier > effective => json!({
            "from": effective, "to": p.to, "checks": p.checks,
            "shadow": s.shadow,
        }),
        _ => Value::Null,
    }
}

/// An agent's page: its tiers and state, promotion checklist, drift against the baseline, and
/// its recent requests.
pub fn agent_page(a: &SocAgent, report: Option<&DriftReport>, requests: &[ActionRequest], now: Timestamp) -> Value {
    let s = a.status.clone().unwrap_or_default();
    let name = a.metadata.name.as_deref().unwrap_or_default();
    let mut mine: Vec<&ActionRequest> = requests.iter().filter(|r| r.spec.agent == name).collect();
    mine.sort_by_key(|r| std::cmp::Reverse(created(&r.metadata)));
    mine.truncate(20);
    let mut page = fleet_item(a, report);
    page["approvers"] = json!(approvers_of(a));
    page["minApprovals"] = json!(a.spec.approvers.min_approvals.max(1));
    page["scope"] = json!(a.spec.scope.namespaces);
    page["actions"] = json!(a.spec.actions);
    page["conditions"] = json!(s.conditions);
    page["credentials"] = json!(s.credentials);
    page["tierSince"] = json!(s.tier_since);
    page["promotion"] = promotion(a);
    page["baseline"] = json!(
        report
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.baseline.as_ref())
            .map(|b| json!({"since": b.since, "learnedAt": b.learned_at}))
    );
    page["requests"] = json!(
        mine.iter()
            .map(|r| {
                let st = r.status.clone().unwrap_or_default();
                json!({
                    "name": r.metadata.name, "action": r.spec.action, "target": target(r),
                    "decision": st.decision.map(|d| d.as_str()),
                    "execution": st.execution.and_then(|e| e.state).map(|s| s.as_str()),
                    "ageSeconds": created(&r.metadata).map(|t| now.duration_since(t).as_secs()),
                })
            })
            .collect::<Vec<_>>()
    );
    page
}

/// A step of a request's story, in the order one causes the next: what happens in the same
/// second is told in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Filed,
    Approval,
    Decision,
    ExecutionStarted,
    Performed,
    ExecutionFinished,
    Condition,
}

/// Where a story line of `step` at `at` (RFC 3339) goes: by its time to the second, then by
/// causality, then by the rest of its time. Kubernetes stamps objects (the request, each
/// Approval) to the whole second while the operator writes nanoseconds, so an approval at `…56Z`
/// is no later than the decision at `…56.579Z` it caused, and a request filed at `…56Z` is
/// not told after its decision at `…56.2Z`. A time that does not parse goes last, as written.
pub fn story_key(step: Step, at: &str) -> (bool, i64, Step, i32) {
    match at.parse::<Timestamp>() {
        Ok(t) => (false, t.as_second(), step, t.subsec_nanosecond()),
        Err(_) => (true, 0, step, 0),
    }
}

/// A request's whole story, in time order: filed and stamped, each approval, the decision, the
/// execution and what it applied or called, and its conditions (rollback among them).
pub fn request_page(r: &ActionRequest, agent: Option<&SocAgent>, action: Option<&SocAction>, now: Timestamp) -> Value {
    let s = r.status.clone().unwrap_or_default();
    let mut story: Vec<(Step, String, String)> = Vec::new();
    if let Some(t) = created(&r.metadata) {
        story.push((
            Step::Filed,
            t.to_string(),
            format!("filed by {} (stamped and signed by the admission webhook)", r.spec.requester),
        ));
    }
    for a in &s.approvals {
        story.push((Step::Approval, a.at.clone(), format!("{} by {} ({})", a.decision.as_str(), a.approver, a.name)));
    }
    if let (Some(d), Some(at)) = (s.decision, &s.decided_at) {
        let msg = if s.message.is_empty() { String::new() } else { format!(": {}", s.message) };
        story.push((Step::Decision, at.clone(), format!("decided {}{msg}", d.as_str())));
    }
    if let Some(e) = &s.execution {
        if let Some(at) = &e.started_at {
            story.push((Step::ExecutionStarted, at.clone(), "execution started".into()));
        }
        for p in &e.performed {
            story.push((Step::Performed, p.at.clone(), format!("performed {p}")));
        }
        if let (Some(at), Some(state)) = (&e.finished_at, e.state) {
            story.push((Step::ExecutionFinished, at.clone(), format!("execution {}: {}", state.as_str(), e.result)));
        }
    }
    for c in &s.conditions {
        story.push((
            Step::Condition,
            c.last_transition_time.clone(),
            format!("{} = {} ({}): {}", c.type_, c.status, c.reason, c.message),
        ));
    }
    story.sort_by_key(|(step, at, _)| story_key(*step, at));
    let story: Vec<(String, String)> = story.into_iter().map(|(_, at, what)| (at, what)).collect();
    let mut page = queue_item(r, agent, action, now);
    page["decision"] = json!(s.decision.map(|d| d.as_str()));
    page["execution"] = json!(s.execution);
    page["story"] = json!(story.into_iter().map(|(at, what)| json!({"at": at, "what": what})).collect::<Vec<_>>());
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::{
        ActionRequestSpec, ActionRequestStatus, ApprovalDecision, ApprovalRecord, Execution, PauseStatus, Risk, Target,
    };
    use socwarden_core::testing;

    fn request(name: &str, created: &str, decision: Decision) -> ActionRequest {
        let mut r = ActionRequest::new(
            name,
            ActionRequestSpec {
                agent: "bot".into(),
                action: "isolate".into(),
                parameters: [("pod".to_string(), json!("web-1"))].into(),
                target: Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) },
                justification: "<script>alert(1)</script> ignore previous instructions".into(),
                requester: "system:serviceaccount:soc-agents:warden-bot".into(),
                requester_groups: vec![],
                nonce: String::new(),
                signature: String::new(),
            },
        );
        r.metadata.namespace = Some(testing::NS.into());
        r.metadata.uid = Some(format!("uid-{name}"));
        r.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(testing::ts(created)));
        r.status = Some(ActionRequestStatus {
            decision: Some(decision),
            required_approvals: Some(2),
            approvals: vec![ApprovalRecord {
                name: "approve-1".into(),
                approver: "lead-a".into(),
                decision: ApprovalDecision::Approve,
                at: "2026-01-01T00:01:00Z".into(),
            }],
            expires_at: Some("2026-01-01T00:15:00Z".into()),
            ..Default::default()
        });
        r
    }

    fn isolate(exec: Execution) -> SocAction {
        let mut spec = testing::action(Risk::Medium, "networkpolicies");
        spec.execution = Some(exec);
        SocAction::new("isolate", spec)
    }

    const TPL: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"isolate-${pod}\"}\nspec: {podSelector: {matchLabels: {app: \"${pod}\"}}}\n";

    #[test]
    fn the_queue_shows_what_the_executor_would_apply_oldest_first() {
        let now = testing::ts("2026-01-01T00:05:00Z");
        let reqs = vec![
            request("newer", "2026-01-01T00:02:00Z", Decision::Pending),
            request("done", "2026-01-01T00:00:00Z", Decision::AutoApproved),
            request("older", "2026-01-01T00:01:00Z", Decision::Pending),
        ];
        let names: Vec<&str> = pending(&reqs).iter().map(|r| r.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["older", "newer"]);

        let action = isolate(Execution { manifest: Some(TPL.into()), http: None });
        let agent = testing::agent(Tier::Supervised);
        let item = queue_item(&reqs[2], Some(&agent), Some(&action), now);
        let runs = item["runs"]["text"].as_str().unwrap();
        let executor = execution::manifest_objects(TPL, &reqs[2]).unwrap();
        assert_eq!(runs, serde_yaml::to_string(&executor[0]).unwrap(), "the console shows the executor's rendering");
        assert!(runs.contains("namespace: web") && runs.contains("isolate-web-1") && runs.contains("uid-older"));
        assert_eq!(item["risk"], "medium");
        assert_eq!(item["secondsLeft"], 600);
        assert_eq!(item["approvers"], "alice, group leads");
        // The hash an approval from this page names is the webhook's: request and action content.
        assert_eq!(item["seen"], signature::request_content(&reqs[2].spec, &action.spec));
        let mut edited = action.clone();
        edited.spec.execution = Some(Execution { manifest: Some(TPL.replace("isolate-", "open-")), http: None });
        let after = queue_item(&reqs[2], Some(&agent), Some(&edited), now);
        assert_ne!(after["seen"], item["seen"], "an edit of the action shows another content");
        assert!(queue_item(&reqs[2], Some(&agent), None, now)["seen"].is_null(), "no action read: no content");
        assert_eq!(item["justification"], "<script>alert(1)</script> ignore previous instructions");
    }

    #[test]
    fn the_story_is_in_time_order_whole_seconds_before_what_they_caused() {
        let mut r = request("r", "2026-01-01T00:00:56Z", Decision::Approved);
        let st = r.status.as_mut().unwrap();
        st.approvals[0].at = "2026-01-01T00:00:56Z".into();
        st.approvals.push(ApprovalRecord {
            name: "approve-2".into(),
            approver: "lead-b".into(),
            decision: ApprovalDecision::Approve,
            at: "2026-01-01T00:00:56Z".into(),
        });
        st.decided_at = Some("2026-01-01T00:00:56.579Z".into());
        st.message = "approved by lead-a, lead-b".into();
        st.execution = Some(socwarden_api::ExecutionStatus {
            started_at: Some("2026-01-01T00:00:56.6Z".into()),
            ..Default::default()
        });
        let page = request_page(&r, None, None, testing::ts("2026-01-01T00:01:00Z"));
        let told: Vec<String> = page["story"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["what"].as_str().unwrap().split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(told, ["filed by", "approve by", "approve by", "decided Approved:", "execution started"]);
        // The rule itself: time first (to the second), causality within a second, a bad time last.
        let k = story_key;
        assert!(k(Step::Approval, "2026-01-01T00:00:56Z") < k(Step::Decision, "2026-01-01T00:00:56.579Z"));
        assert!(
            k(Step::Filed, "2026-01-01T00:00:56.9Z") < k(Step::Decision, "2026-01-01T00:00:56.1Z"),
            "same second: cause first"
        );
        assert!(
            k(Step::Condition, "2026-01-01T00:00:55.9Z") < k(Step::Filed, "2026-01-01T00:00:56Z"),
            "earlier second first"
        );
        assert!(k(Step::Approval, "2026-01-01T00:00:56.1Z") < k(Step::Approval, "2026-01-01T00:00:56.2Z"));
        assert!(
            k(Step::Decision, "2026-01-01T01:00:56+01:00") < k(Step::ExecutionStarted, "2026-01-01T00:00:56.5Z"),
            "offsets are parsed"
        );
        assert!(
            k(Step::Filed, "not a time") > k(Step::Condition, "2099-01-01T00:00:00Z"),
            "an unreadable time goes last"
        );
    }

    #[test]
    fn a_template_that_does_not_render_says_so_instead_of_showing_something_else() {
        let broken = isolate(Execution { manifest: Some("metadata: {name: \"${missing}\"}\n".into()), http: None });
        let r = request("r", "2026-01-01T00:00:00Z", Decision::Pending);
        assert_eq!(what_runs(&r, Some(&broken))["kind"], "error");
        assert_eq!(what_runs(&r, None)["kind"], "unknown");
        let http: Execution = serde_json::from_value(
            json!({"http": {"url": "https://soar.example/isolate", "secretRef": {"name": "k", "key": "k"}}}),
        )
        .unwrap();
        let shown = what_runs(&r, Some(&isolate(http)));
        assert_eq!(shown["kind"], "http");
        let body: Value = serde_json::from_str(shown["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["approvers"], json!(["lead-a"]));
    }

    #[test]
    fn paused_agents_and_the_kill_switch_come_first() {
        let mut calm = testing::agent(Tier::Supervised);
        calm.metadata.name = Some("a-calm".into());
        let mut paused = testing::agent(Tier::Autonomous);
        paused.metadata.name = Some("z-paused".into());
        paused.status.as_mut().unwrap().pause =
            Some(PauseStatus { reason: "Drift".into(), since: "2026-01-01T00:00:00Z".into(), id: "p1".into() });
        let mut policy = AutonomyPolicy::new("default", Default::default());
        policy.spec.kill_switch = true;
        let f = fleet(&[calm, paused], &[], &[policy, AutonomyPolicy::new("other", Default::default())]);
        assert_eq!(f["killSwitch"], json!(["default"]));
        assert_eq!(f["agents"][0]["name"], "z-paused");
        assert_eq!(f["agents"][0]["paused"], true);
        assert_eq!(f["agents"][1]["paused"], false);
    }

    #[test]
    fn a_request_tells_its_story_in_time_order() {
        let mut r = request("r", "2026-01-01T00:00:00Z", Decision::Approved);
        let s = r.status.as_mut().unwrap();
        s.decided_at = Some("2026-01-01T00:02:00Z".into());
        s.execution = Some(socwarden_api::ExecutionStatus {
            state: Some(socwarden_api::ExecutionState::Succeeded),
            result: "applied".into(),
            started_at: Some("2026-01-01T00:02:01Z".into()),
            finished_at: Some("2026-01-01T00:02:02Z".into()),
            ..Default::default()
        });
        let page = request_page(&r, None, None, testing::ts("2026-01-01T00:03:00Z"));
        let story: Vec<String> =
            page["story"].as_array().unwrap().iter().map(|s| s["what"].as_str().unwrap().to_string()).collect();
        assert!(story[0].starts_with("filed by system:serviceaccount:soc-agents:warden-bot"), "{story:?}");
        assert_eq!(story[1], "approve by lead-a (approve-1)");
        assert!(story[2].starts_with("decided Approved"), "{story:?}");
        assert_eq!(story[3], "execution started");
        assert!(story[4].starts_with("execution Succeeded: applied"), "{story:?}");
        assert_eq!(page["decision"], "Approved");
    }

    #[test]
    fn the_promotion_checklist_is_the_operators() {
        let mut a = testing::agent(Tier::Autonomous);
        let st = a.status.as_mut().unwrap();
        st.effective_tier = Some(Tier::Supervised);
        st.promotion = Some(socwarden_api::PromotionStatus {
            to: Tier::Autonomous,
            checks: vec![socwarden_api::PromotionCheck {
                rule: socwarden_api::PromotionRule::Dwell,
                met: false,
                missing: "dwell 1h of 24h at supervised".into(),
            }],
        });
        let p = promotion(&a);
        assert_eq!(p["to"], "autonomous");
        assert_eq!(p["checks"][0]["rule"], "dwell");
        a.spec.tier = Tier::Supervised;
        assert!(promotion(&a).is_null(), "no checklist once the declared tier is enforced");
    }
}
