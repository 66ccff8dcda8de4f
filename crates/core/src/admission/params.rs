//! The deterministic check of what a model proposes: request parameters against the action's
//! schema, targets against scope and protection, and the rendering of an execution template in
//! which parameters can only ever become string values, never structure. Pure.

use crate::admission::kinds::{Cidr, Kind, Kinds};
use serde_json::Value;
use socwarden_api::{ParameterSpec, ParameterType, Target, TargetSelector};
use std::collections::BTreeMap;

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
                ParameterType::Ip if crate::admission::kinds::canonical_ip(s).is_err() => {
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
    s.contains('/') && Cidr::parse(s).is_ok()
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

/// A target, or an object of a request's effect, resolved: its kind through discovery (`Kinds`),
/// its name in the one spelling of that kind. Scope and protection are decided on this, never on
/// the text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl Resolved {
    /// Resolves `kind`, `namespace` and `name` as written. An unknown kind, a name that is not one
    /// of its kind (`10.0.0.010` as an IP) or a namespace on an external target is an error.
    pub fn of(kinds: &Kinds, kind: &str, namespace: Option<&str>, name: &str) -> Result<Self, String> {
        let k = kinds.resolve(kind)?;
        let name = k.canonical_name(name)?;
        if let (Kind::External(e), Some(ns)) = (&k, namespace) {
            return Err(format!("{} {name} is not a Kubernetes object and has no namespace (got {ns:?})", e.as_str()));
        }
        Ok(Self { kind: k, namespace: namespace.map(String::from), name })
    }

    pub fn target(kinds: &Kinds, t: &Target) -> Result<Self, String> {
        Self::of(kinds, &t.kind, t.namespace.as_deref(), &t.name)
    }
}

/// `Pod web/web-1`, `IP 10.0.0.7`.
impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why a resolved target is outside the agent's scope, if it is: a namespaced resource must name
/// a namespace of the scope; a cluster-scoped resource is outside every agent's scope; an external
/// target (an address, an account) is governed by the parameter schema and the protected targets.
pub fn out_of_scope(t: &Resolved, scope: &[String]) -> Option<String> {
    match (&t.kind, &t.namespace) {
        (Kind::External(_), _) => None,
        (Kind::Api { namespaced: false, .. }, _) => {
            Some(format!("{t} is cluster-scoped: outside the scope of every agent (agents act in namespaces)"))
        }
        (Kind::Api { .. }, None) => Some(format!("{t} lives in a namespace, and none is given")),
        (Kind::Api { .. }, Some(ns)) if !scope.contains(ns) => {
            Some(format!("namespace {ns:?} of {t} is outside the scope ({})", scope.join(", ")))
        }
        _ => None,
    }
}

/// The largest address block whose every address is tested against a protected name pattern;
/// a larger block is protected whenever such a pattern exists (fail closed).
pub const MAX_ENUMERATED: u128 = 1 << 16;

/// The first selector that protects the target, if any. Kinds are compared resolved (`pods` is
/// `Pod`); an address is compared parsed, and a block is protected when it holds a protected
/// address. A selector whose kind or name cannot be resolved protects what it might have meant:
/// fail closed.
pub fn protected_by<'a>(t: &Resolved, kinds: &Kinds, selectors: &'a [TargetSelector]) -> Option<&'a TargetSelector> {
    selectors.iter().find(|s| {
        let any = s.kind.is_some() || s.namespace.is_some() || s.name.is_some() || s.name_pattern.is_some();
        let sel_kind = s.kind.as_deref().map(|k| kinds.resolve(k));
        let kind = match &sel_kind {
            None => true,
            Some(Err(_)) => true,
            Some(Ok(k)) => *k == t.kind || (is_address(k) && is_address(&t.kind)),
        };
        let ns = s.namespace.as_ref().is_none_or(|n| Some(n) == t.namespace.as_ref());
        let name = s.name.as_ref().is_none_or(|n| name_matches(t, n));
        let pattern = s.name_pattern.as_ref().is_none_or(|p| pattern_matches(t, p));
        any && kind && ns && name && pattern
    })
}

fn is_address(k: &Kind) -> bool {
    matches!(k, Kind::External(e) if e.is_address())
}

fn name_matches(t: &Resolved, want: &str) -> bool {
    if is_address(&t.kind) {
        return match (Cidr::parse(want), Cidr::parse(&t.name)) {
            (Ok(w), Ok(have)) => w.overlaps(&have),
            (Err(_), Ok(_)) => want.eq_ignore_ascii_case(&t.name),
            (_, Err(_)) => true,
        };
    }
    match t.kind.canonical_name(want) {
        Ok(w) => w == t.name,
        // Not a name of this kind: it cannot be this target.
        Err(_) => false,
    }
}

fn pattern_matches(t: &Resolved, pattern: &str) -> bool {
    let insensitive = matches!(&t.kind, Kind::External(e) if e.case_insensitive());
    let p = if insensitive { format!("(?i:{pattern})") } else { pattern.to_string() };
    // A broken pattern protects everything it might have meant to: fail closed.
    let hit = |name: &str| full_match(&p, name).unwrap_or(true);
    if !is_address(&t.kind) {
        return hit(&t.name);
    }
    let Ok(block) = Cidr::parse(&t.name) else { return true };
    if hit(&t.name) || hit(&block.network.to_string()) {
        return true;
    }
    match block.size_at_most(MAX_ENUMERATED) {
        Some(_) => block.addresses().any(|a| hit(&a.to_string())),
        None => true,
    }
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

    fn r(ns: Option<&str>, kind: &str, name: &str) -> Result<Resolved, String> {
        Resolved::of(&Kinds::builtin(), kind, ns, name)
    }

    #[test]
    fn scope_is_decided_on_the_resolved_kind() {
        let scope = vec!["web".to_string()];
        let out = |t: Resolved| out_of_scope(&t, &scope);
        assert_eq!(out(r(Some("web"), "pods", "a").unwrap()), None);
        assert!(out(r(Some("kube-system"), "Pod", "a").unwrap()).unwrap().contains("outside the scope"));
        assert!(out(r(None, "po", "a").unwrap()).unwrap().contains("none is given"));
        assert!(out(r(None, "nodes", "n1").unwrap()).unwrap().contains("cluster-scoped"));
        assert_eq!(out(r(None, "IP", "10.0.0.1").unwrap()), None);
        assert!(r(Some("web"), "IP", "10.0.0.1").unwrap_err().contains("no namespace"));
        assert!(r(Some("web"), "Vault", "v").unwrap_err().contains("neither a resource"));
        assert!(r(None, "IP", "010.0.0.1").unwrap_err().contains("not an IP address"));
    }

    #[test]
    fn protection_holds_for_every_spelling() {
        let k = Kinds::builtin();
        let sel = vec![
            TargetSelector {
                kind: Some("Pod".into()),
                namespace: Some("web".into()),
                name_pattern: Some("dc-.*".into()),
                ..Default::default()
            },
            TargetSelector { kind: Some("User".into()), name: Some("root".into()), ..Default::default() },
            TargetSelector { kind: Some("IP".into()), name: Some("172.20.0.7".into()), ..Default::default() },
            TargetSelector {
                kind: Some("IP".into()),
                name_pattern: Some("10\\.0\\.0\\.[0-9]+".into()),
                ..Default::default()
            },
            TargetSelector { kind: Some("CIDR".into()), name: Some("192.168.0.0/16".into()), ..Default::default() },
            TargetSelector::default(), // matches nothing: an empty selector protects nothing
        ];
        let hit =
            |ns: Option<&str>, kind: &str, name: &str| protected_by(&r(ns, kind, name).unwrap(), &k, &sel).is_some();
        for kind in ["Pod", "pod", "pods", "po", "v1/pods", "PODS"] {
            assert!(hit(Some("web"), kind, "dc-01"), "{kind}");
        }
        assert!(!hit(Some("web"), "Pod", "web-1"));
        assert!(!hit(Some("web"), "Service", "dc-01"), "another resource");
        assert!(hit(None, "User", "root") && hit(None, "user", "ROOT"));
        assert!(!hit(None, "User", "alice"));
        for ip in ["172.20.0.7", "::ffff:172.20.0.7", "::ffff:ac14:7"] {
            assert!(hit(None, "IP", ip), "{ip}");
        }
        assert!(hit(None, "IP", "::ffff:10.0.0.9"), "a pattern is matched on the canonical address");
        assert!(hit(None, "CIDR", "172.20.0.0/24"), "a block holding a protected address");
        assert!(hit(None, "CIDR", "10.0.0.0/24"), "a block holding an address the pattern protects");
        assert!(hit(None, "CIDR", "10.0.0.0/8"), "too large to enumerate: protected (fail closed)");
        assert!(hit(None, "IP", "192.168.3.4"), "an address in a protected block");
        assert!(!hit(None, "CIDR", "172.21.0.0/24"));
        assert!(!hit(None, "IP", "172.20.0.8"));
        let broken = vec![TargetSelector { name_pattern: Some("(".into()), ..Default::default() }];
        assert!(
            protected_by(&r(None, "User", "alice").unwrap(), &k, &broken).is_some(),
            "a broken pattern fails closed"
        );
        let unknown = vec![TargetSelector { kind: Some("Vault".into()), ..Default::default() }];
        assert!(
            protected_by(&r(None, "User", "alice").unwrap(), &k, &unknown).is_some(),
            "an unknown kind fails closed"
        );
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
