//! Approved vs done: every write an agent makes is matched with the record that allows it. The
//! operator knows exactly what each agent was approved to do (its decided ActionRequests); a write
//! no record covers is an **unrecorded action**, contained at once whatever the statistics say.
//! Reads are left to the statistical model (`drift`), except a read of what an open request names
//! (kubectl reading back the pod it deleted, or listing pods to wait for it): covered, so never
//! novel.
//!
//! A decided request (AutoApproved or Approved) covers a write of its agent when:
//! - one of its action's grants allows that verb on that resource (and subresource) in that
//!   namespace;
//! - the write falls within the request's acting window: from its decision for `ACT_WINDOW`;
//! - the written object is one the request names (its target or an object of its effect): the
//!   same resource (its kind resolved through discovery, compared as group and resource), the same
//!   namespace and the same name. A request that names no Kubernetes object (an address, an
//!   account) covers no Kubernetes write at all: it cannot be a decoy for writes it never named.
//!
//! Pure: writes and records in, the covering record out.

use crate::admission::identity::CredentialId;
use crate::admission::kinds::{Kind, Kinds};
use crate::agent::rbac::Rule;
use jiff::{SignedDuration, Timestamp};
use socwarden_api::{ActionRequestSpec, ActionRequestStatus, Decision, ExecutionState, ExecutionStatus, PerformedCall};

/// How long after its decision a request that names objects covers the agent's writes to them.
pub const ACT_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// A write stamped this much before the decision (the API server's clock against ours) still
/// counts as after it.
pub const SKEW: SignedDuration = SignedDuration::from_secs(2);
/// A window that closed longer ago than this is not marked `NotActedOn` (e.g. requests decided
/// before the operator kept records): nothing can be said of it any more.
pub const TOO_LATE: SignedDuration = SignedDuration::from_hours(1);
/// The most writes kept per request as the record of what the agent did.
pub const MAX_KEPT: usize = 20;

/// Whether an API verb writes.
pub fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

/// One API call on a resource by an agent, from the audit log, that authorization let through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub at: Timestamp,
    pub verb: String,
    /// API group; empty for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    /// Empty for a collection (deletecollection, a create with generateName).
    pub name: String,
    pub code: u16,
    /// The token it was made with, when the API server named it.
    pub credential: Option<CredentialId>,
}

impl Access {
    /// Whether it writes.
    pub fn writes(&self) -> bool {
        is_write(&self.verb)
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// `delete pods web/web-1 → 200`: how messages, the status and the decision log name a write.
impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { String::new() } else { format!("{}/", self.group) };
        let object = match (self.namespace.is_empty(), self.name.is_empty()) {
            (false, false) => format!(" {}/{}", self.namespace, self.name),
            (false, true) => format!(" in {}", self.namespace),
            (true, false) => format!(" {}", self.name),
            (true, true) => String::new(),
        };
        write!(f, "{} {group}{}{object} → {}", self.verb, self.resource_path(), self.code)
    }
}

/// A Kubernetes object a request names (its target, or an object of its effect), resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// API group; empty for the core group.
    pub group: String,
    /// The plural resource (`pods`), as audit events name it.
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Object {
    /// The object `kind namespace/name` names, if it is a namespaced Kubernetes object: an external
    /// target, a cluster-scoped or unresolvable one names none (and covers nothing).
    pub fn resolve(kinds: &Kinds, kind: &str, namespace: Option<&str>, name: &str) -> Option<Self> {
        match kinds.resolve(kind).ok()? {
            Kind::Api { group, resource, namespaced: true, .. } => {
                Some(Self { group, resource, namespace: namespace?.to_string(), name: name.to_string() })
            }
            _ => None,
        }
    }

    fn is(&self, w: &Access) -> bool {
        self.group == w.group && self.resource == w.resource && self.namespace == w.namespace
    }
}

/// A decided request of the agent, as far as covering its writes goes.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// The ActionRequest's name.
    pub request: &'a str,
    pub decision: Decision,
    pub decided_at: Timestamp,
    /// The grants of the action it was decided on.
    pub grants: Vec<Rule>,
    pub objects: Vec<Object>,
}

impl<'a> Record<'a> {
    /// The record a decided request (`request` is its name) makes: its target and the objects of
    /// its effect are what it names. `None` until it is decided.
    pub fn of(
        request: &'a str,
        spec: &ActionRequestSpec,
        status: &ActionRequestStatus,
        grants: Vec<Rule>,
        kinds: &Kinds,
    ) -> Option<Self> {
        let decision = status.decision?;
        let decided_at = status.decided_at.as_ref()?.parse().ok()?;
        let t = &spec.target;
        let target = Object::resolve(kinds, &t.kind, t.namespace.as_deref(), &t.name);
        let effect = status.effect.iter().map(|e| Object::resolve(kinds, &e.kind, e.namespace.as_deref(), &e.name));
        let objects = std::iter::once(target).chain(effect).flatten().collect();
        Some(Self { request, decision, decided_at, grants, objects })
    }

    /// Whether the request names a Kubernetes object (a namespaced target or effect): one that
    /// names none covers no write.
    pub fn names_objects(&self) -> bool {
        !self.objects.is_empty()
    }

    /// Until when it covers writes.
    pub fn open_until(&self) -> Timestamp {
        self.decided_at.checked_add(ACT_WINDOW).unwrap_or(Timestamp::MAX)
    }

    fn open_at(&self, at: Timestamp) -> bool {
        let from = self.decided_at.checked_sub(SKEW).unwrap_or(Timestamp::MIN);
        self.decision.runs() && at >= from && at <= self.open_until()
    }

    fn names(&self, w: &Access) -> bool {
        !w.name.is_empty() && self.objects.iter().any(|o| o.is(w) && o.name == w.name)
    }

    /// A read of an object it names, or of the collection such an object is in.
    fn names_loosely(&self, w: &Access) -> bool {
        self.objects.iter().any(|o| o.is(w) && (w.name.is_empty() || o.name == w.name))
    }

    fn granted(&self, w: &Access) -> bool {
        self.grants.iter().any(|r| allows(r, w))
    }
}

/// Whether an RBAC rule allows the write (the operator never delegates wildcards).
pub fn allows(rule: &Rule, w: &Access) -> bool {
    let named = rule.resource_names.is_empty() || rule.resource_names.contains(&w.name);
    rule.verbs.contains(&w.verb)
        && rule.api_groups.contains(&w.group)
        && rule.resources.contains(&w.resource_path())
        && named
}

/// The record covering a call, if any: the first (in the order given) that allows it. A write
/// needs the object named; a read, the object or its collection.
pub fn covering<'r, 'a>(w: &Access, records: &'r [Record<'a>]) -> Option<&'r Record<'a>> {
    let object = |r: &Record| if w.writes() { r.names(w) } else { r.names_loosely(w) };
    records.iter().find(|r| r.open_at(w.at) && r.granted(w) && object(r))
}

/// What is missing, in words, for the `Paused` condition, the Event and the decision log.
pub fn unrecorded(w: &Access) -> String {
    format!(
        "{w} with no record: no AutoApproved or Approved ActionRequest of this agent, decided within the last 10 minutes, whose action grants it and whose target or effect is this object"
    )
}

/// What a lead reads when the sink had no room to judge an agent's writes or refusals (an audit
/// flood beyond twice its capacity, see the runtime's `intake`): contained as if one had no record.
pub fn unjudged(calls: usize) -> String {
    format!(
        "{calls} write(s) or refused call(s) not judged: the audit sink was beyond twice its capacity; contained unjudged, since one may have no record (see socwarden_audit_events_total{{result=\"unjudged\"}})"
    )
}

impl From<&Access> for PerformedCall {
    fn from(w: &Access) -> Self {
        let group = if w.group.is_empty() { String::new() } else { format!("{}/", w.group) };
        PerformedCall {
            verb: w.verb.clone(),
            resource: format!("{group}{}", w.resource_path()),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            at: w.at.to_string(),
            code: w.code,
            credential: w.credential.map(|c| c.to_string()),
        }
    }
}

/// The execution status of a request once `writes` (covered by it) are added: the writes kept
/// (the first `MAX_KEPT`, repeats of the same audit event dropped) and counted; for an action
/// the agent performs itself (`agent_acts`), `ActedOn` once it wrote, `NotActedOn` once its window
/// closed without a write. `None` when nothing changes.
pub fn account(
    previous: Option<&ExecutionStatus>,
    writes: &[Access],
    agent_acts: bool,
    open_until: Timestamp,
    now: Timestamp,
) -> Option<ExecutionStatus> {
    let before = previous.cloned().unwrap_or_default();
    let mut e = before.clone();
    let mut count = e.performed_count.unwrap_or(0);
    for w in writes {
        let call = PerformedCall::from(w);
        if e.performed.contains(&call) {
            continue;
        }
        count = count.saturating_add(1);
        if e.performed.len() < MAX_KEPT {
            e.performed.push(call);
        }
    }
    if count > 0 {
        e.performed_count = Some(count);
    }
    if agent_acts {
        if count > 0 {
            let first = e.performed.first().map(ToString::to_string).unwrap_or_default();
            e.state = Some(ExecutionState::ActedOn);
            e.result = format!("the agent acted itself under this request: {count} write(s), first {first}");
        } else if now > open_until && e.state.is_none() && now.duration_since(open_until) <= TOO_LATE {
            e.state = Some(ExecutionState::NotActedOn);
            e.result = "approved, but no write of the agent under it reached the audit sink in its window".to_string();
        }
    }
    (e != before).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn delete_pod(at: i64, name: &str) -> Access {
        Access {
            at: t(at),
            verb: "delete".into(),
            resource: "pods".into(),
            namespace: "web".into(),
            name: name.into(),
            code: 200,
            ..Default::default()
        }
    }

    fn pod(name: &str) -> Object {
        Object { group: "".into(), resource: "pods".into(), namespace: "web".into(), name: name.into() }
    }

    fn record(objects: Vec<Object>, decision: Decision) -> Record<'static> {
        Record {
            request: "r1",
            decision,
            decided_at: t(100),
            grants: vec![Rule::new([""], ["pods"], ["get", "list", "delete"], Vec::<String>::new())],
            objects,
        }
    }

    #[test]
    fn a_record_covers_its_own_object_in_its_window() {
        let r = [record(vec![pod("a")], Decision::AutoApproved)];
        let cases = [
            (delete_pod(101, "a"), true, "the object it names, right after the decision"),
            (delete_pod(99, "a"), true, "within the clock skew before the decision"),
            (delete_pod(100 + 600, "a"), true, "at the end of the window"),
            (delete_pod(95, "a"), false, "before the decision"),
            (delete_pod(100 + 601, "a"), false, "after the window"),
            (delete_pod(101, "b"), false, "another pod"),
            (Access { namespace: "db".into(), ..delete_pod(101, "a") }, false, "the same name elsewhere"),
            (Access { verb: "patch".into(), ..delete_pod(101, "a") }, false, "a verb the grants do not hold"),
            (Access { resource: "configmaps".into(), ..delete_pod(101, "a") }, false, "another resource"),
            (Access { subresource: "eviction".into(), ..delete_pod(101, "a") }, false, "a subresource not granted"),
            (Access { verb: "deletecollection".into(), name: "".into(), ..delete_pod(101, "") }, false, "a collection"),
        ];
        for (w, covered, case) in cases {
            assert_eq!(covering(&w, &r).is_some(), covered, "{case}: {w}");
        }
    }

    #[test]
    fn reads_of_what_an_open_record_names_are_covered() {
        let mut r = [record(vec![pod("a")], Decision::AutoApproved)];
        r[0].grants.push(Rule::new([""], ["configmaps"], ["list"], Vec::<String>::new()));
        let read = |verb: &str, name: &str, at: i64| Access { verb: verb.into(), ..delete_pod(at, name) };
        assert!(covering(&read("get", "a", 101), &r).is_some(), "reading back what it deletes");
        assert!(covering(&read("list", "", 101), &r).is_some(), "kubectl's wait lists the collection");
        assert!(covering(&read("get", "b", 101), &r).is_none(), "another pod");
        let configmaps = Access { resource: "configmaps".into(), ..read("list", "", 101) };
        assert!(covering(&configmaps, &r).is_none(), "granted, but not what the request is about");
        assert!(covering(&read("get", "a", 800), &r).is_none(), "not once the window closed");
        assert!(covering(&read("watch", "a", 101), &r).is_none(), "not beyond the grants");
    }

    #[test]
    fn a_decided_request_names_its_target_and_effect() {
        use socwarden_api::{EffectObject, Target};
        let spec = ActionRequestSpec {
            target: Target { kind: "Pod".into(), name: "a".into(), namespace: Some("web".into()) },
            ..Default::default()
        };
        let np = EffectObject {
            kind: "NetworkPolicy".into(),
            namespace: Some("web".into()),
            name: "iso".into(),
            via: "written".into(),
        };
        let mut status = ActionRequestStatus { effect: vec![np], ..Default::default() };
        let k = Kinds::builtin();
        assert!(Record::of("r1", &spec, &status, vec![], &k).is_none(), "undecided");
        status.decision = Some(Decision::AutoApproved);
        status.decided_at = Some(t(100).to_string());
        let r = Record::of("r1", &spec, &status, vec![], &k).unwrap();
        let np = Object {
            group: "networking.k8s.io".into(),
            resource: "networkpolicies".into(),
            namespace: "web".into(),
            name: "iso".into(),
        };
        assert_eq!(r.objects, vec![pod("a"), np]);
        assert_eq!(r.open_until(), t(100 + 600));
        // Every spelling of the kind names the same object.
        for kind in ["pods", "po", "v1/pods", "pod"] {
            let spelled =
                ActionRequestSpec { target: Target { kind: kind.into(), ..spec.target.clone() }, ..spec.clone() };
            assert_eq!(Record::of("r1", &spelled, &status, vec![], &k).unwrap().objects[0], pod("a"), "{kind}");
        }
        let ip = ActionRequestSpec {
            target: Target { kind: "IP".into(), name: "203.0.113.9".into(), namespace: None },
            ..spec
        };
        let bare = ActionRequestStatus { effect: vec![], ..status };
        assert!(!Record::of("r2", &ip, &bare, vec![], &k).unwrap().names_objects(), "an address is no object");
    }

    #[test]
    fn only_decisions_that_run_cover() {
        for d in [Decision::Pending, Decision::Denied, Decision::Expired, Decision::Rejected, Decision::Recommended] {
            assert!(covering(&delete_pod(101, "a"), &[record(vec![pod("a")], d)]).is_none(), "{d:?}");
        }
        assert!(covering(&delete_pod(101, "a"), &[record(vec![pod("a")], Decision::Approved)]).is_some());
    }

    #[test]
    fn a_request_naming_no_object_covers_no_write() {
        // A decoy: an AutoApproved request aimed at an address, whose action grants pod deletes.
        let r = [record(vec![], Decision::AutoApproved)];
        assert!(covering(&delete_pod(101, "vault-2"), &r).is_none());
        assert!(covering(&Access { verb: "get".into(), ..delete_pod(101, "vault-2") }, &r).is_none());
    }

    #[test]
    fn resource_names() {
        let named = Rule::new([""], ["pods"], ["delete"], ["a"]);
        assert!(allows(&named, &delete_pod(0, "a")));
        assert!(!allows(&named, &delete_pod(0, "b")));
        let sub = Rule::new([""], ["pods/eviction"], ["create"], Vec::<String>::new());
        let evict = Access { verb: "create".into(), subresource: "eviction".into(), ..delete_pod(0, "a") };
        assert!(allows(&sub, &evict));
    }

    #[test]
    fn the_record_of_what_was_done() {
        let w = delete_pod(101, "a");
        let acted = account(None, std::slice::from_ref(&w), true, t(700), t(102)).expect("a change");
        assert_eq!(acted.state, Some(ExecutionState::ActedOn));
        assert_eq!(acted.performed_count, Some(1));
        assert_eq!(acted.performed[0].to_string(), "delete pods web/a → 200");
        assert!(acted.result.contains("1 write(s), first delete pods web/a → 200"), "{}", acted.result);
        assert_eq!(account(Some(&acted), &[w], true, t(700), t(103)), None, "the same audit event twice");
        // Nothing done: open, then NotActedOn once the window closed, then nothing more changes.
        assert_eq!(account(None, &[], true, t(700), t(500)), None);
        let idle = account(None, &[], true, t(700), t(701)).expect("marked");
        assert_eq!(idle.state, Some(ExecutionState::NotActedOn));
        assert_eq!(account(Some(&idle), &[], true, t(700), t(900)), None);
        assert_eq!(account(None, &[], true, t(700), t(700 + 3601)), None, "too late to tell");
        // An action the operator executes keeps its state; the agent's writes are still recorded.
        let ran = ExecutionStatus { state: Some(ExecutionState::Succeeded), ..Default::default() };
        let both = account(Some(&ran), &[delete_pod(101, "a")], false, t(700), t(102)).unwrap();
        assert_eq!((both.state, both.performed.len()), (Some(ExecutionState::Succeeded), 1));
        // Each write names the token it was made with (approved vs done, per credential).
        let id = CredentialId::parse("JTI=0f8fad5b-d9cb-469f-a165-70867728950e");
        let with_token = Access { credential: id, ..delete_pod(101, "a") };
        let named = account(None, &[with_token], true, t(700), t(102)).unwrap();
        assert_eq!(named.performed[0].credential.as_deref(), Some("JTI=0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert_eq!(named.performed[0].to_string(), "delete pods web/a → 200", "people read the call as before");
        // Bounded.
        let many: Vec<Access> = (0..50).map(|i| delete_pod(101 + i, "a")).collect();
        let kept = account(None, &many, true, t(700), t(200)).unwrap();
        assert_eq!((kept.performed.len(), kept.performed_count), (MAX_KEPT, Some(50)));
    }

    #[test]
    fn writes_are_named_for_people() {
        assert_eq!(delete_pod(0, "web-1").to_string(), "delete pods web/web-1 → 200");
        let np = Access {
            verb: "create".into(),
            group: "networking.k8s.io".into(),
            resource: "networkpolicies".into(),
            namespace: "web".into(),
            code: 201,
            ..Default::default()
        };
        assert_eq!(np.to_string(), "create networking.k8s.io/networkpolicies in web → 201");
        assert!(unrecorded(&np).contains("with no record"));
    }
}
