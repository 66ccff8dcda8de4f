//! The deterministic check of what a model proposes: request parameters against the action's
//! schema, targets against scope and protection, and the rendering of an execution template in
//! which parameters can only ever become string values, never structure. Pure.

use serde_json::Value;
use socwarden_api::{ParameterSpec, ParameterType, Target, TargetSelector};
use std::collections::BTreeMap;
use std::net::IpAddr;

const DEFAULT_MAX_LENGTH: usize = 253;

fn full_match(pattern: &str, value: &str) -> Result<bool, String> {
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid pattern {pattern:?}: {e}"))?;
    Ok(re.is_match(value))
}

fn check_one(p: &ParameterSpec, v: &Value) -> Result<(), String> {
    let name = &p.name;
    let as_text = match (p.type_, v) {
        (ParameterType::Integer, Value::Number(n)) if n.is_i64() => {
            let i = n.as_i64().unwrap_or_default();
            if p.minimum.is_some_and(|m| i < m) || p.maximum.is_some_and(|m| i > m) {
                return Err(format!("parameter {name} = {i} is outside [{:?}, {:?}]", p.minimum, p.maximum));
            }
            i.to_string()
        }
        (ParameterType::Boolean, Value::Bool(b)) => b.to_string(),
        (ParameterType::String | ParameterType::Ip | ParameterType::Cidr, Value::String(s)) => {
            let max = p.max_length.map(|m| m as usize).unwrap_or(DEFAULT_MAX_LENGTH);
            if s.chars().count() > max {
                return Err(format!("parameter {name} is longer than {max} characters"));
            }
            if s.chars().any(char::is_control) {
                return Err(format!("parameter {name} contains control characters"));
            }
            match p.type_ {
                ParameterType::Ip if s.parse::<IpAddr>().is_err() => {
                    return Err(format!("parameter {name} = {s:?} is not an IP address"));
                }
                ParameterType::Cidr if !is_cidr(s) => {
                    return Err(format!("parameter {name} = {s:?} is not a CIDR block (e.g. 10.0.0.0/24)"));
                }
                _ => {}
            }
            if let Some(pat) = &p.pattern
                && !full_match(pat, s)?
            {
                return Err(format!("parameter {name} = {s:?} does not match {pat:?}"));
            }
            s.clone()
        }
        (t, v) => return Err(format!("parameter {name} must be of type {t:?}, got {v}").to_lowercase()),
    };
    if !p.allowed.is_empty() && !p.allowed.contains(&as_text) {
        return Err(format!("parameter {name} = {as_text:?} is not one of {:?}", p.allowed));
    }
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else { return false };
    let Ok(ip) = ip.parse::<IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.parse::<u8>().is_ok_and(|l| l <= max) && !len.starts_with('+')
}

/// Checks parameters against the schema: no unknown ones, every required one, types, patterns,
/// enums, bounds. The first problem is returned, worded for the requester.
pub fn validate(schema: &[ParameterSpec], params: &BTreeMap<String, Value>) -> Result<(), String> {
    if let Some(unknown) = params.keys().find(|k| !schema.iter().any(|p| &p.name == *k)) {
        let known: Vec<&str> = schema.iter().map(|p| p.name.as_str()).collect();
        return Err(format!("unknown parameter {unknown:?} (the action takes {known:?})"));
    }
    for p in schema {
        match params.get(&p.name) {
            Some(v) => check_one(p, v)?,
            None if p.required => return Err(format!("missing required parameter {:?}", p.name)),
            None => {}
        }
    }
    Ok(())
}

/// Whether a target is within the agent's scope: a namespaced target must be in one of the scope
/// namespaces; a target without namespace (an address, an account) is outside Kubernetes scoping
/// and is governed by the parameter schema and the protected targets.
pub fn in_scope(target: &Target, scope: &[String]) -> bool {
    target.namespace.as_ref().is_none_or(|ns| scope.contains(ns))
}

/// The first selector that protects the target, if any.
pub fn protected_by<'a>(target: &Target, selectors: &'a [TargetSelector]) -> Option<&'a TargetSelector> {
    selectors.iter().find(|s| {
        let kind = s.kind.as_ref().is_none_or(|k| k.eq_ignore_ascii_case(&target.kind));
        let ns = s.namespace.as_ref().is_none_or(|n| Some(n) == target.namespace.as_ref());
        let name = s.name.as_ref().is_none_or(|n| *n == target.name);
        // A broken pattern protects everything it might have meant to: fail closed.
        let pattern = s.name_pattern.as_ref().is_none_or(|p| full_match(p, &target.name).unwrap_or(true));
        kind && ns
            && name
            && pattern
            && (s.kind.is_some() || s.namespace.is_some() || s.name.is_some() || s.name_pattern.is_some())
    })
}

/// Renders an execution template: parses the YAML first, then substitutes `${...}` inside string
/// values only. A value that is exactly one placeholder of an integer or boolean parameter takes
/// that type. A placeholder with no value is an error.
pub fn render(
    template: &str,
    params: &BTreeMap<String, Value>,
    target: &Target,
    request_name: &str,
) -> Result<Vec<Value>, String> {
    let mut vars: BTreeMap<String, Value> = params.clone();
    vars.insert("target.name".into(), Value::String(target.name.clone()));
    vars.insert("target.kind".into(), Value::String(target.kind.clone()));
    if let Some(ns) = &target.namespace {
        vars.insert("target.namespace".into(), Value::String(ns.clone()));
    }
    vars.insert("request.name".into(), Value::String(request_name.to_string()));

    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(template) {
        let v: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("execution manifest is not YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        docs.push(substitute(v, &vars)?);
    }
    if docs.is_empty() {
        return Err("execution manifest is empty".into());
    }
    Ok(docs)
}

fn substitute(v: Value, vars: &BTreeMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                && !name.contains("${")
            {
                let val = vars.get(name).ok_or_else(|| format!("no value for ${{{name}}}"))?;
                return Ok(match val {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => val.clone(),
                    other => Value::String(other.to_string()),
                });
            }
            Value::String(interpolate(&s, vars)?)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| substitute(x, vars)).collect::<Result<_, _>>()?),
        // Keys are never substituted: parameters cannot add or rename fields.
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, x)| Ok((k, substitute(x, vars)?))).collect::<Result<_, String>>()?)
        }
        other => other,
    })
}

fn interpolate(s: &str, vars: &BTreeMap<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated placeholder in {s:?}"))?;
        let name = &after[..end];
        let val = vars.get(name).ok_or_else(|| format!("no value for ${{{name}}}"))?;
        match val {
            Value::String(x) => out.push_str(x),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(name: &str, t: ParameterType) -> ParameterSpec {
        ParameterSpec::new(name, t)
    }

    fn params(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn schema_table() {
        let mut pod = p("pod", ParameterType::String);
        pod.pattern = Some("[a-z0-9-]{1,63}".into());
        let mut mins = p("minutes", ParameterType::Integer);
        mins.minimum = Some(1);
        mins.maximum = Some(60);
        mins.required = false;
        let mut mode = p("mode", ParameterType::String);
        mode.allowed = vec!["ingress".into(), "all".into()];
        mode.required = false;
        let ip = ParameterSpec { required: false, ..p("ip", ParameterType::Ip) };
        let cidr = ParameterSpec { required: false, ..p("net", ParameterType::Cidr) };
        let schema = vec![pod, mins, mode, ip, cidr];
        let ok = |v| validate(&schema, &params(v));
        assert!(ok(json!({"pod": "web-1"})).is_ok());
        assert!(
            ok(json!({"pod": "web-1", "minutes": 30, "mode": "all", "ip": "10.1.2.3", "net": "10.0.0.0/8"})).is_ok()
        );
        assert!(ok(json!({"pod": "::1", "ip": "::1"})).unwrap_err().contains("does not match"));
        let cases = [
            (json!({}), "missing required parameter \"pod\""),
            (json!({"pod": "Web_1"}), "does not match"),
            (json!({"pod": "web-1; rm -rf /"}), "does not match"),
            (json!({"pod": "web-1", "extra": 1}), "unknown parameter \"extra\""),
            (json!({"pod": 7}), "must be of type string"),
            (json!({"pod": "a", "minutes": 0}), "outside"),
            (json!({"pod": "a", "minutes": "5"}), "must be of type integer"),
            (json!({"pod": "a", "minutes": 1.5}), "must be of type integer"),
            (json!({"pod": "a", "mode": "egress"}), "is not one of"),
            (json!({"pod": "a", "ip": "10.1.2"}), "not an IP address"),
            (json!({"pod": "a", "net": "10.0.0.0/33"}), "not a CIDR"),
            (json!({"pod": "a", "net": "10.0.0.0"}), "not a CIDR"),
        ];
        for (input, want) in cases {
            let err = ok(input.clone()).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn long_or_control_strings_are_refused() {
        let schema = vec![p("s", ParameterType::String)];
        assert!(validate(&schema, &params(json!({"s": "x".repeat(254)}))).unwrap_err().contains("longer"));
        assert!(validate(&schema, &params(json!({"s": "a\nb"}))).unwrap_err().contains("control"));
    }

    #[test]
    fn scope_and_protection() {
        let t = |ns: Option<&str>, kind: &str, name: &str| Target {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(String::from),
        };
        let scope = vec!["web".to_string()];
        assert!(in_scope(&t(Some("web"), "Pod", "a"), &scope));
        assert!(!in_scope(&t(Some("kube-system"), "Pod", "a"), &scope));
        assert!(in_scope(&t(None, "IP", "10.0.0.1"), &scope));

        let sel = vec![
            TargetSelector {
                kind: Some("Pod".into()),
                namespace: Some("web".into()),
                name_pattern: Some("dc-.*".into()),
                ..Default::default()
            },
            TargetSelector { kind: Some("User".into()), name: Some("root".into()), ..Default::default() },
            TargetSelector::default(), // matches nothing: an empty selector protects nothing
        ];
        assert!(protected_by(&t(Some("web"), "pod", "dc-01"), &sel).is_some());
        assert!(protected_by(&t(Some("web"), "Pod", "web-1"), &sel).is_none());
        assert!(protected_by(&t(None, "User", "root"), &sel).is_some());
        assert!(protected_by(&t(None, "User", "alice"), &sel).is_none());
        let broken = vec![TargetSelector { name_pattern: Some("(".into()), ..Default::default() }];
        assert!(protected_by(&t(None, "User", "alice"), &broken).is_some(), "a broken pattern fails closed");
    }

    #[test]
    fn templates_substitute_values_never_structure() {
        let tpl = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: isolate-${pod}\n  namespace: ${target.namespace}\nspec:\n  podSelector:\n    matchLabels: {app: \"${pod}\"}\n  policyTypes: [Ingress, Egress]\n";
        let target = Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) };
        let out = render(tpl, &params(json!({"pod": "web-1"})), &target, "r1").unwrap();
        assert_eq!(out[0]["metadata"]["name"], "isolate-web-1");
        assert_eq!(out[0]["metadata"]["namespace"], "web");
        assert_eq!(out[0]["spec"]["podSelector"]["matchLabels"]["app"], "web-1");

        // A hostile value stays one string; it cannot open a new key.
        let evil = "x\"}\nspec: {podSelector: {}}\nfoo: {\"";
        let out = render(tpl, &params(json!({"pod": evil})), &target, "r1").unwrap();
        assert_eq!(out[0]["spec"]["podSelector"]["matchLabels"]["app"], evil);
        assert!(out[0].get("foo").is_none());

        // Whole-value placeholders keep their type.
        let out =
            render("n: ${count}\nb: ${flag}\n", &params(json!({"count": 3, "flag": true})), &target, "r").unwrap();
        assert_eq!(out[0]["n"], 3);
        assert_eq!(out[0]["b"], true);

        assert!(render("a: ${missing}\n", &params(json!({})), &target, "r").unwrap_err().contains("no value"));
        assert!(render("a: b: c: [\n", &params(json!({})), &target, "r").is_err());
        assert!(render("", &params(json!({})), &target, "r").is_err());
    }
}
