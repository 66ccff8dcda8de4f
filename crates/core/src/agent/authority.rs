//! Who may change what on a SocAgent. RBAC decides who may patch the object at all; the fields a
//! change touches decide which **virtual verb** on `socagents.socwarden.io` the user must also
//! hold (checked by the validating webhook with a SubjectAccessReview, the way cert-manager checks
//! `approve` on signers): `pause` for `spec.paused` alone (responders), `update` for everything
//! else — approvers, scope, actions, tier, onDrift, learning (editors). Without it a lead who may
//! only pause could rewrite the approvers and approve alone.
//!
//! Nobody may tie a SocAgent's or a DriftReport's lifetime to another object either
//! (`lifetime_refusal`): with an owner reference, whoever may delete the owner — or create one
//! that is gone — has the garbage collector delete the agent, and with it its drift pause. Pure.

use serde_json::Value;

/// Setting or clearing `spec.paused` (`socwarden-responder`).
pub const PAUSE: &str = "pause";
/// Changing any other field of the spec (`socwarden-editor`).
pub const UPDATE: &str = "update";

/// The verbs a change of a SocAgent's `spec` from `old` to `new` needs (none for a change of
/// metadata or status only).
pub fn needed(old: Option<&Value>, new: Option<&Value>) -> Vec<&'static str> {
    let paused = |s: Option<&Value>| s.and_then(|s| s.get("paused")).and_then(Value::as_bool).unwrap_or(false);
    let rest = |s: Option<&Value>| {
        let mut s = s.cloned().unwrap_or(Value::Null);
        if let Some(o) = s.as_object_mut() {
            o.remove("paused");
        }
        s
    };
    let mut verbs = Vec::new();
    if paused(old) != paused(new) {
        verbs.push(PAUSE);
    }
    if rest(old) != rest(new) {
        verbs.push(UPDATE);
    }
    verbs
}

/// Why `user` may not make a change that needs `verb`, and who may.
pub fn refusal(user: &str, verb: &str, namespace: &str, name: &str) -> String {
    let what = if verb == PAUSE { "spec.paused" } else { "the spec (other than spec.paused)" };
    format!(
        "{user} may not change {what} of SocAgent {namespace}/{name}: that needs the verb '{verb}' on socagents.socwarden.io (the socwarden-responder role pauses and resumes; socwarden-editor changes everything else)"
    )
}

/// One entry of `metadata.ownerReferences`, as much of it as the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: String,
    pub kind: String,
    pub name: String,
}

/// Why a change of a SocAgent or DriftReport (`kind`) from owners `old` to `new` is refused: any
/// owner reference it did not carry before. Removing one is allowed (a report written by an
/// earlier version carried its agent's). Nobody is exempt, the operator included: it never sets
/// one.
pub fn lifetime_refusal(kind: &str, namespace: &str, name: &str, old: &[Owner], new: &[Owner]) -> Option<String> {
    let added: Vec<String> =
        new.iter().filter(|o| !old.iter().any(|x| x.uid == o.uid)).map(|o| format!("{} {}", o.kind, o.name)).collect();
    (!added.is_empty()).then(|| {
        format!(
            "{kind} {namespace}/{name} cannot be owned by another object (metadata.ownerReferences: {}): the garbage collector would delete it with its owner, and with it a drift pause that only an approver may lift; remove metadata.ownerReferences",
            added.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_owner_may_be_added_to_an_agent_or_its_report() {
        let owner = |uid: &str, kind: &str| Owner { uid: uid.into(), kind: kind.into(), name: "bait".into() };
        let (cm, agent) = (owner("cm-uid", "ConfigMap"), owner("agent-uid", "SocAgent"));
        let cases: [(&[Owner], &[Owner], bool, &str); 6] = [
            (&[], &[], false, "none before, none after"),
            (&[], std::slice::from_ref(&cm), true, "a ConfigMap the lead may delete"),
            (&[], std::slice::from_ref(&agent), true, "even a SocAgent (a report owned by its agent goes with it)"),
            (std::slice::from_ref(&agent), &[], false, "removing one (an older report's) is allowed"),
            (std::slice::from_ref(&agent), std::slice::from_ref(&agent), false, "one already there is no change"),
            (std::slice::from_ref(&agent), &[agent.clone(), cm.clone()], true, "adding a second"),
        ];
        for (old, new, refused, why) in cases {
            assert_eq!(lifetime_refusal("SocAgent", "soc", "bot", old, new).is_some(), refused, "{why}");
        }
        let m = lifetime_refusal("DriftReport", "soc", "bot", &[], &[cm]).unwrap();
        assert!(m.contains("DriftReport soc/bot cannot be owned") && m.contains("ConfigMap bait"), "{m}");
    }

    #[test]
    fn each_field_needs_its_verb() {
        let old =
            json!({"tier": "supervised", "paused": false, "approvers": {"groups": ["soc-leads"], "minApprovals": 2}});
        let check = |new: Value| needed(Some(&old), Some(&new));
        assert_eq!(check(old.clone()), Vec::<&str>::new(), "no change, no verb");
        let mut paused = old.clone();
        paused["paused"] = json!(true);
        assert_eq!(check(paused), vec![PAUSE]);
        let mut quorum = old.clone();
        quorum["approvers"]["minApprovals"] = json!(1);
        assert_eq!(check(quorum.clone()), vec![UPDATE]);
        quorum["paused"] = json!(true);
        assert_eq!(check(quorum), vec![PAUSE, UPDATE], "both, when both change");
        // An absent `paused` is false: writing the default is no change.
        let mut without = old.clone();
        without.as_object_mut().unwrap().remove("paused");
        assert_eq!(check(without), Vec::<&str>::new());
        assert_eq!(needed(None, Some(&old)), vec![UPDATE]);
    }

    #[test]
    fn the_refusal_names_the_verb_and_the_roles() {
        let m = refusal("lead-a", UPDATE, "soc", "bot");
        assert!(
            m.contains("lead-a") && m.contains("'update'") && m.contains("soc/bot") && m.contains("socwarden-editor"),
            "{m}"
        );
        assert!(refusal("x", PAUSE, "soc", "bot").contains("spec.paused of"));
    }
}
