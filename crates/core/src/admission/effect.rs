//! The effect of a request: every object it touches when it runs, not only the `spec.target` it
//! declares. What a manifest writes, the pods those objects select (listed by the runtime at
//! decision time), and the parameters an action declares as naming targets (`targetKind`). Scope
//! and `protectedTargets` apply to all of it. Pure.

use crate::admission::params;
use serde_json::Value;
use socwarden_api::{ActionRequestSpec, EffectObject, SocActionSpec, Target, TargetSelector};

/// Pods an object of the manifest selects: the runtime lists them and adds them to the effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector {
    pub namespace: String,
    /// A Kubernetes label selector string (`app=web,tier in (db)`); empty selects every pod.
    pub labels: String,
    /// The object that selects them (`NetworkPolicy isolate-web`).
    pub by: String,
}

/// The part of the effect known from the request alone, and the selectors still to resolve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub objects: Vec<EffectObject>,
    pub selectors: Vec<PodSelector>,
}

/// Plans the effect of `spec` under `action`. A manifest that cannot be rendered has no plan (the
/// gate refuses such a request anyway).
pub fn plan(action: &SocActionSpec, spec: &ActionRequestSpec, request_name: &str) -> Result<Plan, String> {
    let mut p = Plan::default();
    for param in &action.parameters {
        let (Some(kind), Some(value)) = (&param.target_kind, spec.parameters.get(&param.name)) else { continue };
        let name = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        p.objects.push(EffectObject {
            kind: kind.clone(),
            namespace: None,
            name,
            via: format!("parameter {}", param.name),
        });
    }
    let Some(tpl) = action.execution.as_ref().and_then(|e| e.manifest.as_ref()) else { return Ok(p) };
    let ns = spec.target.namespace.clone().unwrap_or_default();
    for doc in params::render(tpl, &spec.parameters, &spec.target, request_name)? {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let by = format!("{kind} {name}");
        for path in ["/spec/podSelector", "/spec/selector"] {
            if let Some(sel) = doc.pointer(path) {
                p.selectors.push(PodSelector { namespace: ns.clone(), labels: selector_string(sel)?, by: by.clone() });
            }
        }
        p.objects.push(EffectObject { kind, namespace: Some(ns.clone()), name, via: "written".into() });
    }
    Ok(p)
}

/// The label selector string of a `LabelSelector` (`matchLabels`, `matchExpressions`).
pub fn selector_string(sel: &Value) -> Result<String, String> {
    let bad = || format!("cannot read the pod selector {sel}");
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels") {
        for (k, v) in m.as_object().ok_or_else(bad)? {
            parts.push(format!("{k}={}", v.as_str().ok_or_else(bad)?));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions") {
        for e in exprs.as_array().ok_or_else(bad)? {
            let key = e.get("key").and_then(Value::as_str).ok_or_else(bad)?;
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.push(match e.get("operator").and_then(Value::as_str).ok_or_else(bad)? {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => return Err(bad()),
            });
        }
    }
    Ok(parts.join(","))
}

/// The pods `selector` selected, as effect objects.
pub fn selected(selector: &PodSelector, pods: &[String]) -> Vec<EffectObject> {
    pods.iter()
        .map(|name| EffectObject {
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
    OutOfScope(String),
    Protected(String),
}

impl Forbidden {
    pub fn message(&self) -> &str {
        match self {
            Forbidden::OutOfScope(m) | Forbidden::Protected(m) => m,
        }
    }
}

/// The first object of `effect` outside `scope` or protected by `protected`, and why.
pub fn first_forbidden(effect: &[EffectObject], scope: &[String], protected: &[TargetSelector]) -> Option<Forbidden> {
    effect.iter().find_map(|o| {
        let t = Target { kind: o.kind.clone(), name: o.name.clone(), namespace: o.namespace.clone() };
        if o.namespace.is_some() && !params::in_scope(&t, scope) {
            return Some(Forbidden::OutOfScope(format!(
                "its effect reaches {o}, outside the agent's scope ({})",
                scope.join(", ")
            )));
        }
        params::protected_by(&t, protected).map(|sel| {
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
    use socwarden_api::{Execution, ParameterSpec, ParameterType};

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

    #[test]
    fn a_manifest_writes_objects_and_selects_pods() {
        let p = plan(&isolate(), &request("dc"), "r1").unwrap();
        assert_eq!(
            p.objects.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["NetworkPolicy web/isolate-dc (written)"]
        );
        assert_eq!(
            p.selectors,
            [PodSelector {
                namespace: "web".into(),
                labels: "app=dc,tier notin (edge)".into(),
                by: "NetworkPolicy isolate-dc".into()
            }]
        );
        assert_eq!(selector_string(&json!({})).unwrap(), "", "an empty selector selects every pod");
        assert!(selector_string(&json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})).is_err());
    }

    #[test]
    fn a_protected_pod_the_manifest_selects_is_named_in_plain_words() {
        let p = plan(&isolate(), &request("dc"), "r1").unwrap();
        let mut effect = p.objects.clone();
        effect.extend(selected(&p.selectors[0], &["dc-1".into(), "dc-2".into()]));
        let why = first_forbidden(&effect, &["web".into()], &isolate().protected_targets).unwrap();
        let why = why.message();
        assert_eq!(
            why,
            "its effect reaches Pod web/dc-1 (selected by NetworkPolicy isolate-dc), which is protected (protectedTargets: Pods named like dc-.*)"
        );
        assert!(!why.contains("TargetSelector"), "no Debug output");
        let web = selected(&p.selectors[0], &["web-1".into()]);
        assert_eq!(first_forbidden(&web, &["web".into()], &isolate().protected_targets), None);
        let elsewhere = vec![EffectObject {
            kind: "Pod".into(),
            namespace: Some("db".into()),
            name: "x".into(),
            via: "written".into(),
        }];
        assert!(
            matches!(first_forbidden(&elsewhere, &["web".into()], &[]), Some(Forbidden::OutOfScope(m)) if m.contains("outside the agent's scope"))
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
        r.parameters = [("ip".to_string(), json!("10.0.0.1"))].into();
        let p = plan(&block, &r, "r1").unwrap();
        let why = first_forbidden(&p.objects, &["web".into()], &block.protected_targets).unwrap();
        assert_eq!(
            why.message(),
            "its effect reaches IP 10.0.0.1 (parameter ip), which is protected (protectedTargets: IPs named 10.0.0.1)"
        );
    }
}
