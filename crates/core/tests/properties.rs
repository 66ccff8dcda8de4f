//! Property tests of the decision functions the security model rests on: no input makes them
//! panic, and their invariants hold for every input proptest finds — a parameter never adds a
//! field to a rendered manifest, a duration is bounded and round-trips, a signature never verifies
//! for a different content, and an audit batch of any shape is read or refused, never crashes.

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};
use socwarden_api::duration;
use socwarden_api::{ActionRequestSpec, ApprovalDecision, ApprovalSpec, ParameterSpec, ParameterType, Target};
use socwarden_core::admission::{identity, params, signature};
use socwarden_core::behaviour::audit;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        "\\PC{0,16}".prop_map(Value::String),
        // Text that looks like structure: YAML, JSON, placeholders, newlines.
        prop_oneof![
            Just("x\nkind: Secret".to_string()),
            Just("{\"a\": 1}".to_string()),
            Just("${app}".to_string()),
            Just("]: [".to_string()),
            Just("\"quoted\", \"comma\"".to_string()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The paths of every field of a JSON value (its structure, not its values).
fn fields(v: &Value, at: String, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.insert(p.clone());
                fields(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                fields(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

const TEMPLATE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: "isolate-${app}"
  labels: {note: "${note} for ${target.name}"}
spec:
  podSelector: {matchLabels: {app: "${app}"}}
  policyTypes: [Ingress, Egress]
"#;

fn target() -> Target {
    Target { kind: "Pod".into(), name: "web-1".into(), namespace: Some("web".into()) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn duration_parsing_never_panics_and_stays_bounded(s in "[0-9dhms]{0,24}|\\PC{0,24}") {
        if let Some(d) = duration::parse(&s) {
            prop_assert!(d <= duration::MAX, "{s:?} parsed to {d:?}");
        }
    }

    #[test]
    fn every_bounded_duration_round_trips(secs in 0..=duration::MAX.as_secs()) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(duration::parse(&duration::format(d)), Some(d));
    }

    /// The CRD holds a duration field to `duration::PATTERN` (and a length of at least 2) and its
    /// CEL rule to the sum of the parts it finds; together they admit exactly what `parse` reads.
    /// `cel_seconds` is the rule's arithmetic, written again in Rust: the rule itself is run by
    /// the API server in `e2e/tests/schema.rs`.
    #[test]
    fn the_schema_admits_exactly_the_durations_parse_reads(s in "([0-9]{1,7}[dhms]){0,5}|[0-9dhms]{0,12}") {
        let pattern = regex::Regex::new(duration::PATTERN).unwrap();
        let cel_seconds = |s: &str| -> u64 {
            [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)].iter().map(|(unit, secs)| {
                let part = regex::Regex::new(&format!("[0-9]+{unit}")).unwrap();
                part.find(s).map_or(0, |m| m.as_str().trim_end_matches(*unit).parse::<u64>().unwrap()) * secs
            }).sum()
        };
        let admitted = s.len() >= 2 && pattern.is_match(&s) && cel_seconds(&s) <= duration::MAX.as_secs();
        let longest_part = s.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
        if longest_part <= 6 {
            prop_assert_eq!(admitted, duration::parse(&s).is_some(), "{:?}", s);
        } else {
            prop_assert!(!admitted, "{:?}: a part of more than 6 digits", s);
        }
        if admitted {
            prop_assert_eq!(duration::parse(&s).map(|d| d.as_secs()), Some(cel_seconds(&s)), "{:?}", s);
        }
    }

    #[test]
    fn huge_numbers_are_refused_not_overflowed(n in any::<u64>(), unit in "[dhms]") {
        let parsed = duration::parse(&format!("{n}{unit}"));
        let secs = n.checked_mul(match unit.as_str() { "d" => 86_400, "h" => 3_600, "m" => 60, _ => 1 });
        prop_assert_eq!(parsed.is_some(), secs.is_some_and(|s| s <= duration::MAX.as_secs()));
    }

    /// A parameter is a value, never structure: whatever it holds (YAML, JSON, placeholders,
    /// objects), the rendered manifest has exactly the fields of the template.
    #[test]
    fn a_parameter_never_adds_a_field(app in json_value(), note in json_value()) {
        let plain: BTreeMap<String, Value> = [("app".into(), json!("web")), ("note".into(), json!("n"))].into();
        let mut want = BTreeSet::new();
        for d in params::render(TEMPLATE, &plain, &target(), "r1").unwrap() {
            fields(&d, String::new(), &mut want);
        }
        let given: BTreeMap<String, Value> = [("app".into(), app), ("note".into(), note)].into();
        if let Ok(docs) = params::render(TEMPLATE, &given, &target(), "r1") {
            let mut got = BTreeSet::new();
            for d in &docs {
                fields(d, String::new(), &mut got);
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn parameter_checking_never_panics(
        kind in 0..5usize,
        pattern in prop::option::of(prop_oneof![Just("[a-z]+".to_string()), Just("(".to_string()), Just(".*".to_string())]),
        bounds in (prop::option::of(any::<i64>()), prop::option::of(any::<i64>()), prop::option::of(0u32..300)),
        required in any::<bool>(),
        value in prop::option::of(json_value()),
    ) {
        let type_ = [ParameterType::String, ParameterType::Integer, ParameterType::Boolean, ParameterType::Ip, ParameterType::Cidr][kind];
        let mut p = ParameterSpec::new("p", type_);
        (p.pattern, p.minimum, p.maximum, p.max_length, p.required) = (pattern, bounds.0, bounds.1, bounds.2, required);
        let given: BTreeMap<String, Value> = value.into_iter().map(|v| ("p".to_string(), v)).collect();
        let _ = params::validate(&[p], &given);
    }

    /// Two different stamps never share a signed message (so a signature never verifies for a
    /// different content), even with separators, quotes and newlines inside the fields.
    #[test]
    fn an_approval_signature_never_verifies_for_a_different_content(
        a in approval(), b in approval(),
        names in ("[a-z,\\n]{0,4}", "[a-z,\\n]{0,4}", "[a-z,\\n]{0,4}", "[a-z,\\n]{0,4}"),
    ) {
        let (ns_a, name_a, ns_b, name_b) = names;
        let key = signature::Key::new(b"k");
        let sig = key.sign(&signature::approval_message(&ns_a, &name_a, &a));
        let same = (ns_a == ns_b, name_a == name_b, a == b);
        if !(same.0 && same.1 && same.2) {
            prop_assert!(!key.verify(&signature::approval_message(&ns_b, &name_b, &b), &sig));
        }
    }

    /// An approval stands only on exactly the content it names: any other text — the same hash in
    /// capitals, with a space, a prefix, another hash — is refused; a deny needs none.
    #[test]
    fn an_approval_stands_only_on_the_exact_content_it_names(
        current in "[0-9a-f]{64}",
        seen in prop_oneof![
            "[0-9a-fA-F \n]{0,66}",
            "[0-9a-f]{64}",
        ],
        tweak in 0usize..4,
    ) {
        use socwarden_core::admission::approvals::seen_problem;
        let seen = match tweak {
            0 => seen,
            1 => current.to_uppercase(),
            2 => format!("{current} "),
            _ => current[..12].to_string(),
        };
        let refused = seen_problem(ApprovalDecision::Approve, Some(&seen), &current).is_some();
        prop_assert_eq!(refused, seen != current);
        prop_assert!(seen_problem(ApprovalDecision::Approve, None, &current).is_some());
        prop_assert!(seen_problem(ApprovalDecision::Deny, Some(&seen), &current).is_none());
    }

    #[test]
    fn a_request_signature_never_verifies_for_a_different_content(a in request(), b in request()) {
        let key = signature::Key::new(b"k");
        let sig = key.sign(&signature::request_message("ns", "r1", &a));
        if a != b {
            prop_assert!(!key.verify(&signature::request_message("ns", "r1", &b), &sig));
        }
    }

    #[test]
    fn audit_bodies_of_any_shape_are_read_or_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = audit::parse(&body, Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn audit_event_lists_of_any_content_are_read_or_refused(items in prop::collection::vec(json_value(), 0..6), kind in prop_oneof![Just("EventList".to_string()), "\\PC{0,8}"]) {
        let body = serde_json::to_vec(&json!({"kind": kind, "apiVersion": "audit.k8s.io/v1", "items": items})).unwrap();
        let _ = audit::parse(&body, Timestamp::UNIX_EPOCH);
        // And plausible events with hostile fields.
        let events: Vec<Value> = items.iter().map(|v| json!({
            "level": "Metadata", "stage": "ResponseComplete", "verb": v, "requestURI": v,
            "user": {"username": "system:serviceaccount:agents:warden-bot", "groups": [v]},
            "objectRef": {"resource": v, "namespace": v, "name": v},
            "responseStatus": {"code": v}, "stageTimestamp": v
        })).collect();
        let body = serde_json::to_vec(&json!({"kind": "EventList", "items": events})).unwrap();
        let _ = audit::parse(&body, Timestamp::UNIX_EPOCH);
    }
}

/// The one spelling of a credential id: `JTI=` and a lowercase hyphenated UUID.
fn canonical_id(s: &str) -> bool {
    let Some(u) = s.strip_prefix("JTI=") else { return false };
    u.len() == 36
        && u.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// Strings near a credential id: the real form, and the ways an id can be spelled wrong.
fn id_like() -> impl Strategy<Value = String> {
    let uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
    prop_oneof![
        uuid.prop_map(|u| format!("JTI={u}")),
        "(JTI|jti|Jti|X509SHA256)?=?[0-9a-fA-F -]{0,40}\\n?",
        "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
            .prop_map(|u| format!("JTI={u}")),
        (uuid, 0..36usize, "\\PC").prop_map(|(u, at, c)| {
            let mut u: Vec<char> = u.chars().collect();
            u[at] = c.chars().next().unwrap_or('x');
            format!("JTI={}", u.into_iter().collect::<String>())
        }),
        "\\PC{0,48}",
    ]
}

/// An `extra` of any shape, often with the credential-id key and values near an id.
fn extra() -> impl Strategy<Value = Value> {
    let key = || prop_oneof![Just(identity::CREDENTIAL_ID_KEY.to_string()), "[a-z./-]{1,12}"];
    let value = prop_oneof![
        prop::collection::vec(id_like().prop_map(Value::String), 0..3).prop_map(Value::Array),
        id_like().prop_map(Value::String),
        json_value(),
    ];
    prop_oneof![
        prop::collection::vec((key(), value), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        json_value()
    ]
}

/// What the id of `extra` is: exactly one canonical value under the key, else none.
fn expected_id(extra: &Value) -> Option<String> {
    match extra.get(identity::CREDENTIAL_ID_KEY)?.as_array()?.as_slice() {
        [Value::String(s)] if canonical_id(s) => Some(s.clone()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_credential_id_parses_only_in_its_one_spelling(s in id_like()) {
        match identity::CredentialId::parse(&s) {
            Some(id) => {
                prop_assert!(canonical_id(&s), "{s:?} parsed");
                prop_assert_eq!(id.to_string(), s, "written back as it was read");
            }
            None => prop_assert!(!canonical_id(&s), "{s:?} refused"),
        }
    }

    #[test]
    fn an_extra_of_any_shape_names_at_most_its_one_well_formed_id(extra in extra()) {
        let event = json!({"stage": "ResponseComplete", "verb": "delete",
            "user": {"username": "system:serviceaccount:agents:warden-bot", "extra": extra},
            "objectRef": {"resource": "pods", "namespace": "web", "name": "p"}, "responseStatus": {"code": 200}});
        let body = serde_json::to_vec(&json!({"kind": "EventList", "items": [event]})).unwrap();
        let calls = audit::parse(&body, Timestamp::UNIX_EPOCH).expect("an extra never makes the batch unreadable");
        prop_assert_eq!(calls.len(), 1);
        let got = calls[0].access.as_ref().and_then(|a| a.credential).map(|c| c.to_string());
        prop_assert_eq!(got, expected_id(&extra), "{}", extra);
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-b,\\n\"\\\\]{0,4}"
}

fn approval() -> impl Strategy<Value = ApprovalSpec> {
    (text(), text(), prop::collection::vec(text(), 0..3), any::<bool>(), text(), prop::option::of(text())).prop_map(
        |(bound, who, groups, approve, comment, seen)| ApprovalSpec {
            bound_to: bound,
            approver: who,
            approver_groups: groups,
            decision: if approve { ApprovalDecision::Approve } else { ApprovalDecision::Deny },
            comment,
            seen,
            ..Default::default()
        },
    )
}

fn request() -> impl Strategy<Value = ActionRequestSpec> {
    (text(), text(), text(), prop::collection::vec(text(), 0..3), text(), text()).prop_map(
        |(agent, action, requester, groups, nonce, justification)| ActionRequestSpec {
            agent,
            action,
            requester,
            requester_groups: groups,
            nonce,
            justification,
            ..Default::default()
        },
    )
}

/// Kubernetes' label selector semantics, written here from the API reference (not with core's
/// evaluator), over the applied object's `podSelector` as JSON.
fn reference_selects(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str()));
    let exprs = sel["matchExpressions"].as_array().cloned().unwrap_or_default();
    labels_ok
        && exprs.iter().all(|e| {
            let have = labels.get(e["key"].as_str().unwrap_or_default());
            let values: Vec<&str> =
                e["values"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            match e["operator"].as_str() {
                Some("In") => have.is_some_and(|v| values.contains(&v.as_str())),
                Some("NotIn") => have.is_none_or(|v| !values.contains(&v.as_str())),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            }
        })
}

/// Parameter values an adversary would try: selector syntax, separators, quotes, anything.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        "[a-z(),!= ]{0,20}",
        Just("kiosk),app notin (vault".to_string()),
        Just("kiosk),app in (kiosk".to_string()),
        Just("vault,tier".to_string()),
        Just("!app".to_string()),
        Just("x in (vault)".to_string()),
        Just("vault".to_string()),
        Just("kiosk".to_string()),
    ]
}

proptest! {
    /// Whatever the parameter holds, the pods the effect lists are exactly the pods the object
    /// that would be applied selects (Hardening III: the effect is computed from that object).
    #[test]
    fn the_effect_lists_exactly_the_pods_the_applied_object_selects(
        value in hostile_value(),
        op in prop::sample::select(vec!["In", "NotIn", "match"]),
        pods in prop::collection::vec((hostile_value(), prop::option::of(prop::sample::select(vec!["edge", "db"]))), 0..6),
    ) {
        use socwarden_api::{Execution, SocActionSpec};
        use socwarden_core::admission::{effect, kinds::Kinds};
        let selector = match op {
            "match" => "{matchLabels: {app: \"${v}\"}}".to_string(),
            op => format!("{{matchExpressions: [{{key: app, operator: {op}, values: [\"${{v}}\"]}}, {{key: tier, operator: NotIn, values: [edge]}}]}}"),
        };
        let manifest = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: fence}}\nspec:\n  podSelector: {selector}\n  policyTypes: [Ingress]\n"
        );
        let action = SocActionSpec {
            parameters: vec![ParameterSpec::new("v", ParameterType::String)],
            execution: Some(Execution { manifest: Some(manifest.clone()), http: None }),
            ..Default::default()
        };
        let spec = ActionRequestSpec {
            agent: "bot".into(),
            action: "fence".into(),
            parameters: [("v".to_string(), json!(value))].into(),
            target: Target { kind: "Pod".into(), name: "p".into(), namespace: Some("web".into()) },
            ..Default::default()
        };
        let pods: Vec<(String, BTreeMap<String, String>)> = pods
            .into_iter()
            .enumerate()
            .map(|(i, (app, tier))| {
                let mut l: BTreeMap<String, String> = [("app".to_string(), app)].into();
                if let Some(t) = tier { l.insert("tier".into(), t.into()); }
                (format!("pod-{i}"), l)
            })
            .collect();
        let plan = effect::plan(&action, &spec, "r1", &Kinds::builtin()).expect("renders");
        prop_assert_eq!(plan.selectors.len(), 1);
        let listed: BTreeSet<String> = effect::selected(&plan.selectors[0], &pods).into_iter().map(|o| o.name).collect();
        let applied = socwarden_core::execution::objects(&manifest, &spec, "r1", "uid").expect("renders");
        let sel = &applied[0]["spec"]["podSelector"];
        let want: BTreeSet<String> = pods.iter().filter(|(_, l)| reference_selects(sel, l)).map(|(n, _)| n.clone()).collect();
        prop_assert_eq!(listed, want, "value {:?}, selector {}", value, sel);
    }
}
