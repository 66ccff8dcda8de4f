//! The effect of a request: every object it touches when it runs, not only the `spec.target` it
//! declares. What a manifest writes, the pods those objects select (listed by the runtime at
//! decision time), and the parameters an action declares as naming targets (`targetKind`). Scope
//! and `protectedTargets` apply to all of it. Pure.

use crate::admission::kinds::{Kind, Kinds};
use crate::admission::params::{self, Resolved};
use crate::admission::selector::LabelSelector;
use serde_json::Value;
use socwarden_api::{ActionRequestSpec, EffectObject, SocActionSpec, TargetSelector};
use std::collections::BTreeMap;

/// Pods an object of the manifest selects: the runtime lists the namespace's pods and keeps those
/// `selector` selects (`selected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: String,
    /// Read from the object that will be applied, as a structure.
    pub selector: LabelSelector,
    /// The object that selects them (`NetworkPolicy isolate-web`).
    pub by: String,
}

/// The part of the effect known from the request alone, and the selectors still to resolve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub objects: Vec<EffectObject>,
    pub selectors: Vec<PodSelector>,
}

/// Plans the effect of `spec` under `action`, from the exact objects its execution applies
/// (`execution::objects`). Every object is resolved (`kinds`) and named canonically; an object of
/// a namespaced kind named by a parameter is in the target's namespace. Whatever cannot be
/// resolved (an unknown kind, a parameter that is not a name of its kind, a namespaced object with
/// no namespace to be in) is an error: the gate refuses a request whose effect it cannot know.
pub fn plan(
    action: &SocActionSpec,
    spec: &ActionRequestSpec,
    request_name: &str,
    kinds: &Kinds,
) -> Result<Plan, String> {
    let mut p = Plan::default();
    for param in &action.parameters {
        let (Some(kind), Some(value)) = (&param.target_kind, spec.parameters.get(&param.name)) else { continue };
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let what = format!("parameter {}", param.name);
        let k = kinds.resolve(kind).map_err(|e| format!("{what} names a target of kind {kind:?}: {e}"))?;
        let namespace = match (&k, &spec.target.namespace) {
            (Kind::Api { namespaced: true, .. }, Some(ns)) => Some(ns.clone()),
            (Kind::Api { namespaced: true, .. }, None) => {
                return Err(format!(
                    "{what} names a {k}, which lives in a namespace, and the request's target has none"
                ));
            }
            _ => None,
        };
        let name = k.canonical_name(&text).map_err(|e| format!("{what}: {e}"))?;
        p.objects.push(EffectObject { kind: kinds.spell(&k), namespace, name, via: what });
    }
    let Some(tpl) = action.execution.as_ref().and_then(|e| e.manifest.as_ref()) else { return Ok(p) };
    for doc in crate::execution::objects(tpl, spec, request_name, "")? {
        let text = |ptr: &str| doc.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
        let (api_version, kind_text, name, ns) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"), text("/metadata/namespace"));
        let kind = kinds.of_object(&api_version, &kind_text)?;
        let by = format!("{kind} {name}");
        for path in ["/spec/podSelector", "/spec/selector"] {
            if let Some(sel) = doc.pointer(path) {
                let selector = LabelSelector::from_value(sel)?;
                p.selectors.push(PodSelector { namespace: ns.clone(), selector, by: by.clone() });
            }
        }
        let namespace = kind.namespaced().then_some(ns);
        p.objects.push(EffectObject { kind: kinds.spell(&kind), namespace, name, via: "written".into() });
    }
    Ok(p)
}

/// The pods `selector` selects among the namespace's `pods` (name and labels), as effect objects.
pub fn selected(selector: &PodSelector, pods: &[(String, BTreeMap<String, String>)]) -> Vec<EffectObject> {
    pods.iter()
        .filter(|(_, labels)| selector.selector.selects(labels))
        .map(|(name, _)| EffectObject {
            kind: "Pod".into(),
            namespace: Some(selector.namespace.clone()),
            name: name.clone(),
            via: format!("selected by {}", selector.by),
        })
        .collect()
}

/// `selector` in plain words: `Pods named like dc-.* in any namespace`.
pub fn describe(sel: &TargetSelector) -> String {
    let kind = sel.kind.as_deref().map(|k| format!("{k}s")).unwrap_or_else(|| "objects".into());
    let name = match (&sel.name, &sel.name_pattern) {
        (Some(n), _) => format!(" named {n}"),
        (None, Some(p)) => format!(" named like {p}"),
        (None, None) => String::new(),
    };
    let ns = sel.namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_default();
    format!("{kind}{name}{ns}")
}

/// Why an object of the effect may not be touched, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// It cannot be resolved (an unknown kind, a name that is not one of its kind).
    Unresolved(String),
    OutOfScope(String),
    Protected(String),
}

impl Forbidden {
    pub fn message(&self) -> &str {
        match self {
            Forbidden::Unresolved(m) | Forbidden::OutOfScope(m) | Forbidden::Protected(m) => m,
        }
    }
}

/// The first object of `effect` that cannot be resolved, is outside `scope` or is protected by
/// `protected`, and why. Every object is compared resolved (`params::Resolved`).
pub fn first_forbidden(
    effect: &[EffectObject],
    kinds: &Kinds,
    scope: &[String],
    protected: &[TargetSelector],
) -> Option<Forbidden> {
    effect.iter().find_map(|o| {
        let t = match Resolved::of(kinds, &o.kind, o.namespace.as_deref(), &o.name) {
            Ok(t) => t,
            Err(e) => {
                return Some(Forbidden::Unresolved(format!("its effect reaches {o}, which cannot be resolved: {e}")));
            }
        };
        if let Some(why) = params::out_of_scope(&t, scope) {
            return Some(Forbidden::OutOfScope(format!("its effect reaches {o}: {why}")));
        }
        params::protected_by(&t, kinds, protected).map(|sel| {
            Forbidden::Protected(format!(
                "its effect reaches {o}, which is protected (protectedTargets: {})",
                describe(sel)
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use socwarden_api::{Execution, ParameterSpec, ParameterType, Target};

    fn isolate() -> SocActionSpec {
        SocActionSpec {
            parameters: vec![ParameterSpec::new("app", ParameterType::String)],
            execution: Some(Execution {
                manifest: Some(
                    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"isolate-${app}\"}\nspec:\n  podSelector: {matchLabels: {app: \"${app}\"}, matchExpressions: [{key: tier, operator: NotIn, values: [edge]}]}\n".into(),
                ),
                http: None,
            }),
            protected_targets: vec![TargetSelector { kind: Some("Pod".into()), name_pattern: Some("dc-.*".into()), ..Default::default() }],
            ..Default::default()
        }
    }

    fn request(app: &str) -> ActionRequestSpec {
        ActionRequestSpec {
            agent: "bot".into(),
            action: "isolate".into(),
            parameters: [("app".to_string(), json!(app))].into(),
            target: Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) },
            ..Default::default()
        }
    }

    fn pods(list: &[(&str, &[(&str, &str)])]) -> Vec<(String, BTreeMap<String, String>)> {
        list.iter()
            .map(|(n, l)| (n.to_string(), l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
            .collect()
    }

    fn k() -> Kinds {
        Kinds::builtin()
    }

    #[test]
    fn a_manifest_writes_objects_and_selects_pods() {
        let p = plan(&isolate(), &request("dc"), "r1", &k()).unwrap();
        assert_eq!(
            p.objects.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["NetworkPolicy web/isolate-dc (written)"]
        );
        assert_eq!(p.selectors.len(), 1);
        assert_eq!(p.selectors[0].by, "NetworkPolicy isolate-dc");
        assert_eq!(p.selectors[0].selector.to_string(), "app=\"dc\", tier notin [\"edge\"]");
        let found =
            selected(&p.selectors[0], &pods(&[("dc-1", &[("app", "dc")]), ("e", &[("app", "dc"), ("tier", "edge")])]));
        assert_eq!(found.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["dc-1"]);
    }

    #[test]
    fn a_value_that_looks_like_selector_syntax_selects_what_the_applied_object_selects() {
        let p = plan(&isolate(), &request("kiosk),app notin (vault"), "r1", &k()).unwrap();
        let all = pods(&[("vault-0", &[("app", "vault")]), ("kiosk-1", &[("app", "kiosk")])]);
        assert!(selected(&p.selectors[0], &all).is_empty(), "{:?}", p.selectors[0]);
    }

    #[test]
    fn a_protected_pod_the_manifest_selects_is_named_in_plain_words() {
        let p = plan(&isolate(), &request("dc"), "r1", &k()).unwrap();
        let mut effect = p.objects.clone();
        effect.extend(selected(&p.selectors[0], &pods(&[("dc-1", &[("app", "dc")]), ("dc-2", &[("app", "dc")])])));
        let why = first_forbidden(&effect, &k(), &["web".into()], &isolate().protected_targets).unwrap();
        let why = why.message();
        assert_eq!(
            why,
            "its effect reaches Pod web/dc-1 (selected by NetworkPolicy isolate-dc), which is protected (protectedTargets: Pods named like dc-.*)"
        );
        assert!(!why.contains("TargetSelector"), "no Debug output");
        let web = selected(&p.selectors[0], &pods(&[("web-1", &[("app", "dc")])]));
        assert_eq!(first_forbidden(&web, &k(), &["web".into()], &isolate().protected_targets), None);
        let elsewhere = vec![EffectObject {
            kind: "Pod".into(),
            namespace: Some("db".into()),
            name: "x".into(),
            via: "written".into(),
        }];
        assert!(
            matches!(first_forbidden(&elsewhere, &k(), &["web".into()], &[]), Some(Forbidden::OutOfScope(m)) if m.contains("outside the scope"))
        );
    }

    #[test]
    fn parameters_that_name_targets_are_part_of_the_effect() {
        let block = SocActionSpec {
            parameters: vec![ParameterSpec {
                target_kind: Some("IP".into()),
                ..ParameterSpec::new("ip", ParameterType::Ip)
            }],
            protected_targets: vec![TargetSelector {
                kind: Some("IP".into()),
                name: Some("10.0.0.1".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut r = request("x");
        r.parameters = [("ip".to_string(), json!("::ffff:10.0.0.1"))].into();
        let p = plan(&block, &r, "r1", &k()).unwrap();
        let why = first_forbidden(&p.objects, &k(), &["web".into()], &block.protected_targets).unwrap();
        assert_eq!(
            why.message(),
            "its effect reaches IP 10.0.0.1 (parameter ip), which is protected (protectedTargets: IPs named 10.0.0.1)"
        );
    }

    #[test]
    fn an_object_a_parameter_names_is_in_the_targets_namespace() {
        let kill = SocActionSpec {
            parameters: vec![ParameterSpec {
                target_kind: Some("pods".into()),
                ..ParameterSpec::new("pod", ParameterType::String)
            }],
            protected_targets: vec![TargetSelector {
                kind: Some("Pod".into()),
                name_pattern: Some("vault-.*".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut r = request("x");
        r.parameters = [("pod".to_string(), json!("vault-0"))].into();
        let p = plan(&kill, &r, "r1", &k()).unwrap();
        assert_eq!(p.objects[0].to_string(), "Pod web/vault-0 (parameter pod)");
        assert!(matches!(
            first_forbidden(&p.objects, &k(), &["web".into()], &kill.protected_targets),
            Some(Forbidden::Protected(_))
        ));
        r.target = Target { kind: "IP".into(), name: "10.1.1.1".into(), namespace: None };
        assert!(plan(&kill, &r, "r1", &k()).unwrap_err().contains("lives in a namespace"));
        let mut unknown = kill.clone();
        unknown.parameters[0].target_kind = Some("Vault".into());
        r.target = request("x").target;
        assert!(plan(&unknown, &r, "r1", &k()).unwrap_err().contains("Vault"));
        let bare = vec![EffectObject {
            kind: "Pod".into(),
            namespace: None,
            name: "vault-0".into(),
            via: "parameter pod".into(),
        }];
        assert!(
            matches!(first_forbidden(&bare, &k(), &["web".into()], &[]), Some(Forbidden::OutOfScope(_))),
            "no namespace, no pass"
        );
    }
}
