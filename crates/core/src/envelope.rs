//! The safe envelope of executions: what a SocAction's manifest may write with the operator's
//! identity. Only namespaced kinds the operator may also delegate to agents (the delegable rules,
//! with the verbs server-side apply and a rollback use), and never an object that hands out rights
//! or credentials, whatever the delegable rules say. A GitOps committer who edits the catalog thus
//! gets no more than an agent could be given. Pure: the runtime resolves each kind to its resource
//! (API discovery) and asks here.

use crate::agent::rbac::{self, Rule};
use socwarden_api::{Grant, ParameterSpec, Verb};

pub use socwarden_api::OPERATOR_SECRETS;

/// Why the Secret `name` (in the operator's namespace), named by `field`, may not be used, if so.
pub fn secret_problem(field: &str, name: &str) -> Option<String> {
    OPERATOR_SECRETS.contains(&name).then(|| {
        format!("{field} names {name}, the operator's own Secret; give the endpoint a key of its own in another Secret")
    })
}

/// The `apiVersion` and `kind` of one object of a manifest, as written in the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.api_version(), self.kind)
    }
}

/// The label every object an execution writes carries: the UID of its request.
pub const REQUEST_LABEL: &str = "socwarden.io/action-request";

/// Who an existing object belongs to, from its labels.
fn owner(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels.get(REQUEST_LABEL).map(String::as_str)
}

/// Whether the execution of request `uid` may write `what`, which exists with `labels` (`None`:
/// it does not exist). It may write what is absent or what it applied itself (a repeat after a
/// restart); never what another request applied or what SOC Warden did not create — a later
/// rollback of this request would otherwise remove a containment someone else decided.
pub fn may_write(
    existing: Option<&std::collections::BTreeMap<String, String>>,
    uid: &str,
    what: &str,
) -> Result<(), String> {
    match existing.map(owner) {
        None => Ok(()),
        Some(Some(o)) if o == uid => Ok(()),
        Some(Some(other)) => Err(format!(
            "{what} was applied by another request (UID {other}); an execution never takes over what another request applied"
        )),
        Some(None) => Err(format!(
            "{what} exists and was not applied by SOC Warden; an execution never takes over an object it did not create"
        )),
    }
}

/// Whether a rollback of request `uid` removes an object carrying `labels`: only what that request
/// applied.
pub fn rolls_back(labels: &std::collections::BTreeMap<String, String>, uid: &str) -> bool {
    owner(labels) == Some(uid)
}

/// API groups none of whose kinds an execution may write: they grant rights, admit or change
/// requests, define types or mint credentials.
const NEVER_GROUPS: &[&str] = &[
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "certificates.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "socwarden.io",
];
/// Core kinds an execution may never write: identities and credentials.
const NEVER_CORE_KINDS: &[&str] = &["ServiceAccount", "Secret"];

/// The kinds of every object of a manifest template, read before any parameter is substituted
/// (parameters fill string values only, so these are what will be applied). `apiVersion` and
/// `kind` must be written literally.
pub fn manifest_kinds(template: &str) -> Result<Vec<Kind>, String> {
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(template) {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("execution manifest is not YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        let field = |name: &str| -> Result<String, String> {
            let s = v
                .get(name)
                .and_then(|x| x.as_str())
                .ok_or_else(|| format!("an object of the execution manifest has no {name}"))?;
            if s.contains("${") {
                return Err(format!("{name} {s:?} must be written literally, without parameters"));
            }
            Ok(s.to_string())
        };
        let (api_version, kind) = (field("apiVersion")?, field("kind")?);
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        kinds.push(Kind { group: group.into(), version: version.into(), kind });
    }
    if kinds.is_empty() {
        return Err("execution manifest is empty".into());
    }
    Ok(kinds)
}

/// Placeholders every request fills, whatever its parameters.
const ALWAYS_FILLED: &[&str] = &["target.name", "target.kind", "target.namespace", "request.name"];

/// What in a manifest template a request that passes the parameter schema might not fill: a
/// placeholder that names no parameter, or an optional one. Every accepted request must render, so
/// that approvers never approve what cannot run.
pub fn placeholder_problems(template: &str, schema: &[ParameterSpec]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(template) {
        if let Ok(v) = <serde_json::Value as serde::Deserialize>::deserialize(doc) {
            placeholders(&v, &mut names);
        }
    }
    names
        .into_iter()
        .filter(|n| !ALWAYS_FILLED.contains(&n.as_str()))
        .filter_map(|n| match schema.iter().find(|p| p.name == n) {
            None => Some(format!("the manifest uses ${{{n}}}, which is not a parameter of the action")),
            Some(p) if !p.required => Some(format!(
                "the manifest uses ${{{n}}}, an optional parameter: a request without it could not run (make it required)"
            )),
            Some(_) => None,
        })
        .collect()
}

/// The `${name}` placeholders inside the string values of `v` (keys are never substituted).
fn placeholders(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                out.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| placeholders(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| placeholders(x, out)),
        _ => {}
    }
}

/// The verbs an execution uses on what it writes: server-side apply creates or patches, and a
/// rollback deletes.
pub fn verbs(reversible: bool) -> Vec<Verb> {
    let mut v = vec![Verb::Create, Verb::Patch];
    if reversible {
        v.push(Verb::Delete);
    }
    v
}

/// Why `kind` is never executable, whatever the delegable rules say; `None` for other kinds.
pub fn never(kind: &Kind) -> Option<String> {
    let never = NEVER_GROUPS.contains(&kind.group.as_str())
        || (kind.group.is_empty() && NEVER_CORE_KINDS.contains(&kind.kind.as_str()));
    never.then(|| {
        format!(
            "{kind} is never executable: RBAC objects, ServiceAccounts, Secrets, admission webhooks, CRDs and SOC Warden's own records would hand out the operator's rights"
        )
    })
}

/// Why an execution may not write `kind`, served as resource `plural` (namespaced or not); `None`
/// when it may.
pub fn problem(kind: &Kind, plural: &str, namespaced: bool, reversible: bool, delegable: &[Rule]) -> Option<String> {
    if let Some(p) = never(kind) {
        return Some(p);
    }
    if !namespaced {
        return Some(format!(
            "{kind} is cluster-scoped; executions write only namespaced objects, in the target's namespace"
        ));
    }
    let grant = Grant {
        api_groups: vec![kind.group.clone()],
        resources: vec![plural.into()],
        verbs: verbs(reversible),
        resource_names: vec![],
    };
    let missing = rbac::undelegable(delegable, &grant);
    (!missing.is_empty()).then(|| {
        format!(
            "{kind}: SOC Warden may not delegate {} (the delegable rules), so an execution may not do it either",
            missing.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegable() -> Vec<Rule> {
        rbac::parse_delegable(rbac::DEFAULT_DELEGABLE).unwrap()
    }

    const NETPOL: &str =
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"isolate-${app}\"}\n";

    #[test]
    fn kinds_are_read_before_substitution_and_must_be_literal() {
        let two = format!("{NETPOL}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n");
        let kinds = manifest_kinds(&two).unwrap();
        assert_eq!(
            kinds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["networking.k8s.io/v1 NetworkPolicy", "v1 ConfigMap"]
        );
        let e = manifest_kinds("apiVersion: v1\nkind: \"${kind}\"\nmetadata: {name: x}\n").unwrap_err();
        assert!(e.contains("must be written literally"), "{e}");
        assert!(manifest_kinds("metadata: {name: x}\n").unwrap_err().contains("no apiVersion"));
        assert!(manifest_kinds("---\n").unwrap_err().contains("empty"));
    }

    #[test]
    fn every_placeholder_is_filled_by_every_accepted_request() {
        let p = |name: &str, required: bool| ParameterSpec {
            required,
            ..ParameterSpec::new(name, socwarden_api::ParameterType::String)
        };
        let tpl = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"x-${app}\", annotations: {by: \"${request.name} ${note}\", n: \"${ghost}\"}}\n";
        let problems = placeholder_problems(tpl, &[p("app", true), p("note", false)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("${ghost}, which is not a parameter"), "{problems:?}");
        assert!(problems[1].contains("${note}, an optional parameter"), "{problems:?}");
        assert!(placeholder_problems(tpl, &[p("app", true), p("note", true), p("ghost", true)]).is_empty());
    }

    #[test]
    fn an_execution_takes_over_nothing_and_a_rollback_removes_only_its_own() {
        let labels = |uid: Option<&str>| {
            let mut l = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
            if let Some(u) = uid {
                l.insert(REQUEST_LABEL.into(), u.into());
            }
            l
        };
        assert_eq!(may_write(None, "r2", "NetworkPolicy web/isolate-web"), Ok(()));
        assert_eq!(may_write(Some(&labels(Some("r2"))), "r2", "x"), Ok(()), "a repeat of its own");
        let e = may_write(Some(&labels(Some("r1"))), "r2", "NetworkPolicy web/isolate-web").unwrap_err();
        assert!(e.contains("NetworkPolicy web/isolate-web was applied by another request (UID r1)"), "{e}");
        let e = may_write(Some(&labels(None)), "r2", "x").unwrap_err();
        assert!(e.contains("not applied by SOC Warden"), "{e}");
        assert!(rolls_back(&labels(Some("r1")), "r1"));
        assert!(!rolls_back(&labels(Some("r1")), "r2"));
        assert!(!rolls_back(&labels(None), "r1"));
    }

    #[test]
    fn only_what_may_be_delegated_is_executable() {
        let d = delegable();
        let k = |group: &str, kind: &str| Kind { group: group.into(), version: "v1".into(), kind: kind.into() };
        assert_eq!(problem(&k("networking.k8s.io", "NetworkPolicy"), "networkpolicies", true, true, &d), None);
        // Pods may be deleted by agents, but never created by an execution.
        let p = problem(&k("", "Pod"), "pods", true, false, &d).unwrap();
        assert!(p.contains("may not delegate create pods, patch pods"), "{p}");
        let p = problem(&k("", "ConfigMap"), "configmaps", true, false, &d).unwrap();
        assert!(p.contains("create configmaps"), "{p}");
        assert!(problem(&k("", "Namespace"), "namespaces", false, false, &d).unwrap().contains("cluster-scoped"));
    }

    #[test]
    fn rights_and_credentials_are_never_executable_even_if_delegable() {
        let everything = vec![Rule::new(
            ["", "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "socwarden.io"],
            [
                "rolebindings",
                "roles",
                "secrets",
                "serviceaccounts",
                "validatingwebhookconfigurations",
                "customresourcedefinitions",
                "actionrequests",
            ],
            ["create", "patch", "delete"],
            [] as [&str; 0],
        )];
        for (group, kind, plural) in [
            ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
            ("rbac.authorization.k8s.io", "Role", "roles"),
            ("", "Secret", "secrets"),
            ("", "ServiceAccount", "serviceaccounts"),
            ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations"),
            ("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions"),
            ("socwarden.io", "ActionRequest", "actionrequests"),
        ] {
            let kind = Kind { group: group.into(), version: "v1".into(), kind: kind.into() };
            let p = problem(&kind, plural, true, true, &everything).unwrap_or_default();
            assert!(p.contains("is never executable"), "{kind}: {p}");
        }
    }

    #[test]
    fn the_operators_own_secrets_are_never_an_executions_key() {
        for name in OPERATOR_SECRETS {
            let why = secret_problem("execution.http.secretRef", name).expect(name);
            assert!(why.contains(name) && why.contains("execution.http.secretRef"), "{why}");
        }
        assert_eq!(secret_problem("execution.http.secretRef", "soar-key"), None);
    }
}
