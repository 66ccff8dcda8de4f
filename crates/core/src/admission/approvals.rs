//! Whether an Approval counts — one check for the three things a human approves: an ActionRequest,
//! a promotion and the resume of a drift pause. The gate, the promotion rules and the pause all
//! count approvals through `tally`, so a rule added here holds for all three.
//!
//! An approval counts when, in this order: it carries the webhook's valid signature; it is bound
//! to exactly this subject (the request's UID and content hash, the agent and tier, the pause id);
//! it was given inside the subject's window; and its approver may approve for this agent (a human,
//! among the agent's approvers, not the requester).

use crate::admission::identity::is_service_account;
use crate::admission::signature::{self, Key};
use jiff::Timestamp;
use kube_core::ResourceExt;
use socwarden_api::{Approval, ApprovalDecision, ApprovalRecord, SocAgent, Tier};

/// What is being approved, with what an approval of it must be bound to.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject<'a> {
    /// An ActionRequest: bound to its UID and content; given before it expired; never by its
    /// requester.
    Request { uid: &'a str, binding: &'a str, requester: &'a str, expires: Timestamp },
    /// The promotion of the agent to `tier`: given since the agent reached its current tier
    /// (creation times have whole seconds, so compared at that precision).
    Promotion { tier: Tier, since: Timestamp },
    /// Lifting the drift pause `pause_id`.
    Resume { pause_id: &'a str },
}

impl Subject<'_> {
    fn bound(&self, agent: &SocAgent) -> String {
        let agent_uid = agent.uid().unwrap_or_default();
        match self {
            Subject::Request { uid, binding, .. } => signature::bound_to_request(uid, binding),
            Subject::Promotion { tier, .. } => signature::bound_to_promotion(&agent_uid, *tier),
            Subject::Resume { pause_id } => signature::bound_to_resume(&agent_uid, pause_id),
        }
    }

    fn requester(&self) -> Option<&str> {
        match self {
            Subject::Request { requester, .. } => Some(requester),
            _ => None,
        }
    }

    /// Why an approval given at `at` is outside this subject's window.
    fn outside_window(&self, at: Timestamp) -> Option<&'static str> {
        match self {
            Subject::Request { expires, .. } if at > *expires => Some("given after the request expired"),
            Subject::Promotion { since, .. } if at < Timestamp::from_second(since.as_second()).unwrap_or(*since) => {
                Some("given before the agent reached its current tier")
            }
            _ => None,
        }
    }
}

/// Whether `user` (with `groups`) is among the agent's approvers.
pub fn is_approver(agent: &SocAgent, user: &str, groups: &[String]) -> bool {
    let a = &agent.spec.approvers;
    a.users.iter().any(|u| u == user) || a.groups.iter().any(|g| groups.contains(g))
}

/// Why a human may not approve for this agent (None: they may). Shared by the webhook, which
/// refuses, and `check`, which ignores.
pub fn approver_problem(
    agent: &SocAgent,
    approver: &str,
    groups: &[String],
    requester: Option<&str>,
) -> Option<String> {
    if approver.is_empty() {
        return Some("the approval carries no approver (it was not stamped by the admission webhook)".into());
    }
    if is_service_account(approver, groups) {
        return Some(format!("{approver} is a ServiceAccount; only humans approve"));
    }
    if requester == Some(approver) {
        return Some(format!("{approver} requested this action and cannot approve it too"));
    }
    if !is_approver(agent, approver, groups) {
        let a = &agent.spec.approvers;
        return Some(format!(
            "{approver} is not an approver of SocAgent {} (users {:?}, groups {:?})",
            agent.name_any(),
            a.users,
            a.groups
        ));
    }
    None
}

/// The first characters of a content hash, as messages show it.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Why an approval of a request cannot stand on what its approver was shown (None: it can).
/// `seen` is the content hash (`signature::request_content`) the approver reviewed, `current`
/// the request's content now. An approval names what it approves: without a hash, or with one the
/// request no longer has (its SocAction was edited after the page, the `pending` list or the chat
/// notice showed it), the approver would approve content they never saw. A deny needs no hash:
/// refusing is safe whatever changed. Shared by the webhook, which refuses, and `check`, which
/// ignores.
pub fn seen_problem(decision: ApprovalDecision, seen: Option<&str>, current: &str) -> Option<String> {
    match (decision, seen) {
        (ApprovalDecision::Deny, _) => None,
        (ApprovalDecision::Approve, Some(s)) if s == current => None,
        (ApprovalDecision::Approve, None) => Some(
            "an approval of an ActionRequest names the content its approver reviewed, and this one names none \
             (spec.seen is empty): review the request with `kubectl warden approve <request>` or the console, \
             which show what runs and send its content hash"
                .into(),
        ),
        (ApprovalDecision::Approve, Some(s)) => Some(format!(
            "the action changed since you looked: you reviewed content {}, the request's content is now {} \
             (its SocAction was edited); review it again and approve what is shown now",
            short(s),
            short(current)
        )),
    }
}

/// Why `approval` does not count for `subject` (None: it counts). `now` stands in for a missing
/// creation time.
pub fn check(approval: &Approval, agent: &SocAgent, subject: &Subject, key: &Key, now: Timestamp) -> Option<String> {
    let s = &approval.spec;
    // Signed for the agent's namespace: an approval copied into another namespace does not verify.
    let ns = agent.namespace().unwrap_or_default();
    if !signature::approval_is_signed(&ns, &approval.name_any(), s, key) {
        return Some("not stamped by the admission webhook (missing or invalid signature)".into());
    }
    // What its approver saw must be what it approves (the webhook refuses the rest; this holds
    // even for a signed approval stamped by a webhook that did not check).
    if let Subject::Request { binding, .. } = subject
        && let Some(why) = seen_problem(s.decision, s.seen.as_deref(), binding)
    {
        return Some(why);
    }
    if s.bound_to != subject.bound(agent) {
        return Some("bound to another request or to different content".into());
    }
    if let Subject::Resume { pause_id } = subject
        && s.resume.as_ref().is_none_or(|r| r.pause_id != *pause_id)
    {
        return Some("names another pause".into());
    }
    if let Some(why) = subject.outside_window(created(approval, now)) {
        return Some(why.into());
    }
    approver_problem(agent, &s.approver, &s.approver_groups, subject.requester())
}

fn created(a: &Approval, now: Timestamp) -> Timestamp {
    a.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now)
}

/// The approvals of one subject, counted: distinct approvers who approved, the first valid deny,
/// and every approval that did not count with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// One per approver, oldest first.
    pub approved: Vec<ApprovalRecord>,
    pub denied: Option<ApprovalRecord>,
    /// (approval name, why it does not count).
    pub ignored: Vec<(String, String)>,
}

impl Tally {
    /// The approvers who approved, sorted.
    pub fn approvers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.approved.iter().map(|r| r.approver.clone()).collect();
        v.sort();
        v
    }
}

/// Counts `approvals` of `subject`, oldest first (by creation time, then name).
pub fn tally(approvals: &[&Approval], agent: &SocAgent, subject: &Subject, key: &Key, now: Timestamp) -> Tally {
    let mut sorted: Vec<&Approval> = approvals.to_vec();
    sorted.sort_by_key(|a| (created(a, now), a.name_any()));
    let mut t = Tally::default();
    for a in sorted {
        if let Some(why) = check(a, agent, subject, key, now) {
            t.ignored.push((a.name_any(), why));
            continue;
        }
        let s = &a.spec;
        let record = ApprovalRecord {
            name: a.name_any(),
            approver: s.approver.clone(),
            decision: s.decision,
            at: created(a, now).to_string(),
        };
        match s.decision {
            ApprovalDecision::Deny if t.denied.is_none() => t.denied = Some(record),
            ApprovalDecision::Deny => {}
            ApprovalDecision::Approve if !t.approved.iter().any(|c| c.approver == record.approver) => {
                t.approved.push(record)
            }
            ApprovalDecision::Approve => t.ignored.push((a.name_any(), format!("{} already approved", s.approver))),
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NS, agent, approval, key, ts};
    use socwarden_api::Tier;

    fn subjects() -> Vec<Subject<'static>> {
        vec![
            Subject::Request {
                uid: "req-uid",
                binding: "b",
                requester: "mallory",
                expires: ts("2026-01-01T00:15:00Z"),
            },
            Subject::Promotion { tier: Tier::Autonomous, since: ts("2026-01-01T00:00:00Z") },
            Subject::Resume { pause_id: "drift-1" },
        ]
    }

    /// The same approver rules hold for every subject: that is the point of one check.
    #[test]
    fn one_rule_for_every_subject() {
        let k = key();
        let bot = agent(Tier::Supervised);
        let now = ts("2026-01-01T00:05:00Z");
        for subject in subjects() {
            let name = format!("{subject:?}");
            let ok = approval(&k, &bot, &subject, "alice", &[], ApprovalDecision::Approve, now);
            assert_eq!(check(&ok, &bot, &subject, &k, now), None, "{name}: alice is an approver");
            let by_group = approval(&k, &bot, &subject, "carol", &["leads"], ApprovalDecision::Approve, now);
            assert_eq!(check(&by_group, &bot, &subject, &k, now), None, "{name}: carol is in leads");
            for (who, groups, why) in [
                ("eve", &[][..], "not an approver"),
                ("system:serviceaccount:agents:warden-bot", &["leads"][..], "ServiceAccount"),
                ("", &[][..], "no approver"),
            ] {
                let a = approval(&k, &bot, &subject, who, groups, ApprovalDecision::Approve, now);
                let got = check(&a, &bot, &subject, &k, now).unwrap_or_default();
                assert!(got.contains(why), "{name}: {who:?} must be refused for {why:?}, got {got:?}");
            }
            let mut forged = ok.clone();
            forged.spec.approver = "bob".into();
            assert!(check(&forged, &bot, &subject, &k, now).unwrap_or_default().contains("signature"), "{name}");
            let other = crate::admission::signature::Key::new(b"another key");
            assert!(check(&ok, &bot, &subject, &other, now).unwrap_or_default().contains("signature"), "{name}");
        }
    }

    #[test]
    fn an_approval_counts_only_for_its_own_subject() {
        let k = key();
        let bot = agent(Tier::Supervised);
        let now = ts("2026-01-01T00:05:00Z");
        let all = subjects();
        for (i, a) in all.iter().enumerate() {
            let given = approval(&k, &bot, a, "alice", &[], ApprovalDecision::Approve, now);
            for (j, b) in all.iter().enumerate() {
                let counts = check(&given, &bot, b, &k, now).is_none();
                assert_eq!(counts, i == j, "approval of {a:?} checked against {b:?}");
            }
        }
        let other_pause = Subject::Resume { pause_id: "drift-2" };
        let given = approval(&k, &bot, &all[2], "alice", &[], ApprovalDecision::Approve, now);
        assert!(check(&given, &bot, &other_pause, &k, now).is_some());
    }

    #[test]
    fn windows_and_the_requester() {
        let k = key();
        let bot = agent(Tier::Supervised);
        let request = &subjects()[0];
        let late = approval(&k, &bot, request, "alice", &[], ApprovalDecision::Approve, ts("2026-01-01T00:16:00Z"));
        assert!(check(&late, &bot, request, &k, ts("2026-01-01T00:16:00Z")).unwrap().contains("expired"));
        let own =
            Subject::Request { uid: "req-uid", binding: "b", requester: "alice", expires: ts("2026-01-01T00:15:00Z") };
        let a = approval(&k, &bot, &own, "alice", &[], ApprovalDecision::Approve, ts("2026-01-01T00:01:00Z"));
        assert!(check(&a, &bot, &own, &k, ts("2026-01-01T00:01:00Z")).unwrap().contains("requested this action"));
        let promotion = &subjects()[1];
        let early = approval(&k, &bot, promotion, "alice", &[], ApprovalDecision::Approve, ts("2025-12-31T23:59:59Z"));
        assert!(check(&early, &bot, promotion, &k, ts("2026-01-01T00:01:00Z")).unwrap().contains("current tier"));
        // Same second as the tier change: counts (creation times have whole seconds).
        let same = Subject::Promotion { tier: Tier::Autonomous, since: ts("2026-01-01T00:00:00.700Z") };
        let a = approval(&k, &bot, &same, "alice", &[], ApprovalDecision::Approve, ts("2026-01-01T00:00:00Z"));
        assert_eq!(check(&a, &bot, &same, &k, ts("2026-01-01T00:01:00Z")), None);
    }

    /// Attack 10: the approver was shown one content, the action changed, the approval names the
    /// old content. Whatever it is bound to, it does not count; nor does one that names none.
    #[test]
    fn an_approval_counts_only_for_the_content_its_approver_saw() {
        use ApprovalDecision::*;
        let (current, old) = ("c".repeat(64), "0".repeat(64));
        for (decision, seen, expected) in [
            (Approve, Some(current.as_str()), None),
            (
                Approve,
                Some(old.as_str()),
                Some("the action changed since you looked: you reviewed content 000000000000"),
            ),
            (Approve, None, Some("names none (spec.seen is empty)")),
            (Deny, None, None),
            (Deny, Some(old.as_str()), None),
        ] {
            let got = seen_problem(decision, seen, &current);
            match expected {
                None => assert_eq!(got, None, "{decision:?} having seen {seen:?}"),
                Some(why) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(why)),
                    "{decision:?} having seen {seen:?}: expected {why:?}, got {got:?}"
                ),
            }
        }

        // Through `check`: signed and bound to the current content, but it names the old one.
        let k = key();
        let bot = agent(Tier::Supervised);
        let now = ts("2026-01-01T00:05:00Z");
        let subject = Subject::Request {
            uid: "req-uid",
            binding: &current,
            requester: "mallory",
            expires: ts("2026-01-01T00:15:00Z"),
        };
        let ok = approval(&k, &bot, &subject, "alice", &[], Approve, now);
        assert_eq!(check(&ok, &bot, &subject, &k, now), None, "it names what it approves");
        for seen in [Some(old.clone()), None] {
            let mut stale = ok.clone();
            stale.spec.seen = seen.clone();
            stale.spec.signature = k.sign(&signature::approval_message(NS, &stale.name_any(), &stale.spec));
            let why = check(&stale, &bot, &subject, &k, now).unwrap_or_default();
            assert!(why.contains("review"), "having seen {seen:?}: {why}");
            let refs = [&stale];
            assert!(tally(&refs, &bot, &subject, &k, now).approved.is_empty(), "having seen {seen:?}");
        }
    }

    #[test]
    fn tally_counts_each_approver_once_and_the_first_deny() {
        let k = key();
        let bot = agent(Tier::Supervised);
        let s = &subjects()[1];
        let at = |m: u32| ts(&format!("2026-01-01T00:0{m}:00Z"));
        let list = [
            approval(&k, &bot, s, "alice", &[], ApprovalDecision::Approve, at(1)),
            approval(&k, &bot, s, "alice", &[], ApprovalDecision::Approve, at(2)),
            approval(&k, &bot, s, "carol", &["leads"], ApprovalDecision::Approve, at(3)),
            approval(&k, &bot, s, "eve", &[], ApprovalDecision::Deny, at(4)),
            approval(&k, &bot, s, "dave", &["leads"], ApprovalDecision::Deny, at(5)),
            approval(&k, &bot, s, "carol", &["leads"], ApprovalDecision::Deny, at(6)),
        ];
        let refs: Vec<&Approval> = list.iter().collect();
        let t = tally(&refs, &bot, s, &k, at(9));
        assert_eq!(t.approvers(), vec!["alice".to_string(), "carol".to_string()]);
        assert_eq!(
            t.denied.as_ref().map(|d| d.approver.as_str()),
            Some("dave"),
            "eve is no approver: her deny is ignored"
        );
        assert_eq!(t.ignored.len(), 2, "{:?}", t.ignored);
    }
}
