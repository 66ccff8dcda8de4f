//! The MCP gateway's decisions: who may use it, which tools an agent sees (its catalog actions and
//! two built-ins), how a tool call becomes an ActionRequest, and what the agent is told about the
//! outcome — in words an LLM can act on. Pure: `soc_warden::mcp` serves it.

use crate::admission::identity;
use serde_json::{Map, Value, json};
use socwarden_api::{
    ActionRequestSpec, ActionRequestStatus, AutonomyPolicySpec, Decision, ExecutionState, ParameterSpec, ParameterType,
    Phase, SocActionSpec, SocAgent, Target, Tier, Verb,
};
use std::collections::BTreeMap;

/// The audience every agent token carries for the gateway (besides the API server's own): the
/// gateway accepts only tokens issued for it, checked by a TokenReview.
pub const AUDIENCE: &str = "socwarden.io/mcp";
/// Built-in tool: the agent's tier, what it may do alone, whether it is paused.
pub const STATUS_TOOL: &str = "warden_status";
/// Built-in tool: the state of one of the agent's requests.
pub const REQUEST_TOOL: &str = "warden_request";
/// Annotation carrying the W3C `traceparent` a tool call came with.
pub const TRACEPARENT_ANNOTATION: &str = "socwarden.io/traceparent";
/// Annotation naming the way a request was filed (`mcp`).
pub const VIA_ANNOTATION: &str = "socwarden.io/filed-via";

/// A W3C `traceparent` (version 00: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids
/// not all zero), or `None`: anything else a client sends is dropped, never written anywhere.
pub fn traceparent(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    match parts.as_slice() {
        [ver, trace, parent, flags]
            if *ver == "00" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2) && !zero(trace) && !zero(parent) =>
        {
            Some(parts.join("-"))
        }
        _ => None,
    }
}

/// Why the gateway refuses a caller before any tool is listed or called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: the token is not valid for the gateway (bad, expired, revoked, wrong audience).
    Unauthenticated(String),
    /// 403: a valid identity that may not use the gateway (a human, another program, a paused agent).
    Forbidden(String),
}

/// Who may use the gateway: the authenticated user (from a TokenReview for [`AUDIENCE`]) must be an
/// agent ServiceAccount of a SocAgent that exists and is not paused. Returns the agent's key.
pub fn admit(
    authenticated: Option<&str>,
    agent: impl Fn(&str, &str) -> Option<(Phase, Option<String>)>,
) -> Result<(String, String), Refusal> {
    let Some(user) = authenticated else {
        return Err(Refusal::Unauthenticated(format!(
            "the bearer token is not valid for {AUDIENCE} (expired, revoked, or issued for another audience): \
             use the token SOC Warden issued to your agent"
        )));
    };
    let Some((ns, name)) = identity::agent_of(user) else {
        return Err(Refusal::Forbidden(format!(
            "{user} is not a SOC Warden agent: the gateway serves only the agents' own ServiceAccounts"
        )));
    };
    match agent(ns, name) {
        None => Err(Refusal::Forbidden(format!("no SocAgent {ns}/{name} exists for {user}"))),
        Some((Phase::Paused, why)) => Err(Refusal::Forbidden(format!(
            "agent {ns}/{name} is paused{}: it has no tools until an approver resumes it",
            why.map(|w| format!(" ({w})")).unwrap_or_default()
        ))),
        Some(_) => Ok((ns.to_string(), name.to_string())),
    }
}

/// How one action runs for the agent now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Autonomous at the effective tier: executed at once.
    Alone,
    /// Gated: `approvals` distinct approvers among `from`.
    Approval { approvals: u32, from: String },
    /// The observe tier: recorded as a recommendation, never executed.
    Recommendation,
}

impl Runs {
    pub fn of(agent: &SocAgent, action: &str, risk: socwarden_api::Risk, policy: &AutonomyPolicySpec) -> Self {
        let status = agent.status.as_ref();
        if status.and_then(|s| s.effective_tier).unwrap_or(agent.spec.tier) == Tier::Observe {
            return Runs::Recommendation;
        }
        if status.is_some_and(|s| s.autonomous_actions.iter().any(|a| a == action)) {
            return Runs::Alone;
        }
        let a = &agent.spec.approvers;
        let mut from: Vec<String> = a.users.clone();
        from.extend(a.groups.iter().map(|g| format!("group {g}")));
        let from = if from.is_empty() { "nobody (no approvers declared)".to_string() } else { from.join(", ") };
        Runs::Approval { approvals: crate::admission::gate::required_approvals(agent, policy, risk), from }
    }

    pub fn words(&self, tier: Tier) -> String {
        match self {
            Runs::Alone => format!("Runs at once: autonomous at your tier ({}).", tier.as_str()),
            Runs::Approval { approvals, from } => format!(
                "Needs {approvals} approval{} from {from} before it runs; the call returns while it waits.",
                if *approvals == 1 { "" } else { "s" }
            ),
            Runs::Recommendation => {
                "Recorded as a recommendation only: at the observe tier nothing is executed.".to_string()
            }
        }
    }
}

/// One tool as the gateway lists it (converted to the MCP type by the runtime).
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub input_schema: Map<String, Value>,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

/// The agent's tools: one per action of `spec.actions` found in the catalog (in that order), then
/// the two built-ins. Hints come from the catalog only: an action is read-only when it executes
/// nothing and grants only reads, destructive unless reversible.
pub fn tools(agent: &SocAgent, catalog: &[(String, SocActionSpec)], policy: &AutonomyPolicySpec) -> Vec<Tool> {
    let tier = agent.status.as_ref().and_then(|s| s.effective_tier).unwrap_or(agent.spec.tier);
    let mut out: Vec<Tool> = catalog
        .iter()
        .filter(|(name, _)| agent.spec.actions.contains(name))
        .map(|(name, a)| {
            let read_only = a.execution.is_none()
                && a.grants.iter().all(|g| g.verbs.iter().all(|v| matches!(v, Verb::Get | Verb::List | Verb::Watch)));
            let runs = Runs::of(agent, name, a.risk, policy);
            let description = format!(
                "{}. Risk: {}{}. {}",
                a.description.trim_end_matches('.'),
                a.risk.as_str(),
                if a.reversible { ", reversible" } else { "" },
                runs.words(tier)
            );
            let manifest = a.execution.as_ref().is_some_and(|e| e.manifest.is_some());
            Tool {
                name: name.clone(),
                description,
                input_schema: input_schema(&a.parameters, &agent.spec.scope.namespaces),
                read_only,
                destructive: !read_only && !a.reversible,
                idempotent: read_only || manifest,
            }
        })
        .collect();
    out.push(Tool {
        name: STATUS_TOOL.into(),
        description: "Your SOC Warden status: effective tier, the tools that run at once, those that need \
                      approval, and whether you are paused."
            .into(),
        input_schema: object(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        read_only: true,
        destructive: false,
        idempotent: true,
    });
    out.push(Tool {
        name: REQUEST_TOOL.into(),
        description: "The state of one of your requests (the name a tool call returned): decision, \
                      approvals, execution."
            .into(),
        input_schema: object(json!({
            "type": "object",
            "properties": {"request": {"type": "string", "description": "The request's name."}},
            "required": ["request"],
            "additionalProperties": false
        })),
        read_only: true,
        destructive: false,
        idempotent: true,
    });
    out
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `{parameters, target, justification}`: the action's parameter schema as JSON Schema, and a
/// target whose namespace, when given, is one of the agent's scope.
pub fn input_schema(params: &[ParameterSpec], scope: &[String]) -> Map<String, Value> {
    let mut props = Map::new();
    for p in params {
        let mut s = match p.type_ {
            ParameterType::Integer => json!({"type": "integer"}),
            ParameterType::Boolean => json!({"type": "boolean"}),
            ParameterType::String => json!({"type": "string"}),
            ParameterType::Ip => json!({"type": "string", "description": "An IPv4 or IPv6 address."}),
            ParameterType::Cidr => json!({"type": "string", "description": "A CIDR block, e.g. 10.0.0.0/24."}),
        };
        if let Some(pat) = &p.pattern {
            s["pattern"] = json!(format!("^(?:{pat})$"));
        }
        if matches!(p.type_, ParameterType::String | ParameterType::Ip | ParameterType::Cidr) {
            s["maxLength"] = json!(p.max_length.unwrap_or(253));
        }
        if !p.allowed.is_empty() {
            s["enum"] = match p.type_ {
                ParameterType::Integer => {
                    json!(p.allowed.iter().filter_map(|v| v.parse::<i64>().ok()).collect::<Vec<_>>())
                }
                ParameterType::Boolean => {
                    json!(p.allowed.iter().filter_map(|v| v.parse::<bool>().ok()).collect::<Vec<_>>())
                }
                _ => json!(p.allowed),
            };
        }
        if let Some(m) = p.minimum {
            s["minimum"] = json!(m);
        }
        if let Some(m) = p.maximum {
            s["maximum"] = json!(m);
        }
        if let Some(k) = &p.target_kind {
            s["description"] = json!(format!("Names a target of kind {k}."));
        }
        props.insert(p.name.clone(), s);
    }
    let required: Vec<&str> = params.iter().filter(|p| p.required).map(|p| p.name.as_str()).collect();
    let mut namespace = json!({"type": "string"});
    if !scope.is_empty() {
        namespace["enum"] = json!(scope);
    }
    let mut top_required = vec!["target"];
    if !required.is_empty() {
        top_required.push("parameters");
    }
    object(json!({
        "type": "object",
        "properties": {
            "parameters": {"type": "object", "properties": props, "required": required, "additionalProperties": false},
            "target": {
                "type": "object",
                "description": "What the action is aimed at (e.g. kind Pod, name web-1, namespace web).",
                "properties": {"kind": {"type": "string"}, "name": {"type": "string"}, "namespace": namespace},
                "required": ["kind", "name"],
                "additionalProperties": false
            },
            "justification": {"type": "string", "maxLength": 8192, "description": "Why: kept for the audit."}
        },
        "required": top_required,
        "additionalProperties": false
    }))
}

/// The request a call of `action` files for agent `agent`: its arguments read strictly (unknown
/// fields refused), the requester left for the stamp. The gate and the webhook check the rest.
pub fn request(agent: &str, action: &str, arguments: Option<&Map<String, Value>>) -> Result<ActionRequestSpec, String> {
    let empty = Map::new();
    let args = arguments.unwrap_or(&empty);
    if let Some(k) = args.keys().find(|k| !["parameters", "target", "justification"].contains(&k.as_str())) {
        return Err(format!("unknown argument {k:?}: a call takes parameters, target and justification"));
    }
    let parameters: BTreeMap<String, Value> = match args.get("parameters") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.clone().into_iter().collect(),
        Some(_) => return Err("parameters must be an object".into()),
    };
    let target: Target = match args.get("target") {
        Some(t @ Value::Object(m)) if m.keys().all(|k| ["kind", "name", "namespace"].contains(&k.as_str())) => {
            serde_json::from_value(t.clone()).map_err(|e| format!("target: {e}"))?
        }
        Some(Value::Object(_)) => return Err("target takes only kind, name and namespace".into()),
        _ => return Err("a target is required: {\"kind\": …, \"name\": …, \"namespace\": …}".into()),
    };
    if target.kind.is_empty() || target.name.is_empty() {
        return Err("target needs a kind and a name".into());
    }
    let justification = match args.get("justification") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 8192 => s.clone(),
        Some(_) => return Err("justification must be a string of at most 8192 characters".into()),
    };
    Ok(ActionRequestSpec {
        agent: agent.into(),
        action: action.into(),
        parameters,
        target,
        justification,
        ..Default::default()
    })
}

/// What the agent is told about its request, from the request's status.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Not decided yet, or decided and still running: wait (up to the call's limit) and look again.
    Wait,
    /// Waiting for humans: the agent may poll (`warden_request`) or retry with the request state.
    Pending { text: String },
    /// Final: the result to return.
    Done { is_error: bool, text: String, structured: Value },
}

/// The answer for request `name` given its status and whether its action has an execution.
pub fn answer(name: &str, status: Option<&ActionRequestStatus>, executes: bool) -> Answer {
    let Some(s) = status else { return Answer::Wait };
    let Some(d) = s.decision else { return Answer::Wait };
    let structured = |extra: Value| {
        let mut v = json!({"request": name, "decision": d.as_str(), "message": s.message});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    };
    match d {
        Decision::Pending => Answer::Pending {
            text: format!(
                "pending approval: request {name} waits for humans ({}). Do not file it again; ask {} for \
                 its state, or retry this call later.",
                s.message, REQUEST_TOOL
            ),
        },
        Decision::AutoApproved | Decision::Approved => {
            let exec = s.execution.as_ref();
            match exec.and_then(|e| e.state) {
                None | Some(ExecutionState::Running) if executes => Answer::Wait,
                Some(ExecutionState::Failed) => Answer::Done {
                    is_error: true,
                    text: format!(
                        "{} but the execution failed: {}",
                        d.as_str(),
                        exec.map(|e| e.result.as_str()).unwrap_or("")
                    ),
                    structured: structured(json!({"execution": exec})),
                },
                state => {
                    let text = match (executes, exec) {
                        (true, Some(e)) => format!(
                            "{}: request {name} was executed ({}): {}",
                            d.as_str(),
                            state.map(|s| s.as_str()).unwrap_or("done"),
                            e.result
                        ),
                        _ => format!(
                            "{}: request {name} is recorded; carry the action out yourself with your own \
                             credentials, on exactly the target requested (anything else contains you).",
                            d.as_str()
                        ),
                    };
                    Answer::Done { is_error: false, text, structured: structured(json!({"execution": exec})) }
                }
            }
        }
        Decision::Recommended => Answer::Done {
            is_error: false,
            text: format!(
                "Recommended: request {name} is recorded as your recommendation; at the observe tier nothing is \
                 executed. A human decides what to do with it."
            ),
            structured: structured(json!({})),
        },
        Decision::Rejected | Decision::Denied | Decision::Expired => Answer::Done {
            is_error: true,
            text: format!(
                "{}: {}. The action did not run; do not retry it unchanged.",
                d.as_str(),
                s.message.trim_end_matches('.')
            ),
            structured: structured(json!({})),
        },
    }
}

/// What the agent reads about itself through `warden_status` (no drift score: that would be an oracle).
pub fn status(agent: &SocAgent) -> Value {
    let s = agent.status.clone().unwrap_or_default();
    json!({
        "agent": agent.metadata.name,
        "namespace": agent.metadata.namespace,
        "tier": agent.spec.tier.as_str(),
        "effectiveTier": s.effective_tier.unwrap_or(agent.spec.tier).as_str(),
        "phase": s.phase.map(|p| p.as_str()),
        "paused": s.phase == Some(Phase::Paused),
        "runsAlone": s.autonomous_actions,
        "needsApproval": s.gated_actions,
    })
}

/// What `warden_request` tells about a request: only the agent's own (filed as the agent, for it).
pub fn request_view(spec: &ActionRequestSpec, status: Option<&ActionRequestStatus>, name: &str) -> Value {
    let s = status.cloned().unwrap_or_default();
    json!({
        "request": name,
        "action": spec.action,
        "target": spec.target,
        "decision": s.decision.map(|d| d.as_str()),
        "message": s.message,
        "approvals": s.approvals.iter().map(|a| json!({"approver": a.approver, "decision": a.decision, "at": a.at})).collect::<Vec<_>>(),
        "requiredApprovals": s.required_approvals,
        "expiresAt": s.expires_at,
        "execution": s.execution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::{ExecutionStatus, Risk, SocAgentStatus};

    fn agent(tier: Tier, alone: &[&str]) -> SocAgent {
        let mut a = crate::testing::agent(tier);
        a.spec.actions = vec!["enrich".into(), "isolate".into()];
        a.spec.scope.namespaces = vec!["web".into()];
        a.status = Some(SocAgentStatus {
            effective_tier: Some(tier),
            phase: Some(Phase::Active),
            autonomous_actions: alone.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        a
    }

    fn action(risk: Risk, verbs: &[Verb], reversible: bool) -> SocActionSpec {
        let mut a = crate::testing::action(risk, "pods");
        a.grants[0].verbs = verbs.to_vec();
        a.reversible = reversible;
        a
    }

    #[test]
    fn only_agents_that_exist_and_are_not_paused_get_in() {
        let sa = "system:serviceaccount:agents:warden-bot";
        let active = |_: &str, _: &str| Some((Phase::Active, None));
        let cases: Vec<(Option<&str>, Result<(), &str>)> = vec![
            (None, Err("401")),
            (Some("alice"), Err("403 not a SOC Warden agent")),
            (Some("system:serviceaccount:agents:default"), Err("403 not a SOC Warden agent")),
            (Some(sa), Ok(())),
        ];
        for (user, want) in cases {
            let got = admit(user, active);
            match (want, got) {
                (Ok(()), Ok(k)) => assert_eq!(k, ("agents".into(), "bot".into())),
                (Err("401"), Err(Refusal::Unauthenticated(_))) => {}
                (Err(w), Err(Refusal::Forbidden(m))) => assert!(w.ends_with("agent") && m.contains("not a SOC Warden")),
                (w, g) => panic!("{user:?}: wanted {w:?}, got {g:?}"),
            }
        }
        let paused = |_: &str, _: &str| Some((Phase::Paused, Some("Drift".into())));
        assert!(matches!(admit(Some(sa), paused), Err(Refusal::Forbidden(m)) if m.contains("paused (Drift)")));
        assert!(
            matches!(admit(Some(sa), |_: &str, _: &str| None), Err(Refusal::Forbidden(m)) if m.contains("no SocAgent"))
        );
    }

    #[test]
    fn tools_are_the_agents_actions_with_hints_from_the_catalog() {
        let catalog = vec![
            ("enrich".to_string(), action(Risk::Low, &[Verb::Get, Verb::List], false)),
            ("isolate".to_string(), action(Risk::Medium, &[Verb::Create], true)),
            ("wipe".to_string(), action(Risk::Low, &[Verb::Delete], false)),
        ];
        let a = agent(Tier::Supervised, &["enrich"]);
        let t = tools(&a, &catalog, &AutonomyPolicySpec::default());
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["enrich", "isolate", STATUS_TOOL, REQUEST_TOOL], "only its own actions, then built-ins");
        assert!(t[0].read_only && !t[0].destructive && t[0].idempotent, "{:?}", t[0]);
        assert!(!t[1].read_only && !t[1].destructive, "reversible is not destructive: {:?}", t[1]);
        assert!(t[0].description.contains("Runs at once"), "{}", t[0].description);
        assert!(t[1].description.contains("Needs 2 approvals"), "{}", t[1].description);
        assert_eq!(t[1].input_schema["properties"]["target"]["properties"]["namespace"]["enum"], json!(["web"]));
        let observe = tools(&agent(Tier::Observe, &[]), &catalog, &AutonomyPolicySpec::default());
        assert!(observe[0].description.contains("recommendation"), "{}", observe[0].description);
    }

    #[test]
    fn a_parameter_schema_becomes_json_schema() {
        let p = |name: &str, t: ParameterType| ParameterSpec {
            name: name.into(),
            type_: t,
            required: true,
            pattern: None,
            allowed: vec![],
            max_length: None,
            minimum: None,
            maximum: None,
            target_kind: None,
        };
        let mut app = p("app", ParameterType::String);
        app.pattern = Some("[a-z]+".into());
        let mut n = p("n", ParameterType::Integer);
        n.allowed = vec!["1".into(), "2".into()];
        n.required = false;
        let s = input_schema(&[app, n, p("ip", ParameterType::Ip)], &[]);
        let props = &s["properties"]["parameters"]["properties"];
        assert_eq!(props["app"]["pattern"], json!("^(?:[a-z]+)$"));
        assert_eq!(props["n"]["enum"], json!([1, 2]));
        assert_eq!(s["properties"]["parameters"]["required"], json!(["app", "ip"]));
        assert_eq!(s["required"], json!(["target", "parameters"]));
    }

    #[test]
    fn arguments_are_read_strictly() {
        let args = |v: Value| v.as_object().cloned();
        let ok = request(
            "bot",
            "isolate",
            args(json!({"parameters": {"app": "web"}, "target": {"kind": "Pod", "name": "w", "namespace": "web"}}))
                .as_ref(),
        )
        .unwrap();
        assert_eq!(ok.parameters["app"], json!("web"));
        assert_eq!(ok.target.namespace.as_deref(), Some("web"));
        assert!(ok.requester.is_empty(), "the stamp sets the requester, never the arguments");
        for (bad, why) in [
            (json!({"target": {"kind": "Pod", "name": "w"}, "requester": "alice"}), "unknown argument"),
            (json!({"parameters": {"app": "web"}}), "a target is required"),
            (json!({"target": {"kind": "Pod", "name": "w", "extra": 1}}), "only kind, name"),
            (json!({"target": {"kind": "Pod", "name": "w"}, "parameters": [1]}), "must be an object"),
            (json!({"target": {"kind": "", "name": "w"}}), "needs a kind"),
        ] {
            let e = request("bot", "isolate", args(bad.clone()).as_ref()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn only_a_well_formed_traceparent_is_kept() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent(good).as_deref(), Some(good));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nx",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_follow_the_decision() {
        let st = |d: Option<Decision>, e: Option<ExecutionState>| ActionRequestStatus {
            decision: d,
            message: "because".into(),
            execution: e.map(|state| ExecutionStatus {
                state: Some(state),
                result: "applied".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        use Decision::*;
        use ExecutionState::*;
        let cases: Vec<(Option<Decision>, Option<ExecutionState>, bool, &str)> = vec![
            (None, None, true, "wait"),
            (Some(Pending), None, true, "pending"),
            (Some(AutoApproved), None, true, "wait"),
            (Some(AutoApproved), Some(Running), true, "wait"),
            (Some(AutoApproved), Some(Succeeded), true, "ok"),
            (Some(Approved), Some(Failed), true, "error"),
            (Some(AutoApproved), None, false, "ok"),
            (Some(Recommended), None, true, "ok"),
            (Some(Rejected), None, true, "error"),
            (Some(Denied), None, true, "error"),
            (Some(Expired), None, true, "error"),
        ];
        for (d, e, executes, want) in cases {
            let s = st(d, e);
            let got = match answer("r", Some(&s), executes) {
                Answer::Wait => "wait",
                Answer::Pending { .. } => "pending",
                Answer::Done { is_error: false, .. } => "ok",
                Answer::Done { is_error: true, .. } => "error",
            };
            assert_eq!(got, want, "{d:?} {e:?} executes={executes}");
        }
        assert_eq!(answer("r", None, true), Answer::Wait);
    }
}
