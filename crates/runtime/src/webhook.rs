//! The admission webhook: stamps who created an ActionRequest or an Approval (from the
//! authenticated user, never from the body), signs the stamp, keeps both kinds immutable, and
//! refuses at once what the gate's stateless checks (`gate::precheck`, the same function the
//! reconciler runs again) refuse, with a message that says why. `review` is pure over a
//! `Lookup` of the caches; `serve` is the HTTPS server around it.

use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use socwarden_api::{
    ActionRequest, ActionRequestSpec, Approval, ApprovalSpec, AutonomyPolicy, Decision, SocAgent, Tier,
};
use socwarden_core::admission::gate;
use socwarden_core::admission::identity::AgentKey;
use socwarden_core::admission::quota;
use socwarden_core::admission::signature::{self, Key};
use socwarden_core::agent::authority;
use std::sync::Arc;
use std::time::Instant;

/// The largest AdmissionReview read: the object and its old version, each at most the API
/// server's own limit on a stored object (1.5 MiB in etcd), and the envelope.
pub const MAX_REVIEW: usize = 4 << 20;

/// A change of a SocAgent's spec, and the virtual verbs it needs (`agent::authority`).
#[derive(Debug)]
pub struct AgentChange {
    pub user: k8s_openapi::api::authentication::v1::UserInfo,
    pub namespace: String,
    pub name: String,
    pub verbs: Vec<&'static str>,
}

/// For a validating review of a SocAgent update: who changes it, and which verbs the change needs
/// (the caller asks the API server with a SubjectAccessReview, then answers with `agent_verdict`).
pub fn agent_change(path: &str, req: &AdmissionRequest<DynamicObject>) -> Option<AgentChange> {
    if path != "/validate" || req.kind.kind != "SocAgent" || req.operation != Operation::Update {
        return None;
    }
    let spec = |o: Option<&DynamicObject>| o.and_then(|o| o.data.get("spec").cloned());
    Some(AgentChange {
        user: req.user_info.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        name: req.name.clone(),
        verbs: authority::needed(spec(req.old_object.as_ref()).as_ref(), spec(req.object.as_ref()).as_ref()),
    })
}

/// For a validating review of a SocAgent or DriftReport, create or update: what needs no call to
/// the API server. No owner reference may be added to either (`authority::lifetime_refusal`: the
/// garbage collector would take a drift-paused agent, and its pause, with the owner), and a
/// SocAgent is created only where the audit sink sees it (`validate::namespace_problem`; an
/// existing one stays editable, so that it can still be paused). `None`: not such a review.
pub fn lifetime(
    path: &str,
    req: &AdmissionRequest<DynamicObject>,
    unobserved: &std::collections::BTreeSet<String>,
) -> Option<Result<(), String>> {
    let kind = req.kind.kind.as_str();
    if path != "/validate"
        || !matches!(kind, "SocAgent" | "DriftReport")
        || !matches!(req.operation, Operation::Create | Operation::Update)
    {
        return None;
    }
    let ns = req.namespace.clone().unwrap_or_default();
    let name = req.object.as_ref().and_then(|o| o.metadata.name.clone()).unwrap_or_else(|| req.name.clone());
    if kind == "SocAgent"
        && req.operation == Operation::Create
        && let Some(p) = socwarden_core::agent::validate::namespace_problem(&ns, unobserved)
    {
        return Some(Err(format!("SocAgent {ns}/{name} refused: {}", p.message)));
    }
    let owners = |o: Option<&DynamicObject>| -> Vec<authority::Owner> {
        o.and_then(|o| o.metadata.owner_references.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| authority::Owner { uid: r.uid, kind: r.kind, name: r.name })
            .collect()
    };
    let refused =
        authority::lifetime_refusal(kind, &ns, &name, &owners(req.old_object.as_ref()), &owners(req.object.as_ref()));
    Some(refused.map_or(Ok(()), Err))
}

/// The answer to a SocAgent review once the authority check is done.
pub fn agent_verdict(
    req: &AdmissionRequest<DynamicObject>,
    verdict: Result<(), String>,
) -> AdmissionReview<DynamicObject> {
    let response = AdmissionResponse::from(req);
    match verdict {
        Ok(()) => response.into_review(),
        Err(message) => response.deny(message).into_review(),
    }
}

/// What the webhook reads of the cluster (the operator's caches; fixtures in tests).
pub trait Lookup {
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<SocAgent>>;
    fn action(&self, name: &str) -> Option<Arc<socwarden_api::SocAction>>;
    fn request(&self, namespace: &str, name: &str) -> Option<Arc<ActionRequest>>;
    fn policy(&self, name: &str) -> Option<Arc<AutonomyPolicy>>;
    /// Counts what agent `namespace/agent` has filed itself and, when `check` allows one more,
    /// records request `name` as filed (atomically, so that a burst is counted one by one).
    fn admit(
        &self,
        namespace: &str,
        agent: &str,
        name: &str,
        check: &dyn Fn(quota::Filing) -> Result<(), String>,
    ) -> Result<(), String>;
    /// The user the operator itself authenticates as: the only one whose requests may arrive
    /// already stamped (by the MCP gateway, for the agent it verified). `None`: nobody's.
    fn operator(&self) -> Option<&str>;
    /// The kinds the API server serves (targets and effects are resolved against them).
    fn kinds(&self) -> Arc<socwarden_core::admission::kinds::Kinds>;
}

/// Handles one AdmissionReview body for `path` (`/mutate` or `/validate`). Never panics; anything
/// that cannot be read is refused with a message.
pub fn review(path: &str, body: &[u8], lookup: &dyn Lookup, key: &Key, nonce: &str) -> AdmissionReview<DynamicObject> {
    match decode(body) {
        Ok(req) => review_request(path, &req, lookup, key, nonce),
        Err(why) => AdmissionResponse::invalid(why).into_review(),
    }
}

/// Reads an AdmissionReview body once: its request, or why it cannot be read.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the AdmissionReview: {e}"))?;
    review.try_into().map_err(|_| "the AdmissionReview carries no request".to_string())
}

/// Handles one decoded request for `path` (`/mutate` or `/validate`).
pub fn review_request(
    path: &str,
    req: &AdmissionRequest<DynamicObject>,
    lookup: &dyn Lookup,
    key: &Key,
    nonce: &str,
) -> AdmissionReview<DynamicObject> {
    let response = AdmissionResponse::from(req);
    let outcome = match (path, req.kind.kind.as_str(), &req.operation) {
        ("/mutate", "ActionRequest", Operation::Create) => stamp_request(req, lookup, key, nonce),
        ("/mutate", "Approval", Operation::Create) => stamp_approval(req, lookup, key, nonce),
        ("/validate", "ActionRequest", Operation::Create) => check_request_stamp(req, lookup, key),
        ("/validate", "Approval", Operation::Create) => check_approval_stamp(req, key),
        ("/validate", "ActionRequest" | "Approval", Operation::Update) => immutable(req),
        _ => Ok(None),
    };
    match outcome {
        Ok(None) => response.into_review(),
        Ok(Some(stamp)) => {
            let add = |path: &[&str], value| {
                json_patch::PatchOperation::Add(json_patch::AddOperation {
                    path: json_patch::jsonptr::PointerBuf::from_tokens(path.iter().copied()),
                    value,
                })
            };
            let mut ops = vec![add(&["spec"], stamp.spec)];
            if let Some(name) = stamp.name {
                ops.push(add(&["metadata", "name"], serde_json::Value::String(name)));
            }
            let patch = json_patch::Patch(ops);
            match response.clone().with_patch(patch) {
                Ok(r) => r.into_review(),
                Err(e) => response.deny(format!("internal error building the stamp: {e}")).into_review(),
            }
        }
        Err(message) => response.deny(message).into_review(),
    }
}

/// What the mutating webhook adds: the stamp (the whole spec) and, for an object created with
/// `generateName`, the name the stamp signs (the API server generates names only after mutating
/// admission, so the webhook chooses it).
struct Stamp {
    spec: serde_json::Value,
    name: Option<String>,
}

type Outcome = Result<Option<Stamp>, String>;

/// The name the stamp signs: the object's, or one the webhook generates from `generateName`.
fn stamped_name(req: &AdmissionRequest<DynamicObject>, nonce: &str) -> Result<(String, bool), String> {
    let meta = req.object.as_ref().map(|o| &o.metadata);
    let name = meta.and_then(|m| m.name.as_deref()).filter(|n| !n.is_empty());
    let prefix = meta.and_then(|m| m.generate_name.as_deref()).filter(|g| !g.is_empty());
    match (name, prefix) {
        (Some(name), _) => Ok((name.to_string(), false)),
        (None, Some(prefix)) => {
            let prefix: String = prefix.chars().take(54).collect();
            Ok((format!("{prefix}{}", nonce.get(..8).unwrap_or(nonce)), true))
        }
        (None, None) => Err(format!("the {} needs metadata.name or metadata.generateName", req.kind.kind)),
    }
}

fn user(req: &AdmissionRequest<DynamicObject>) -> (String, Vec<String>) {
    (req.user_info.username.clone().unwrap_or_default(), req.user_info.groups.clone().unwrap_or_default())
}

fn object<T: serde::de::DeserializeOwned>(req: &AdmissionRequest<DynamicObject>, kind: &str) -> Result<T, String> {
    let obj = req.object.as_ref().ok_or_else(|| format!("the {kind} is missing from the request"))?;
    let v = serde_json::to_value(obj).map_err(|e| format!("cannot read the {kind}: {e}"))?;
    serde_json::from_value(v).map_err(|e| format!("invalid {kind}: {e}"))
}

/// Who filed a request: the authenticated user — or, when that user is the operator itself and
/// the request carries a valid stamp (the MCP gateway stamps the agent it verified with a
/// TokenReview, exactly as this webhook would), the stamped agent. Anyone else's stamp is
/// overwritten: a copied stamp is worth nothing without the operator's identity.
fn filer(
    req: &AdmissionRequest<DynamicObject>,
    ns: &str,
    name: &str,
    spec: &ActionRequestSpec,
    lookup: &dyn Lookup,
    key: &Key,
) -> (String, Vec<String>) {
    let (username, groups) = user(req);
    let by_operator = lookup.operator().is_some_and(|op| op == username);
    if by_operator && key.verify(&signature::request_message(ns, name, spec), &spec.signature) {
        return (spec.requester.clone(), spec.requester_groups.clone());
    }
    (username, groups)
}

fn stamp_request(req: &AdmissionRequest<DynamicObject>, lookup: &dyn Lookup, key: &Key, nonce: &str) -> Outcome {
    let r: ActionRequest = object(req, "ActionRequest")?;
    let ns = req.namespace.clone().unwrap_or_default();
    let (name, generated) = stamped_name(req, nonce)?;
    let mut spec: ActionRequestSpec = r.spec;
    let (username, groups) = filer(req, &ns, &name, &spec, lookup, key);
    let agent = lookup.agent(&ns, &spec.agent);
    if let Some(a) = &agent {
        let own = socwarden_core::admission::identity::agent_user(&ns, &a.name_any());
        if socwarden_core::admission::identity::is_service_account(&username, &groups) && username != own {
            return Err(format!(
                "{username} is a ServiceAccount but not the one of SocAgent {}; an agent files requests only for itself",
                spec.agent
            ));
        }
    }
    let action = lookup.action(&spec.action);
    let kinds = lookup.kinds();
    gate::precheck(&spec, agent.as_deref(), action.as_ref().map(|a| &a.spec), &kinds).map_err(|r| r.message)?;
    let unexecutable = action.as_ref().and_then(|a| a.status.as_ref()).map(|s| s.unexecutable.as_slice());
    gate::executable(&spec, unexecutable.unwrap_or(&[])).map_err(|r| r.message)?;
    // What the request names or writes is known now; the pods it selects, when it is decided.
    if let (Some(a), Some(action)) = (&agent, &action)
        && let Ok(plan) = socwarden_core::admission::effect::plan(
            &action.spec,
            &spec,
            r.metadata.name.as_deref().unwrap_or_default(),
            &kinds,
        )
    {
        let scope = &a.spec.scope.namespaces;
        if let Some(f) = socwarden_core::admission::effect::first_forbidden(
            &plan.objects,
            &kinds,
            scope,
            &action.spec.protected_targets,
        ) {
            return Err(format!("{}; no agent may {} it", f.message(), spec.action));
        }
    }
    // The agent's own filing is capped (queue and rate), so that it cannot flood the approvers.
    if let Some(a) =
        agent.as_ref().filter(|a| socwarden_core::admission::identity::agent_user(&ns, &a.name_any()) == username)
    {
        let policy = &a.spec.policy_ref;
        let q = lookup.policy(policy).map(|p| p.spec.requests.clone()).unwrap_or_default();
        lookup.admit(&ns, &spec.agent, &name, &|f| quota::check(&spec.agent, policy, &q, f))?;
    }
    // Whatever the body said, the stamp is the authenticated user.
    spec.requester = username;
    spec.requester_groups = groups;
    spec.nonce = nonce.to_string();
    spec.signature = key.sign(&signature::request_message(&ns, &name, &spec));
    let spec = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    Ok(Some(Stamp { spec, name: generated.then_some(name) }))
}

/// What an approval is bound to, or why it cannot be given.
fn bind_approval(
    ns: &str,
    spec: &ApprovalSpec,
    lookup: &dyn Lookup,
    approver: &str,
    groups: &[String],
) -> Result<String, String> {
    let refs = [spec.action_request.is_some(), spec.promotion.is_some(), spec.resume.is_some()];
    if refs.iter().filter(|x| **x).count() != 1 {
        return Err("an Approval names exactly one of spec.actionRequest, spec.promotion or spec.resume".into());
    }
    if let Some(name) = &spec.action_request {
        let r =
            lookup.request(ns, name).ok_or_else(|| format!("ActionRequest {name} does not exist in namespace {ns}"))?;
        let decision = r.status.as_ref().and_then(|s| s.decision);
        if decision.is_some_and(|d| d != Decision::Pending) {
            return Err(format!(
                "ActionRequest {name} is already decided ({})",
                decision.map(|d| d.as_str()).unwrap_or("")
            ));
        }
        let agent =
            lookup.agent(ns, &r.spec.agent).ok_or_else(|| format!("SocAgent {} does not exist", r.spec.agent))?;
        if let Some(problem) =
            socwarden_core::admission::approvals::approver_problem(&agent, approver, groups, Some(&r.spec.requester))
        {
            return Err(problem);
        }
        // Bound to the request and to the action's content as it is now, which must be the content
        // its approver was shown: an edit of the action after the page, the list or the notice
        // showed it is refused here, and an edit before the decision leaves this approval behind.
        let action = lookup
            .action(&r.spec.action)
            .ok_or_else(|| format!("SocAction {} does not exist (or cannot be read)", r.spec.action))?;
        let content = signature::request_content(&r.spec, &action.spec);
        if let Some(problem) =
            socwarden_core::admission::approvals::seen_problem(spec.decision, spec.seen.as_deref(), &content)
        {
            return Err(format!("ActionRequest {name}: {problem}"));
        }
        return Ok(signature::bound_to_request(&r.uid().unwrap_or_default(), &content));
    }
    if let Some(p) = &spec.promotion {
        let agent = lookup
            .agent(ns, &p.agent)
            .ok_or_else(|| format!("SocAgent {} does not exist in namespace {ns}", p.agent))?;
        if let Some(problem) = socwarden_core::admission::approvals::approver_problem(&agent, approver, groups, None) {
            return Err(problem);
        }
        let current = agent.status.as_ref().and_then(|s| s.effective_tier).unwrap_or(Tier::Observe);
        if current.next() != Some(p.tier) {
            return Err(format!(
                "SocAgent {} is at tier {current}; a promotion goes one step, to {}",
                p.agent,
                current.next().map(|t| t.to_string()).unwrap_or_else(|| "nothing (it is at the top)".into())
            ));
        }
        return Ok(signature::bound_to_promotion(&agent.uid().unwrap_or_default(), p.tier));
    }
    let r = spec.resume.as_ref().expect("one reference is set");
    let agent =
        lookup.agent(ns, &r.agent).ok_or_else(|| format!("SocAgent {} does not exist in namespace {ns}", r.agent))?;
    if let Some(problem) = socwarden_core::admission::approvals::approver_problem(&agent, approver, groups, None) {
        return Err(problem);
    }
    let pause = agent.status.as_ref().and_then(|s| s.pause.as_ref());
    match pause {
        Some(p) if p.id == r.pause_id => Ok(signature::bound_to_resume(&agent.uid().unwrap_or_default(), &r.pause_id)),
        Some(p) => Err(format!("SocAgent {} is paused under id {}, not {}", r.agent, p.id, r.pause_id)),
        None => Err(format!("SocAgent {} is not paused", r.agent)),
    }
}

fn stamp_approval(req: &AdmissionRequest<DynamicObject>, lookup: &dyn Lookup, key: &Key, nonce: &str) -> Outcome {
    let a: Approval = object(req, "Approval")?;
    let ns = req.namespace.clone().unwrap_or_default();
    let (name, generated) = stamped_name(req, nonce)?;
    let mut spec = a.spec;
    let (approver, groups) = user(req);
    spec.bound_to = bind_approval(&ns, &spec, lookup, &approver, &groups)?;
    spec.approver = approver;
    spec.approver_groups = groups;
    spec.signature = key.sign(&signature::approval_message(&ns, &name, &spec));
    let spec = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    Ok(Some(Stamp { spec, name: generated.then_some(name) }))
}

/// The record belongs to the humans: its creator cannot hand its lifetime to another object
/// (`ownerReferences`: deleting the owner would erase the record and roll back what it did) or hold
/// up its deletion (`finalizers`). On update, only the operator's own rollback finalizer may be
/// added.
fn own_lifetime(req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
    let meta = |o: Option<&DynamicObject>| o.map(|o| o.metadata.clone()).unwrap_or_default();
    let (new, old) = (meta(req.object.as_ref()), meta(req.old_object.as_ref()));
    let kind = &req.kind.kind;
    let old_owners = old.owner_references.unwrap_or_default();
    let added: Vec<String> = new
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .filter(|o| !old_owners.iter().any(|x| x.uid == o.uid))
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    if !added.is_empty() {
        return Err(format!(
            "an {kind} cannot be owned by another object (metadata.ownerReferences: {}): it is a record whose lifetime nobody may tie to something else; remove metadata.ownerReferences",
            added.join(", ")
        ));
    }
    let old_finalizers = old.finalizers.unwrap_or_default();
    let foreign: Vec<String> = new
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| !old_finalizers.contains(f))
        .filter(|f| req.operation == Operation::Create || f != crate::controller::request::FINALIZER)
        .collect();
    if !foreign.is_empty() {
        return Err(format!(
            "an {kind} cannot carry finalizers set by its creator or editors (metadata.finalizers: {}); SOC Warden manages its own; remove metadata.finalizers",
            foreign.join(", ")
        ));
    }
    Ok(())
}

/// After every mutation: the stamp must still be ours (another mutating webhook cannot alter it).
fn check_request_stamp(req: &AdmissionRequest<DynamicObject>, lookup: &dyn Lookup, key: &Key) -> Outcome {
    own_lifetime(req)?;
    let r: ActionRequest = object(req, "ActionRequest")?;
    let ns = req.namespace.clone().unwrap_or_default();
    let (username, _) = user(req);
    let name = r.name_any();
    let filer_ok = r.spec.requester == username || lookup.operator() == Some(username.as_str());
    if !filer_ok || !key.verify(&signature::request_message(&ns, &name, &r.spec), &r.spec.signature) {
        return Err(
            "the ActionRequest's stamp does not match its creator or content (was it altered after stamping?)".into()
        );
    }
    Ok(None)
}

fn check_approval_stamp(req: &AdmissionRequest<DynamicObject>, key: &Key) -> Outcome {
    own_lifetime(req)?;
    let a: Approval = object(req, "Approval")?;
    let ns = req.namespace.clone().unwrap_or_default();
    let (username, _) = user(req);
    if a.spec.approver != username || !signature::approval_is_signed(&ns, &a.name_any(), &a.spec, key) {
        return Err(
            "the Approval's stamp does not match its creator or content (was it altered after stamping?)".into()
        );
    }
    Ok(None)
}

/// Requests and approvals are records: their spec never changes after creation, and nobody ties
/// their lifetime to anything else.
fn immutable(req: &AdmissionRequest<DynamicObject>) -> Outcome {
    own_lifetime(req)?;
    let spec = |o: Option<&DynamicObject>| o.and_then(|o| o.data.get("spec").cloned());
    if spec(req.object.as_ref()) != spec(req.old_object.as_ref()) {
        return Err(socwarden_api::spec_immutable(&req.kind.kind));
    }
    Ok(None)
}

/// When each request was admitted here in the last minute, and its name.
type Filed = std::collections::VecDeque<(Instant, String)>;

/// What the webhook server looks up: the operator's caches, and the requests this replica admitted
/// in the last minute (the caches show a burst only after it was admitted).
pub struct Admissions {
    pub stores: crate::context::Stores,
    filed: std::sync::Mutex<std::collections::HashMap<AgentKey, Filed>>,
    /// See `Lookup::operator`.
    operator: Option<String>,
}

impl Admissions {
    pub fn new(stores: crate::context::Stores, operator: Option<String>) -> Self {
        Self { stores, filed: Default::default(), operator }
    }
}

impl Lookup for Admissions {
    fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }
    fn kinds(&self) -> Arc<socwarden_core::admission::kinds::Kinds> {
        self.stores.kinds.current()
    }
    fn agent(&self, namespace: &str, name: &str) -> Option<Arc<SocAgent>> {
        self.stores.agents.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
    }
    fn action(&self, name: &str) -> Option<Arc<socwarden_api::SocAction>> {
        self.stores.action(name)
    }
    fn request(&self, namespace: &str, name: &str) -> Option<Arc<ActionRequest>> {
        self.stores.requests.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
    }
    fn policy(&self, name: &str) -> Option<Arc<AutonomyPolicy>> {
        self.stores.policy(name)
    }
    fn admit(
        &self,
        namespace: &str,
        agent: &str,
        name: &str,
        check: &dyn Fn(quota::Filing) -> Result<(), String>,
    ) -> Result<(), String> {
        let now = Instant::now();
        let own = socwarden_core::admission::identity::agent_user(namespace, agent);
        let mut filed = self.filed.lock().unwrap_or_else(|p| p.into_inner());
        let recent = filed.entry((namespace.to_string(), agent.to_string())).or_default();
        while recent.front().is_some_and(|(at, _)| now.duration_since(*at) > std::time::Duration::from_secs(60)) {
            recent.pop_front();
        }
        let cached = self.stores.requests.state_filter(|r| {
            r.namespace().as_deref() == Some(namespace) && r.spec.agent == agent && r.spec.requester == own
        });
        let undecided = cached
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.decision).is_none_or(|d| d == Decision::Pending))
            .count();
        // Admitted here, not in the cache yet.
        let unseen = recent.iter().filter(|(_, n)| !cached.iter().any(|r| r.name_any() == *n)).count();
        check(quota::Filing { undecided: undecided + unseen, last_minute: recent.len(), kept: cached.len() + unseen })?;
        recent.push_back((now, name.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use socwarden_api::{ActionRequestStatus, Approvers, Risk, SocAction, SocActionSpec};
    use socwarden_core::testing::{self, NS, Rng, random_value};
    use std::collections::HashMap;

    const BOT_SA: &str = "system:serviceaccount:agents:warden-bot";
    const OPERATOR: &str = "system:serviceaccount:soc-warden-system:soc-warden";

    #[derive(Default)]
    struct Fixture {
        agents: HashMap<String, Arc<SocAgent>>,
        actions: HashMap<String, Arc<SocAction>>,
        requests: HashMap<String, Arc<ActionRequest>>,
        policy: Option<Arc<AutonomyPolicy>>,
        filed: std::sync::Mutex<usize>,
    }

    impl Lookup for Fixture {
        fn kinds(&self) -> Arc<socwarden_core::admission::kinds::Kinds> {
            Arc::new(socwarden_core::admission::kinds::Kinds::builtin())
        }
        fn agent(&self, _: &str, name: &str) -> Option<Arc<SocAgent>> {
            self.agents.get(name).cloned()
        }
        fn action(&self, name: &str) -> Option<Arc<SocAction>> {
            self.actions.get(name).cloned()
        }
        fn request(&self, _: &str, name: &str) -> Option<Arc<ActionRequest>> {
            self.requests.get(name).cloned()
        }
        fn policy(&self, _: &str) -> Option<Arc<AutonomyPolicy>> {
            self.policy.clone()
        }
        fn admit(
            &self,
            _: &str,
            _: &str,
            _: &str,
            check: &dyn Fn(quota::Filing) -> Result<(), String>,
        ) -> Result<(), String> {
            let n = *self.filed.lock().unwrap();
            check(quota::Filing { undecided: n, last_minute: n, kept: n })?;
            *self.filed.lock().unwrap() += 1;
            Ok(())
        }
        fn operator(&self) -> Option<&str> {
            Some(OPERATOR)
        }
    }

    fn fixture() -> Fixture {
        let mut a = testing::agent(Tier::Supervised);
        a.spec.actions = vec!["isolate".into()];
        a.spec.approvers = Approvers { users: vec![], groups: vec!["soc-leads".into()], min_approvals: 2 };
        let action = SocAction::new("isolate", SocActionSpec { risk: Risk::Medium, ..Default::default() });
        let mut f = Fixture::default();
        f.agents.insert("bot".into(), Arc::new(a));
        f.actions.insert("isolate".into(), Arc::new(action));
        f
    }

    fn request_spec() -> Value {
        json!({"agent": "bot", "action": "isolate", "target": {"kind": "Pod", "name": "web-1", "namespace": "web"}})
    }

    fn body(kind: &str, op: &str, user: &str, groups: &[&str], object: Value, old: Value) -> Vec<u8> {
        let resource = if kind == "ActionRequest" { "actionrequests" } else { "approvals" };
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "socwarden.io", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "socwarden.io", "version": "v1alpha1", "resource": resource},
                "namespace": NS, "operation": op,
                "userInfo": {"username": user, "groups": groups},
                "object": object, "oldObject": old, "dryRun": false
            }
        }))
        .unwrap()
    }

    fn obj(kind: &str, spec: Value) -> Value {
        json!({"apiVersion": "socwarden.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "namespace": NS}, "spec": spec})
    }

    fn run(f: &Fixture, path: &str, b: &[u8]) -> (bool, String, Option<Value>) {
        let key = Key::new(b"k");
        let r = review(path, b, f, &key, "nonce-1").response.unwrap();
        let patched = r.patch.as_ref().map(|p| {
            let ops: Value = serde_json::from_slice(p).unwrap();
            ops[0]["value"].clone()
        });
        (r.allowed, r.result.message.clone(), patched)
    }

    /// The MCP gateway files as the operator with the agent's stamp: kept only for the operator's
    /// own identity and a valid signature. An analyst replaying a copied stamp files as herself.
    #[test]
    fn only_the_operator_may_bring_a_stamp_and_only_a_valid_one() {
        let f = fixture();
        let key = Key::new(b"k");
        let mut spec: ActionRequestSpec = serde_json::from_value(request_spec()).unwrap();
        spec.requester = BOT_SA.into();
        spec.requester_groups = vec!["system:serviceaccounts".into()];
        spec.nonce = "gw".into();
        spec.signature = key.sign(&signature::request_message(NS, "x", &spec));
        let stamped = |who: &str, spec: &ActionRequestSpec| {
            let groups: &[&str] = if who == "analyst" { &[] } else { &["system:serviceaccounts"] };
            let b = body(
                "ActionRequest",
                "CREATE",
                who,
                groups,
                obj("ActionRequest", serde_json::to_value(spec).unwrap()),
                Value::Null,
            );
            run(&f, "/mutate", &b)
        };
        let (ok, msg, patched) = stamped(OPERATOR, &spec);
        assert!(ok, "{msg}");
        let kept: ActionRequestSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(kept.requester, BOT_SA, "the gateway's verified agent is the requester");
        let good = obj("ActionRequest", serde_json::to_value(&kept).unwrap());
        assert!(run(&f, "/validate", &body("ActionRequest", "CREATE", OPERATOR, &[], good, Value::Null)).0);

        // The same stamp from an analyst: overwritten with the analyst.
        let (ok, _, patched) = stamped("analyst", &spec);
        assert!(ok);
        let theirs: ActionRequestSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(theirs.requester, "analyst");
        // A stamp the operator did not sign, from the operator's identity: not the agent's.
        let mut forged = spec.clone();
        forged.signature = "forged".into();
        let (ok, msg, _) = stamped(OPERATOR, &forged);
        assert!(!ok && msg.contains("not the one of SocAgent"), "{msg}");
        // Validation: a stamp naming the agent from anyone but the agent or the operator fails.
        let replay = obj("ActionRequest", serde_json::to_value(&kept).unwrap());
        let (ok, msg, _) = run(&f, "/validate", &body("ActionRequest", "CREATE", "analyst", &[], replay, Value::Null));
        assert!(!ok && msg.contains("stamp"), "{msg}");
    }

    #[test]
    fn a_request_is_stamped_with_the_authenticated_user_whatever_the_body_says() {
        let f = fixture();
        let mut spec = request_spec();
        spec["requester"] = json!("lead-a");
        let (ok, _, patched) = run(
            &f,
            "/mutate",
            &body(
                "ActionRequest",
                "CREATE",
                BOT_SA,
                &["system:serviceaccounts"],
                obj("ActionRequest", spec),
                Value::Null,
            ),
        );
        assert!(ok);
        let stamped: ActionRequestSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(stamped.requester, BOT_SA);
        assert_eq!(stamped.nonce, "nonce-1");
        assert!(Key::new(b"k").verify(&signature::request_message(NS, "x", &stamped), &stamped.signature));

        // The validating pass accepts exactly that stamp, and nothing else.
        let good = obj("ActionRequest", serde_json::to_value(&stamped).unwrap());
        assert!(run(&f, "/validate", &body("ActionRequest", "CREATE", BOT_SA, &[], good, Value::Null)).0);
        let mut altered = stamped.clone();
        altered.target.name = "web-2".into();
        let bad = obj("ActionRequest", serde_json::to_value(&altered).unwrap());
        let (ok, msg, _) = run(&f, "/validate", &body("ActionRequest", "CREATE", BOT_SA, &[], bad, Value::Null));
        assert!(!ok && msg.contains("stamp"), "{msg}");
    }

    #[test]
    fn requests_are_refused_with_the_reason() {
        let f = fixture();
        let cases = [
            ("system:serviceaccount:agents:warden-other", json!({"action": "isolate"}), "not the one of SocAgent bot"),
            (BOT_SA, json!({"action": "block-ip"}), "not in the actions of SocAgent bot"),
            (BOT_SA, json!({"target": {"kind": "Pod", "name": "x", "namespace": "kube-system"}}), "outside the scope"),
            (BOT_SA, json!({"agent": "ghost"}), "SocAgent \"ghost\" does not exist"),
        ];
        for (user, overlay, want) in cases {
            let mut spec = request_spec();
            for (k, v) in overlay.as_object().unwrap() {
                spec[k] = v.clone();
            }
            let (ok, msg, _) = run(
                &f,
                "/mutate",
                &body("ActionRequest", "CREATE", user, &[], obj("ActionRequest", spec), Value::Null),
            );
            assert!(!ok, "{want}");
            assert!(msg.contains(want), "{msg} should contain {want}");
        }
    }

    fn with_request(requester: &str, decision: Option<Decision>) -> Fixture {
        let mut f = fixture();
        let mut spec: ActionRequestSpec = serde_json::from_value(request_spec()).unwrap();
        spec.requester = requester.into();
        let mut r = ActionRequest::new("r1", spec);
        r.metadata.uid = Some("req-uid".into());
        r.status = decision.map(|d| ActionRequestStatus { decision: Some(d), ..Default::default() });
        f.requests.insert("r1".into(), Arc::new(r));
        f
    }

    #[test]
    fn approvals_are_refused_for_the_wrong_people_and_the_wrong_requests() {
        let approve = obj("Approval", json!({"actionRequest": "r1", "decision": "approve"}));
        let f = with_request("lead-a", None);
        let cases: [(&Fixture, &str, &[&str], &str); 4] = [
            (&f, "analyst", &["soc-analysts"], "analyst is not an approver of SocAgent bot"),
            (&f, "lead-a", &["soc-leads"], "lead-a requested this action and cannot approve it too"),
            (&f, BOT_SA, &["system:serviceaccounts"], "is a ServiceAccount; only humans approve"),
            (&f, "system:serviceaccount:x:y", &["soc-leads", "system:serviceaccounts"], "only humans approve"),
        ];
        for (fx, user, groups, want) in cases {
            let (ok, msg, _) =
                run(fx, "/mutate", &body("Approval", "CREATE", user, groups, approve.clone(), Value::Null));
            assert!(!ok && msg.contains(want), "{user}: {msg}");
        }
        let decided = with_request("lead-a", Some(Decision::Approved));
        let (ok, msg, _) = run(
            &decided,
            "/mutate",
            &body("Approval", "CREATE", "lead-b", &["soc-leads"], approve.clone(), Value::Null),
        );
        assert!(!ok && msg.contains("already decided"), "{msg}");
        let missing = obj("Approval", json!({"actionRequest": "nope", "decision": "approve"}));
        let (ok, msg, _) =
            run(&f, "/mutate", &body("Approval", "CREATE", "lead-b", &["soc-leads"], missing, Value::Null));
        assert!(!ok && msg.contains("does not exist"), "{msg}");
        let both = obj(
            "Approval",
            json!({"actionRequest": "r1", "promotion": {"agent": "bot", "tier": "autonomous"}, "decision": "approve"}),
        );
        let (ok, msg, _) = run(&f, "/mutate", &body("Approval", "CREATE", "lead-b", &["soc-leads"], both, Value::Null));
        assert!(!ok && msg.contains("exactly one"), "{msg}");
    }

    /// The content of r1 with its action as the fixture has it now: what a console shows.
    fn seen(f: &Fixture) -> String {
        signature::request_content(&f.requests["r1"].spec, &f.actions["isolate"].spec)
    }

    /// Attack 10: lead-b reviewed r1 with the action as it was; the catalog editor changed the
    /// action; lead-b's approval, naming the content reviewed, is refused and says why. One that
    /// names no content is refused too; a deny needs none.
    #[test]
    fn an_approval_of_content_the_approver_did_not_see_is_refused() {
        let mut f = with_request("lead-a", None);
        let reviewed = seen(&f);
        let mut edited = (*f.actions["isolate"]).clone();
        edited.spec.execution =
            Some(socwarden_api::Execution { manifest: Some("kind: NetworkPolicy".into()), http: None });
        f.actions.insert("isolate".into(), Arc::new(edited));
        let approve = |seen: Option<&str>| {
            let a = obj("Approval", json!({"actionRequest": "r1", "decision": "approve", "seen": seen}));
            body("Approval", "CREATE", "lead-b", &["soc-leads"], a, Value::Null)
        };
        let (ok, msg, _) = run(&f, "/mutate", &approve(Some(&reviewed)));
        assert!(!ok, "an approval of the old content is refused");
        assert!(msg.contains("ActionRequest r1: the action changed since you looked"), "{msg}");
        assert!(msg.contains(&reviewed[..12]) && msg.contains(&seen(&f)[..12]), "both contents are named: {msg}");
        let (ok, msg, _) = run(&f, "/mutate", &approve(None));
        assert!(!ok && msg.contains("spec.seen is empty"), "{msg}");
        // The content shown now is approved, and its stamp signs what was shown.
        let (ok, msg, patched) = run(&f, "/mutate", &approve(Some(&seen(&f))));
        assert!(ok, "{msg}");
        let s: ApprovalSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(s.seen.as_deref(), Some(seen(&f).as_str()));
        assert_eq!(s.bound_to, signature::bound_to_request("req-uid", &seen(&f)));
        let deny = obj("Approval", json!({"actionRequest": "r1", "decision": "deny"}));
        let (ok, msg, _) = run(&f, "/mutate", &body("Approval", "CREATE", "lead-b", &["soc-leads"], deny, Value::Null));
        assert!(ok, "a deny needs no content hash: {msg}");
    }

    #[test]
    fn an_approval_records_the_real_approver_bound_to_the_request() {
        let f = with_request("lead-a", None);
        let forged =
            obj("Approval", json!({"actionRequest": "r1", "decision": "approve", "approver": "ceo", "seen": seen(&f)}));
        let (ok, _, patched) =
            run(&f, "/mutate", &body("Approval", "CREATE", "lead-b", &["soc-leads"], forged, Value::Null));
        assert!(ok);
        let s: ApprovalSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(s.approver, "lead-b");
        let r = f.requests["r1"].clone();
        let content = signature::approved_content(&r.spec, &signature::action_hash(&f.actions["isolate"].spec));
        assert_eq!(s.bound_to, signature::bound_to_request("req-uid", &content));
        assert!(signature::approval_is_signed(NS, "x", &s, &Key::new(b"k")));
        assert!(!signature::approval_is_signed(NS, "y", &s, &Key::new(b"k")), "bound to its name");
    }

    #[test]
    fn a_generated_name_is_chosen_by_the_webhook_and_signed() {
        let f = with_request("lead-a", None);
        let mut o = obj("Approval", json!({"actionRequest": "r1", "decision": "approve", "seen": seen(&f)}));
        o["metadata"] = json!({"generateName": "r1-approve-", "namespace": NS});
        let b = body("Approval", "CREATE", "lead-b", &["soc-leads"], o, Value::Null);
        let r = review("/mutate", &b, &f, &Key::new(b"k"), "0123456789abcdef").response.unwrap();
        assert!(r.allowed, "{:?}", r.result);
        let ops: Value = serde_json::from_slice(r.patch.as_ref().unwrap()).unwrap();
        assert_eq!(ops[1], json!({"op": "add", "path": "/metadata/name", "value": "r1-approve-01234567"}));
        let s: ApprovalSpec = serde_json::from_value(ops[0]["value"].clone()).unwrap();
        assert!(signature::approval_is_signed(NS, "r1-approve-01234567", &s, &Key::new(b"k")));
        // Neither a name nor a prefix: refused with the reason.
        let mut o = obj("Approval", json!({"actionRequest": "r1", "decision": "approve"}));
        o["metadata"] = json!({"namespace": NS});
        let (ok, msg, _) = run(&f, "/mutate", &body("Approval", "CREATE", "lead-b", &["soc-leads"], o, Value::Null));
        assert!(!ok && msg.contains("metadata.name"), "{msg}");
    }

    #[test]
    fn promotions_go_one_step() {
        let f = fixture();
        let to =
            |tier: &str| obj("Approval", json!({"promotion": {"agent": "bot", "tier": tier}, "decision": "approve"}));
        let (ok, _, patched) =
            run(&f, "/mutate", &body("Approval", "CREATE", "lead-a", &["soc-leads"], to("autonomous"), Value::Null));
        assert!(ok);
        let s: ApprovalSpec = serde_json::from_value(patched.unwrap()).unwrap();
        assert_eq!(s.bound_to, signature::bound_to_promotion("agent-uid", Tier::Autonomous));
        let (ok, msg, _) =
            run(&f, "/mutate", &body("Approval", "CREATE", "lead-a", &["soc-leads"], to("assist"), Value::Null));
        assert!(!ok && msg.contains("one step, to autonomous"), "{msg}");
    }

    #[test]
    fn specs_are_immutable() {
        let f = fixture();
        let old = obj("ActionRequest", request_spec());
        let mut new = old.clone();
        new["spec"]["target"]["name"] = json!("web-2");
        let (ok, msg, _) = run(&f, "/validate", &body("ActionRequest", "UPDATE", "admin", &[], new, old.clone()));
        assert!(!ok && msg.contains("immutable"), "{msg}");
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(run(&f, "/validate", &body("ActionRequest", "UPDATE", "admin", &[], relabelled, old)).0);
    }

    #[test]
    fn an_agent_files_within_its_quota_and_a_human_is_not_counted() {
        let mut f = fixture();
        let q = socwarden_api::RequestQuota { max_pending: 2, max_per_minute: 10, ..Default::default() };
        f.policy = Some(Arc::new(AutonomyPolicy::new(
            "default",
            socwarden_api::AutonomyPolicySpec { requests: q, ..Default::default() },
        )));
        let create =
            |user: &str| body("ActionRequest", "CREATE", user, &[], obj("ActionRequest", request_spec()), Value::Null);
        assert!(run(&f, "/mutate", &create(BOT_SA)).0);
        assert!(run(&f, "/mutate", &create(BOT_SA)).0);
        let (ok, msg, _) = run(&f, "/mutate", &create(BOT_SA));
        assert!(!ok && msg.contains("has 2 requests waiting for a decision"), "{msg}");
        assert!(run(&f, "/mutate", &create("lead-a")).0, "people filing on the agent's behalf are not capped");
    }

    #[test]
    fn nobody_ties_a_record_to_another_objects_lifetime() {
        let f = with_request("lead-a", None);
        let owner = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "bait", "uid": "cm-uid"}]);
        let mut owned = obj("ActionRequest", request_spec());
        owned["metadata"]["ownerReferences"] = owner.clone();
        let (ok, msg, _) = run(&f, "/validate", &body("ActionRequest", "CREATE", BOT_SA, &[], owned, Value::Null));
        assert!(!ok && msg.contains("ownerReferences: ConfigMap bait"), "{msg}");
        let mut held = obj("Approval", json!({"actionRequest": "r1", "decision": "approve"}));
        held["metadata"]["finalizers"] = json!(["example.com/keep"]);
        let (ok, msg, _) = run(&f, "/validate", &body("Approval", "CREATE", "lead-b", &[], held, Value::Null));
        assert!(!ok && msg.contains("finalizers: example.com/keep"), "{msg}");
        // Not even SOC Warden's own finalizer at creation: only the operator adds it, later.
        let mut ours = obj("ActionRequest", request_spec());
        ours["metadata"]["finalizers"] = json!([crate::controller::request::FINALIZER]);
        assert!(!run(&f, "/validate", &body("ActionRequest", "CREATE", BOT_SA, &[], ours, Value::Null)).0);

        // On update: no owner and no foreign finalizer may be added; the operator's may.
        let old = obj("ActionRequest", request_spec());
        let mut new = old.clone();
        new["metadata"]["ownerReferences"] = owner;
        let (ok, msg, _) = run(&f, "/validate", &body("ActionRequest", "UPDATE", "admin", &[], new, old.clone()));
        assert!(!ok && msg.contains("ownerReferences"), "{msg}");
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["example.com/keep"]);
        assert!(!run(&f, "/validate", &body("ActionRequest", "UPDATE", "admin", &[], new, old.clone())).0);
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!([crate::controller::request::FINALIZER]);
        assert!(run(&f, "/validate", &body("ActionRequest", "UPDATE", "operator", &[], new.clone(), old.clone())).0);
        // Removing what is there is always allowed (the operator ends its rollback that way).
        assert!(run(&f, "/validate", &body("ActionRequest", "UPDATE", "operator", &[], old, new)).0);
    }

    fn lifetime_of(kind: &str, op: &str, ns: &str, new: Value, old: Value) -> Option<Result<(), String>> {
        let mut b: Value =
            serde_json::from_slice(&body("ActionRequest", op, "lead-a", &["soc-leads"], new, old)).unwrap();
        b["request"]["kind"]["kind"] = json!(kind);
        b["request"]["namespace"] = json!(ns);
        b["request"]["name"] = json!("bot");
        let req = decode(&serde_json::to_vec(&b).unwrap()).unwrap();
        lifetime("/validate", &req, &socwarden_core::agent::validate::unobserved("soc-warden-system", &[]))
    }

    #[test]
    fn agents_are_refused_where_the_audit_sink_cannot_see_them() {
        let agent = |ns: &str| json!({"apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent", "metadata": {"name": "bot", "namespace": ns}, "spec": {}});
        for ns in ["kube-system", "soc-warden-system"] {
            let e = lifetime_of("SocAgent", "CREATE", ns, agent(ns), Value::Null).unwrap().unwrap_err();
            assert!(e.contains(&format!("SocAgent {ns}/bot refused: namespace {ns} is not audited")), "{e}");
        }
        assert_eq!(lifetime_of("SocAgent", "CREATE", NS, agent(NS), Value::Null), Some(Ok(())));
        // One declared before the rule stays editable (it can still be paused).
        let old = agent("kube-system");
        assert_eq!(lifetime_of("SocAgent", "UPDATE", "kube-system", old.clone(), old), Some(Ok(())));
        // Not a SocAgent or DriftReport, or not the validating path: not this check's.
        assert_eq!(lifetime_of("ActionRequest", "CREATE", "kube-system", agent("kube-system"), Value::Null), None);
    }

    #[test]
    fn nobody_ties_an_agent_or_its_report_to_another_objects_lifetime() {
        let owner = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "bait", "uid": "cm-uid"}]);
        for kind in ["SocAgent", "DriftReport"] {
            let old = json!({"apiVersion": "socwarden.io/v1alpha1", "kind": kind, "metadata": {"name": "bot", "namespace": NS}, "spec": {"agent": "bot"}});
            let mut owned = old.clone();
            owned["metadata"]["ownerReferences"] = owner.clone();
            // lead-a patching an owner onto a (drift-paused) agent: refused, whoever asks.
            let e = lifetime_of(kind, "UPDATE", NS, owned.clone(), old.clone()).unwrap().unwrap_err();
            assert!(e.contains(&format!("{kind} {NS}/bot cannot be owned")) && e.contains("ConfigMap bait"), "{e}");
            let e = lifetime_of(kind, "CREATE", NS, owned.clone(), Value::Null).unwrap().unwrap_err();
            assert!(e.contains("metadata.ownerReferences"), "{e}");
            // Removing one (a report an earlier version owned by its agent) is allowed.
            assert_eq!(lifetime_of(kind, "UPDATE", NS, old.clone(), owned), Some(Ok(())), "{kind}");
            assert_eq!(lifetime_of(kind, "UPDATE", NS, old.clone(), old), Some(Ok(())), "{kind}");
        }
    }

    /// Replaces one node of a JSON tree with a random value.
    fn mutate(v: &mut Value, rng: &mut Rng) {
        match v {
            Value::Object(m) if !m.is_empty() && rng.below(3) > 0 => {
                let k = m.keys().nth(rng.below(m.len())).unwrap().clone();
                mutate(m.get_mut(&k).unwrap(), rng);
            }
            Value::Array(a) if !a.is_empty() && rng.below(3) > 0 => {
                let i = rng.below(a.len());
                mutate(&mut a[i], rng);
            }
            other => *other = random_value(rng, 0),
        }
    }

    proptest::proptest! {
        /// Any bytes, as any review path: an answer (never a panic), and a refusal says why. The
        /// SocAgent authority check reads the same input without panicking either.
        #[test]
        fn any_bytes_get_an_answer(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let (f, key) = (fixture(), Key::new(b"k"));
            for path in ["/mutate", "/validate"] {
                let r = review(path, &body, &f, &key, "n").response.expect("always a response");
                proptest::prop_assert!(r.allowed || !r.result.message.is_empty());
                if let Ok(req) = decode(&body) {
                    let _ = agent_change(path, &req);
                    let _ = lifetime(path, &req, &Default::default());
                    proptest::prop_assert!(agent_verdict(&req, Ok(())).response.is_some());
                }
            }
        }

        /// A SocAgent update needs a verb exactly when its spec changes.
        #[test]
        fn agent_updates_need_a_verb_exactly_when_the_spec_changes(
            old_paused in proptest::bool::ANY, new_paused in proptest::bool::ANY, min in 1u32..4, new_min in 1u32..4,
        ) {
            let agent = |paused: bool, m: u32| json!({"apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
                "metadata": {"name": "bot", "namespace": NS}, "spec": {"paused": paused, "approvers": {"minApprovals": m}}});
            let mut b: Value = serde_json::from_slice(&body("ActionRequest", "UPDATE", "lead-a", &["soc-leads"], agent(new_paused, new_min), agent(old_paused, min))).unwrap();
            b["request"]["kind"]["kind"] = json!("SocAgent");
            b["request"]["name"] = json!("bot");
            let req = decode(&serde_json::to_vec(&b).unwrap()).expect("a review");
            let change = agent_change("/validate", &req).expect("a SocAgent update");
            proptest::prop_assert_eq!(change.verbs.contains(&"pause"), old_paused != new_paused);
            proptest::prop_assert_eq!(change.verbs.contains(&"update"), min != new_min);
            proptest::prop_assert_eq!((change.namespace.as_str(), change.name.as_str()), (NS, "bot"));
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_always_answers() {
        let f = with_request("lead-a", None);
        let key = Key::new(b"k");
        let seeds = [
            body("ActionRequest", "CREATE", BOT_SA, &[], obj("ActionRequest", request_spec()), Value::Null),
            body(
                "Approval",
                "CREATE",
                "lead-b",
                &["soc-leads"],
                obj("Approval", json!({"actionRequest": "r1", "decision": "approve", "seen": seen(&f)})),
                Value::Null,
            ),
            body(
                "ActionRequest",
                "UPDATE",
                "admin",
                &[],
                obj("ActionRequest", request_spec()),
                obj("ActionRequest", request_spec()),
            ),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..6000 {
            let seed = &seeds[i % seeds.len()];
            let input: Vec<u8> = if i % 4 == 0 {
                // Raw bytes: truncations and flips.
                let mut b = seed.clone();
                b.truncate(rng.below(b.len() + 1));
                for _ in 0..rng.below(4) {
                    if !b.is_empty() {
                        let j = rng.below(b.len());
                        b[j] = rng.next_u64() as u8;
                    }
                }
                b
            } else {
                let mut v: Value = serde_json::from_slice(seed).unwrap();
                for _ in 0..=rng.below(3) {
                    mutate(&mut v, &mut rng);
                }
                serde_json::to_vec(&v).unwrap()
            };
            for path in ["/mutate", "/validate", "/other"] {
                let r = review(path, &input, &f, &key, "n").response.expect("always a response");
                assert!(
                    r.allowed || !r.result.message.is_empty(),
                    "a refusal without a message for {}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
}
