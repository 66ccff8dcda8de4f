//! Label selectors as structures, read from the exact object that will be applied and evaluated
//! here — never assembled into selector text for the API server to parse, where a value such as
//! `kiosk),app notin (vault` would become syntax. Pure.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement of `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A Kubernetes label selector: every `matchLabels` pair and every requirement must hold. An empty
/// selector selects every pod (as a NetworkPolicy's `podSelector: {}` does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Reads a `LabelSelector` (`matchLabels`, `matchExpressions`) or, where the object's selector
    /// is a plain map (a Service's), that map. Anything else is an error: a selector that cannot be
    /// read cannot be shown to an approver.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let bad = |why: &str| format!("cannot read the pod selector {v}: {why}");
        let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
        let structured = obj.keys().all(|k| k == "matchLabels" || k == "matchExpressions");
        let text =
            |x: &Value, what: &str| x.as_str().map(String::from).ok_or_else(|| bad(&format!("{what} is not a string")));
        let mut s = Self::default();
        let labels = if structured { obj.get("matchLabels") } else { Some(v) };
        if let Some(m) = labels.filter(|m| !m.is_null()) {
            for (k, x) in m.as_object().ok_or_else(|| bad("matchLabels is not a map"))? {
                s.match_labels.insert(k.clone(), text(x, "a label value")?);
            }
        }
        let exprs = if structured { obj.get("matchExpressions").filter(|e| !e.is_null()) } else { None };
        for e in exprs
            .map(|e| e.as_array().ok_or_else(|| bad("matchExpressions is not a list")))
            .transpose()?
            .into_iter()
            .flatten()
        {
            let key = text(e.get("key").unwrap_or(&Value::Null), "key")?;
            let operator = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Operator::In,
                Some("NotIn") => Operator::NotIn,
                Some("Exists") => Operator::Exists,
                Some("DoesNotExist") => Operator::DoesNotExist,
                _ => return Err(bad("operator is not In, NotIn, Exists or DoesNotExist")),
            };
            let values = match e.get("values").filter(|x| !x.is_null()) {
                None => vec![],
                Some(a) => a
                    .as_array()
                    .ok_or_else(|| bad("values is not a list"))?
                    .iter()
                    .map(|x| text(x, "a value"))
                    .collect::<Result<_, _>>()?,
            };
            let needs_values = matches!(operator, Operator::In | Operator::NotIn);
            if needs_values == values.is_empty() {
                return Err(bad("In and NotIn need values, Exists and DoesNotExist take none"));
            }
            s.expressions.push(Requirement { key, operator, values });
        }
        Ok(s)
    }

    /// Whether a pod with these labels is selected.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|r| {
                let have = labels.get(&r.key);
                match r.operator {
                    Operator::In => have.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => have.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }
}

/// For people only (messages, the console): `app=web, tier notin [edge]`. Never parsed back.
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        for r in &self.expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in {:?}", r.key, r.values),
                Operator::NotIn => format!("{} notin {:?}", r.key, r.values),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() { f.write_str("every pod") } else { f.write_str(&parts.join(", ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_selector_is_read_and_evaluated_as_kubernetes_does() {
        let s = LabelSelector::from_value(&json!({
            "matchLabels": {"app": "kiosk),app notin (vault"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["edge"]}]
        }))
        .unwrap();
        assert!(!s.selects(&labels(&[("app", "vault")])), "the value is one value, never syntax");
        assert!(s.selects(&labels(&[("app", "kiosk),app notin (vault")])));
        assert!(!s.selects(&labels(&[("app", "kiosk),app notin (vault"), ("tier", "edge")])));
        let every = LabelSelector::from_value(&json!({})).unwrap();
        assert!(every.selects(&labels(&[])) && every.selects(&labels(&[("a", "b")])));
        let service = LabelSelector::from_value(&json!({"app": "web"})).unwrap();
        assert!(service.selects(&labels(&[("app", "web")])) && !service.selects(&labels(&[])));
        let exists = LabelSelector::from_value(&json!({"matchExpressions": [
            {"key": "a", "operator": "Exists"}, {"key": "b", "operator": "DoesNotExist"},
            {"key": "c", "operator": "In", "values": ["1", "2"]}]}))
        .unwrap();
        assert!(exists.selects(&labels(&[("a", ""), ("c", "2")])));
        assert!(!exists.selects(&labels(&[("a", ""), ("b", ""), ("c", "2")])));
        assert!(!exists.selects(&labels(&[("a", "")])));
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchLabels": {"a": 1}}),
            json!("app=web"),
        ] {
            assert!(LabelSelector::from_value(&bad).is_err(), "{bad}");
        }
    }
}
