//! Renders the generated parts of `docs/reference/` from the code (see `socwarden_core::reference`)
//! and checks them: the CRD fields from the schemas the types generate; the metrics come from the
//! registry (`Metrics::catalog`), the flags from clap (`socwarden_core::reference::flags`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use socwarden_core::reference::table;

/// Every field of a CRD's served schema, one row each: its path from the object's root, its type
/// (with its values, for an enumeration), whether it is required, and its description.
pub fn crd_fields(crd: &CustomResourceDefinition) -> String {
    let mut rows = Vec::new();
    let version = crd.spec.versions.iter().find(|v| v.storage).or(crd.spec.versions.first());
    if let Some(root) = version.and_then(|v| v.schema.as_ref()).and_then(|s| s.open_api_v3_schema.as_ref()) {
        for (name, prop) in root.properties.iter().flatten() {
            if matches!(name.as_str(), "spec" | "status") {
                walk(name, prop, root.required.iter().flatten().any(|r| r == name), &mut rows);
            }
        }
    }
    table(&["field", "type", "required", "description"], &rows)
}

fn walk(path: &str, p: &JSONSchemaProps, required: bool, rows: &mut Vec<Vec<String>>) {
    let items = match &p.items {
        Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) => {
            Some(s.as_ref())
        }
        _ => None,
    };
    let kind = |p: &JSONSchemaProps| {
        let base = p.type_.clone().unwrap_or_else(|| "any".into());
        match p.enum_.as_ref().filter(|e| !e.is_empty()) {
            Some(values) => {
                let v: Vec<String> = values.iter().map(|v| format!("`{}`", v.0.as_str().unwrap_or_default())).collect();
                format!("{base}: {}", v.join(", "))
            }
            None => base,
        }
    };
    let ty = match items {
        Some(i) => format!("array of {}", kind(i)),
        None if p.additional_properties.is_some() => "map".to_string(),
        None => kind(p),
    };
    let description = p.description.clone().unwrap_or_default();
    rows.push(vec![format!("`{path}`"), ty, if required { "yes".into() } else { String::new() }, description]);
    let (fields, required_of, prefix) = match items {
        Some(i) => (i.properties.as_ref(), i.required.as_ref(), format!("{path}[]")),
        None => (p.properties.as_ref(), p.required.as_ref(), path.to_string()),
    };
    for (name, child) in fields.into_iter().flatten() {
        let req = required_of.is_some_and(|r| r.contains(name));
        walk(&format!("{prefix}.{name}"), child, req, rows);
    }
}

#[cfg(test)]
mod tests {
    fn check(page: &str, name: &str, generated: &str) {
        socwarden_core::reference::check(env!("CARGO_MANIFEST_DIR"), page, name, generated);
    }

    use kube::CustomResourceExt;
    use socwarden_api::{ActionRequest, Approval, AutonomyPolicy, DriftReport, Notifier, SocAction, SocAgent};

    #[test]
    fn the_crd_reference_is_generated_from_the_schemas() {
        let kinds = [
            ("SocAgent", SocAgent::crd()),
            ("SocAction", SocAction::crd()),
            ("AutonomyPolicy", AutonomyPolicy::crd()),
            ("ActionRequest", ActionRequest::crd()),
            ("Approval", Approval::crd()),
            ("DriftReport", DriftReport::crd()),
            ("Notifier", Notifier::crd()),
        ];
        let mut page = String::new();
        for (kind, crd) in &kinds {
            let scope = &crd.spec.scope;
            let group = &crd.spec.group;
            page.push_str(&format!("\n## {kind}\n\n`{group}/v1alpha1`, {scope}.\n\n{}", super::crd_fields(crd)));
        }
        check("docs/reference/crds.md", "crds", &page);
    }

    #[test]
    fn the_metrics_reference_is_generated_from_the_registry() {
        let metrics = crate::metrics::Metrics::new();
        let mut catalog: Vec<_> = metrics.catalog.iter().collect();
        catalog.sort_by(|a, b| a.name.cmp(&b.name));
        let rows: Vec<Vec<String>> = catalog
            .iter()
            .map(|s| vec![format!("`socwarden_{}`", s.name), s.kind.to_string(), s.labels.join(", "), s.help.clone()])
            .collect();
        check(
            "docs/reference/metrics.md",
            "metrics",
            &socwarden_core::reference::table(&["name", "type", "labels", "help"], &rows),
        );
    }

    #[test]
    fn a_field_path_names_its_type_and_whether_it_is_required() {
        let page = super::crd_fields(&SocAgent::crd());
        assert!(page.contains("| `spec.tier` | string: "), "{page}");
        assert!(page.lines().any(|l| l.starts_with("| `spec.scope` |")), "{page}");
        assert!(page.lines().any(|l| l.starts_with("| `status.conditions[].type` |")), "{page}");
    }
}
