//! Helpers for the randomized tests: a small deterministic generator and random JSON.

use serde_json::{Value, json};

/// xorshift64: deterministic, so a failing input can be reproduced from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A random JSON value using the field names and words the project's objects use.
pub fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(["", "bot", "isolate", "web", "approve", "deny", "\u{0}", "ä", "${x}"][rng.below(9)]),
        4 => json!(rng.next_u64() as f64 / 3.0),
        5 => Value::Array((0..rng.below(3)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let keys = [
                "agent",
                "action",
                "target",
                "kind",
                "name",
                "namespace",
                "decision",
                "actionRequest",
                "promotion",
                "tier",
                "spec",
                "metadata",
                "parameters",
            ];
            Value::Object(
                (0..rng.below(4))
                    .map(|_| (keys[rng.below(keys.len())].to_string(), random_value(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

// Shared fixtures: small builders for the objects the decisions take, so that the gate, the
// approvals, the promotion and the webhook tests build them one way.

use crate::admission::approvals::Subject;
use crate::admission::signature::{self, Key};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use socwarden_api::{
    Approval, ApprovalDecision, ApprovalSpec, Approvers, Phase, PromotionRef, ResumeRef, Scope, SocAgent, SocAgentSpec,
    SocAgentStatus, Tier,
};

/// The namespace every fixture agent lives in.
pub const NS: &str = "agents";

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

/// The signing key of the fixtures.
pub fn key() -> Key {
    Key::new(b"test key")
}

/// Agent `bot` in `NS` at `tier` (declared and effective), Active, with actions `isolate` and
/// `read`, scope `web`, approvers user `alice` and group `leads`, quorum 2.
pub fn agent(tier: Tier) -> SocAgent {
    let mut a = SocAgent::new(
        "bot",
        SocAgentSpec {
            tier,
            actions: vec!["isolate".into(), "read".into()],
            scope: Scope { namespaces: vec!["web".into()] },
            approvers: Approvers { users: vec!["alice".into()], groups: vec!["leads".into()], min_approvals: 2 },
            policy_ref: "default".into(),
            ..Default::default()
        },
    );
    a.metadata.namespace = Some(NS.into());
    a.metadata.uid = Some("agent-uid".into());
    a.status = Some(SocAgentStatus { phase: Some(Phase::Active), effective_tier: Some(tier), ..Default::default() });
    a
}

/// An Approval of `subject` by `who` (in `groups`), created at `at` and stamped (bound and signed
/// with `key`) exactly as the admission webhook stamps one.
pub fn approval(
    key: &Key,
    agent: &SocAgent,
    subject: &Subject,
    who: &str,
    groups: &[&str],
    d: ApprovalDecision,
    at: Timestamp,
) -> Approval {
    use kube_core::ResourceExt;
    let groups: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
    let agent_uid = agent.uid().unwrap_or_default();
    let mut seen = None;
    let (action_request, promotion, resume, bound) = match subject {
        Subject::Request { uid, binding, .. } => {
            // As the console and `kubectl warden` send it: the content the approver was shown.
            seen = Some(binding.to_string());
            (Some("r1".to_string()), None, None, signature::bound_to_request(uid, binding))
        }
        Subject::Promotion { tier, .. } => (
            None,
            Some(PromotionRef { agent: agent.name_any(), tier: *tier }),
            None,
            signature::bound_to_promotion(&agent_uid, *tier),
        ),
        Subject::Resume { pause_id } => (
            None,
            None,
            Some(ResumeRef { agent: agent.name_any(), pause_id: pause_id.to_string() }),
            signature::bound_to_resume(&agent_uid, pause_id),
        ),
    };
    let name = format!("{who}-{}", at.as_second());
    let mut spec = ApprovalSpec {
        action_request,
        promotion,
        resume,
        decision: d,
        comment: String::new(),
        approver: who.into(),
        approver_groups: groups,
        signature: String::new(),
        bound_to: bound,
        seen,
    };
    spec.signature = key.sign(&signature::approval_message(NS, &name, &spec));
    let mut a = Approval::new(&name, spec);
    a.metadata.namespace = Some(NS.into());
    a.metadata.creation_timestamp = Some(Time(at));
    a
}

/// A catalog entry of `risk` whose one grant is `get` on core `resource`.
pub fn action(risk: socwarden_api::Risk, resource: &str) -> socwarden_api::SocActionSpec {
    socwarden_api::SocActionSpec {
        risk,
        reversible: true,
        description: String::new(),
        grants: vec![socwarden_api::Grant {
            api_groups: vec!["".into()],
            resources: vec![resource.into()],
            verbs: vec![socwarden_api::Verb::Get],
            resource_names: vec![],
        }],
        ..Default::default()
    }
}
