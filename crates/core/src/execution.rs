//! What an execution writes or sends, exactly: the objects a manifest execution applies and the
//! JSON body an HTTP execution posts. The executor runs these, and the approval console shows them
//! to the approver before the decision, so what is approved is what runs.

use crate::admission::params;
use crate::envelope::REQUEST_LABEL;
use serde_json::Value;
use socwarden_api::{ActionRequest, ActionRequestSpec, SocActionSpec};

/// Renders and checks the objects of a manifest execution: namespaced only, in the target's
/// namespace (which the gate has checked is in scope), labelled with the request's UID.
pub fn manifest_objects(template: &str, req: &ActionRequest) -> Result<Vec<Value>, String> {
    let name = req.metadata.name.clone().unwrap_or_default();
    let uid = req.metadata.uid.clone().unwrap_or_default();
    objects(template, &req.spec, &name, &uid)
}

/// The objects a manifest execution of the request `spec` named `name` (UID `uid`) applies: what
/// the executor applies and what the gate computes the request's effect from.
pub fn objects(template: &str, spec: &ActionRequestSpec, name: &str, uid: &str) -> Result<Vec<Value>, String> {
    let ns = spec.target.namespace.clone().ok_or_else(|| {
        "a manifest execution needs a target with a namespace (the objects are applied there)".to_string()
    })?;
    let mut docs = params::render(template, &spec.parameters, &spec.target, name)?;
    for d in &mut docs {
        let meta = d
            .get_mut("metadata")
            .and_then(|m| m.as_object_mut())
            .ok_or_else(|| "manifest object without metadata".to_string())?;
        match meta.get("namespace").and_then(|n| n.as_str()) {
            Some(n) if n != ns => return Err(format!("the manifest names namespace {n}, but the target is in {ns}")),
            _ => {}
        }
        meta.insert("namespace".into(), ns.clone().into());
        if meta.get("name").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
            return Err("manifest object without metadata.name".into());
        }
        let labels = meta.entry("labels").or_insert_with(|| serde_json::json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(REQUEST_LABEL.into(), uid.into());
        }
    }
    Ok(docs)
}

/// The JSON body of an HTTP execution (signed and posted by the executor).
pub fn http_body(req: &ActionRequest, action: &SocActionSpec, approvers: &[String]) -> Vec<u8> {
    let body = serde_json::json!({
        "request": {"namespace": req.metadata.namespace, "name": req.metadata.name, "uid": req.metadata.uid},
        "agent": req.spec.agent,
        "action": req.spec.action,
        "risk": action.risk,
        "parameters": req.spec.parameters,
        "target": req.spec.target,
        "justification": req.spec.justification,
        "approvers": approvers,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::Target;

    fn req(ns: Option<&str>) -> ActionRequest {
        let mut r = ActionRequest::new(
            "r1",
            ActionRequestSpec {
                agent: "bot".into(),
                action: "isolate".into(),
                parameters: [("pod".to_string(), serde_json::json!("web-1"))].into(),
                target: Target { kind: "Pod".into(), name: "web-1".into(), namespace: ns.map(String::from) },
                justification: String::new(),
                requester: String::new(),
                requester_groups: vec![],
                nonce: String::new(),
                signature: String::new(),
            },
        );
        r.metadata.uid = Some("uid-1".into());
        r
    }

    const TPL: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"isolate-${pod}\"}\nspec: {podSelector: {matchLabels: {app: \"${pod}\"}}, policyTypes: [Ingress]}\n";

    #[test]
    fn objects_land_in_the_target_namespace_labelled_with_the_request() {
        let o = manifest_objects(TPL, &req(Some("web"))).unwrap();
        assert_eq!(o[0]["metadata"]["namespace"], "web");
        assert_eq!(o[0]["metadata"]["name"], "isolate-web-1");
        assert_eq!(o[0]["metadata"]["labels"][REQUEST_LABEL], "uid-1");
        assert!(manifest_objects(TPL, &req(None)).is_err());
        let elsewhere =
            TPL.replace("metadata: {name: \"isolate-${pod}\"}", "metadata: {name: x, namespace: kube-system}");
        assert!(manifest_objects(&elsewhere, &req(Some("web"))).unwrap_err().contains("kube-system"));
    }

    #[test]
    fn the_http_body_names_the_request_and_its_approvers() {
        let action: SocActionSpec = serde_json::from_value(serde_json::json!({"risk": "high"})).unwrap();
        let body: Value = serde_json::from_slice(&http_body(&req(Some("web")), &action, &["lead-a".into()])).unwrap();
        assert_eq!(body["request"]["uid"], "uid-1");
        assert_eq!(body["parameters"]["pod"], "web-1");
        assert_eq!(body["approvers"], serde_json::json!(["lead-a"]));
        assert_eq!(body["risk"], "high");
    }

    proptest::proptest! {
        /// Whatever the parameters hold (names of other namespaces, YAML, JSON), every object a
        /// manifest execution writes lands in the target's namespace, or nothing is written.
        #[test]
        fn a_rendered_object_never_leaves_the_target_namespace(
            pod in "\\PC{0,24}|kube-system|default|\\{namespace: kube-system\\}|x\nnamespace: kube-system",
            ns in "[a-z]{1,8}",
        ) {
            let tpl = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"cm-${pod}\", namespace: \"${target.namespace}\"}\ndata: {pod: \"${pod}\", ns: \"${pod}\"}\n";
            let mut r = req(Some(&ns));
            r.spec.parameters.insert("pod".into(), serde_json::json!(pod));
            for template in [TPL, tpl] {
                if let Ok(objs) = manifest_objects(template, &r) {
                    for o in objs {
                        proptest::prop_assert_eq!(o["metadata"]["namespace"].as_str(), Some(ns.as_str()));
                    }
                }
            }
        }
    }
}
