//! What the admission webhook signs, and how the reconciler checks it. An approval or a request
//! only counts when its stamp carries a valid HMAC made with a key only the operator holds, so
//! bypassing the webhook (deleting its configuration, failurePolicy Ignore) opens nothing.

use ring::{digest, hmac};
use serde_json::Value;
use socwarden_api::{ActionRequestSpec, ApprovalSpec, SocActionSpec, Target, Tier};
use std::collections::BTreeMap;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The operator's signing key.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    pub fn sign(&self, message: &str) -> String {
        hex(hmac::sign(&self.0, message.as_bytes()).as_ref())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        unhex(signature).is_some_and(|sig| hmac::verify(&self.0, message.as_bytes(), &sig).is_ok())
    }
}

/// The content an approval is bound to: agent, action, parameters and target (SHA-256, hex).
pub fn binding(agent: &str, action: &str, parameters: &BTreeMap<String, Value>, target: &Target) -> String {
    // serde_json maps are ordered, so this encoding is canonical.
    let canonical = serde_json::to_string(&(agent, action, parameters, target)).unwrap_or_default();
    hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

pub fn request_binding(spec: &ActionRequestSpec) -> String {
    binding(&spec.agent, &spec.action, &spec.parameters, &spec.target)
}

/// What the webhook signs for the ActionRequest `namespace/name`: who asked for exactly what, and
/// why. The message is a JSON array of strings (and one of groups): each field is quoted and
/// escaped, so no two different stamps share an encoding (joining with `,` and newlines let
/// groups `["a,b"]` and `["a", "b"]` sign alike).
pub fn request_message(namespace: &str, name: &str, spec: &ActionRequestSpec) -> String {
    canonical(&(
        "socwarden.io/ActionRequest",
        namespace,
        name,
        request_binding(spec),
        &spec.justification,
        &spec.requester,
        &spec.requester_groups,
        &spec.nonce,
    ))
}

fn canonical(fields: &impl serde::Serialize) -> String {
    serde_json::to_string(fields).unwrap_or_default()
}

/// The content of a SocAction (SHA-256, hex, of its whole spec: risk, parameters, grants,
/// execution, limits, protected targets…). Struct fields serialize in a fixed order and maps are
/// ordered, so the encoding is canonical.
pub fn action_hash(action: &SocActionSpec) -> String {
    let canonical = serde_json::to_string(action).unwrap_or_default();
    hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

/// What an approval of a request approves: the request's content and the content of its action,
/// as the approver saw them. An edit of the action while the request waits leaves earlier approvals
/// bound to the old content.
pub fn approved_content(spec: &ActionRequestSpec, action_hash: &str) -> String {
    let both = format!("{}\n{action_hash}", request_binding(spec));
    hex(digest::digest(&digest::SHA256, both.as_bytes()).as_ref())
}

/// The content hash of a request as shown with its action: what the console, `kubectl warden
/// pending|approve` and the chat notices show an approver, what the approver's Approval names in
/// `spec.seen`, and what the webhook and the gate compare it with.
pub fn request_content(spec: &ActionRequestSpec, action: &SocActionSpec) -> String {
    approved_content(spec, &action_hash(action))
}

/// What an Approval is bound to.
pub fn bound_to_request(request_uid: &str, binding: &str) -> String {
    format!("request/{request_uid}/{binding}")
}

pub fn bound_to_promotion(agent_uid: &str, tier: Tier) -> String {
    format!("promotion/{agent_uid}/{tier}")
}

pub fn bound_to_resume(agent_uid: &str, pause_id: &str) -> String {
    format!("resume/{agent_uid}/{pause_id}")
}

/// What the webhook signs for the Approval `namespace/name`: who decided what, on what, the
/// content they were shown, and the comment they gave (canonical like `request_message`; the
/// signature field itself is not signed). An approval without `seen` signs the eight fields it
/// signed before `seen` existed; one with it signs nine (JSON arrays of different lengths never
/// share an encoding).
pub fn approval_message(namespace: &str, name: &str, s: &ApprovalSpec) -> String {
    let fields =
        ("socwarden.io/Approval", namespace, name, &s.bound_to, &s.approver, &s.approver_groups, s.decision.as_str());
    match &s.seen {
        None => canonical(&(fields.0, fields.1, fields.2, fields.3, fields.4, fields.5, fields.6, &s.comment)),
        Some(seen) => {
            canonical(&(fields.0, fields.1, fields.2, fields.3, fields.4, fields.5, fields.6, &s.comment, seen))
        }
    }
}

/// Whether an Approval's stamp carries a valid signature (whatever it is bound to).
pub fn approval_is_signed(namespace: &str, name: &str, s: &ApprovalSpec, key: &Key) -> bool {
    !s.signature.is_empty() && key.verify(&approval_message(namespace, name, s), &s.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) }
    }

    #[test]
    fn signatures_verify_only_for_the_same_message_and_key() {
        let k = Key::new(b"secret");
        let sig = k.sign("hello");
        assert!(k.verify("hello", &sig));
        assert!(!k.verify("hello!", &sig));
        assert!(!Key::new(b"other").verify("hello", &sig));
        assert!(!k.verify("hello", "zz"));
        assert!(!k.verify("hello", ""));
        assert!(!k.verify("hello", "abc"));
    }

    #[test]
    fn binding_changes_with_any_part_and_ignores_map_order() {
        let p1: BTreeMap<String, Value> = [("a".to_string(), json!(1)), ("b".to_string(), json!("x"))].into();
        let p2: BTreeMap<String, Value> = [("b".to_string(), json!("x")), ("a".to_string(), json!(1))].into();
        let b = binding("bot", "isolate", &p1, &target());
        assert_eq!(b, binding("bot", "isolate", &p2, &target()));
        assert_ne!(b, binding("bot2", "isolate", &p1, &target()));
        assert_ne!(b, binding("bot", "block", &p1, &target()));
        let mut t = target();
        t.name = "web-2".into();
        assert_ne!(b, binding("bot", "isolate", &p1, &t));
        let p3: BTreeMap<String, Value> = [("a".to_string(), json!(2))].into();
        assert_ne!(b, binding("bot", "isolate", &p3, &target()));
        assert_eq!(b.len(), 64);
    }

    #[test]
    fn the_approved_content_changes_with_the_action() {
        let spec = ActionRequestSpec { agent: "bot".into(), action: "isolate".into(), ..Default::default() };
        let a = SocActionSpec { risk: socwarden_api::Risk::High, ..Default::default() };
        let mut lowered = a.clone();
        lowered.risk = socwarden_api::Risk::Low;
        assert_eq!(action_hash(&a), action_hash(&a.clone()));
        assert_ne!(action_hash(&a), action_hash(&lowered));
        let mut edited = a.clone();
        edited.execution = Some(socwarden_api::Execution { manifest: Some("kind: NetworkPolicy".into()), http: None });
        assert_ne!(approved_content(&spec, &action_hash(&a)), approved_content(&spec, &action_hash(&edited)));
    }

    fn approval(who: &str, groups: &[&str], d: socwarden_api::ApprovalDecision) -> ApprovalSpec {
        ApprovalSpec {
            bound_to: "request/u/b".into(),
            approver: who.into(),
            approver_groups: groups.iter().map(|g| g.to_string()).collect(),
            decision: d,
            ..Default::default()
        }
    }

    #[test]
    fn approval_message_covers_every_stamped_and_visible_field() {
        use socwarden_api::ApprovalDecision::*;
        let a = approval("alice", &["g"], Approve);
        let m = |ns: &str, name: &str, s: &ApprovalSpec| approval_message(ns, name, s);
        let base = m("ns", "a1", &a);
        assert_ne!(base, m("ns", "a1", &approval("bob", &["g"], Approve)));
        assert_ne!(base, m("ns", "a1", &approval("alice", &["g"], Deny)));
        assert_ne!(base, m("other", "a1", &a), "the namespace");
        assert_ne!(base, m("ns", "a2", &a), "the name");
        let commented = ApprovalSpec { comment: "ok".into(), ..a.clone() };
        assert_ne!(base, m("ns", "a1", &commented), "the comment");
        let signed = ApprovalSpec { signature: "x".into(), ..a.clone() };
        assert_eq!(base, m("ns", "a1", &signed), "not the signature itself");
        let seen = |h: &str| ApprovalSpec { seen: Some(h.into()), ..a.clone() };
        assert_ne!(base, m("ns", "a1", &seen("ab")), "the content shown");
        assert_ne!(m("ns", "a1", &seen("ab")), m("ns", "a1", &seen("cd")), "which content was shown");
        // Moving the comment into `seen` does not sign alike either.
        let moved = ApprovalSpec { comment: String::new(), seen: Some("ok".into()), ..a.clone() };
        assert_ne!(m("ns", "a1", &commented), m("ns", "a1", &moved));
    }

    /// Inputs whose old encoding (fields joined by newlines, groups by commas) was the same now
    /// sign differently.
    #[test]
    fn formerly_colliding_stamps_verify_differently() {
        use socwarden_api::ApprovalDecision::*;
        let k = Key::new(b"k");
        // One group "soc-leads,admins" vs two groups: the old encoding joined both to the same text.
        let one = approval("alice", &["soc-leads,admins"], Approve);
        let two = approval("alice", &["soc-leads", "admins"], Approve);
        let sig = k.sign(&approval_message("ns", "a1", &one));
        assert!(k.verify(&approval_message("ns", "a1", &one), &sig));
        assert!(!k.verify(&approval_message("ns", "a1", &two), &sig));
        // A newline moved from one field to the next: "alice\nx" + "g" vs "alice" + "x\ng".
        let left = approval("alice\nx", &["g"], Approve);
        let right = approval("alice", &["x\ng"], Approve);
        assert_ne!(approval_message("ns", "a1", &left), approval_message("ns", "a1", &right));
        // Requests: the same for requester and groups, and the justification is covered.
        let r = |who: &str, groups: &[&str], why: &str| ActionRequestSpec {
            requester: who.into(),
            requester_groups: groups.iter().map(|g| g.to_string()).collect(),
            justification: why.into(),
            ..Default::default()
        };
        let sig = k.sign(&request_message("ns", "r1", &r("bob", &["a,b"], "alert 1")));
        assert!(!k.verify(&request_message("ns", "r1", &r("bob", &["a", "b"], "alert 1")), &sig));
        assert!(!k.verify(&request_message("ns", "r1", &r("bob", &["a,b"], "alert 2")), &sig), "the justification");
        assert!(!k.verify(&request_message("ns", "r2", &r("bob", &["a,b"], "alert 1")), &sig), "the name");
        assert!(k.verify(&request_message("ns", "r1", &r("bob", &["a,b"], "alert 1")), &sig));
    }
}
