//! The Helm chart, rendered by `target/render` (Go's text/template and sprig, see e2e/render) with
//! every documented combination of values (`charts/soc-warden/ci/*.yaml`):
//! accepted by the API server (`kubectl apply --dry-run=server`), least-privilege RBAC, a locked-down
//! pod, and the same CRDs and alert rules as the repository's. That the chart's RBAC is *enough* is
//! proven by the whole end-to-end suite: its operator runs as the chart's ServiceAccount.

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use soc_warden_e2e::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn chart() -> PathBuf {
    repo().join("charts/soc-warden")
}

/// The defaults with the one choice the chart requires (who may call the webhook): the
/// recommended one, the API server's webhook client CA.
fn safe() -> PathBuf {
    chart().join("ci/api-server-client-ca.yaml")
}

/// Each `ci/*.yaml` (the defaults alone refuse to render: see
/// `the_default_chart_refuses_a_webhook_that_answers_any_caller`).
fn combinations() -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut out = vec![];
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(chart().join("ci"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for f in files {
        out.push((format!("ci/{}", f.file_name().unwrap().to_string_lossy()), vec![f]));
    }
    assert!(out.len() >= 5, "the documented combinations are in charts/soc-warden/ci");
    Ok(out)
}

fn render(values: &[PathBuf]) -> Result<Vec<Value>> {
    yaml_docs(&render_chart(values, true)?)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().filter_map(|d| d["kind"].as_str().map(String::from)).collect()
}

/// Minimal stand-ins for the Prometheus Operator's CRDs, so the ServiceMonitor and PrometheusRule
/// the chart renders can be dry-run on a cluster without that operator.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule, listKind: PrometheusRuleList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

fn kubectl_out(args: &[&str], stdin: Option<&str>) -> Result<(bool, String)> {
    let mut child = Command::new(kubectl())
        .args(args)
        .env("KUBECONFIG", admin_kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[tokio::test]
async fn every_documented_combination_renders_and_the_api_server_accepts_it() -> Result<()> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    ensure_namespace(&admin, OPERATOR_NAMESPACE).await?;
    apply_yaml(&admin, MONITORING_CRDS).await?;
    // Like `helm install`, render for the API versions the cluster serves.
    let (ok, versions) = kubectl_out(&["api-versions"], None)?;
    assert!(ok, "{versions}");
    let versions = versions.split_whitespace().collect::<Vec<_>>().join(",");

    for (name, values) in combinations()? {
        let mut args = vec!["-api-versions".to_string(), versions.clone()];
        for v in &values {
            args.extend(["-f".to_string(), v.display().to_string()]);
        }
        let out = Command::new(renderer())
            .args(&args)
            .args(["-name", "soc-warden", "-namespace", OPERATOR_NAMESPACE])
            .arg(chart())
            .output()?;
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let yaml = String::from_utf8(out.stdout)?;
        let docs = yaml_docs(&yaml)?;
        // Retried for a few seconds: the monitoring CRDs may take a moment to be served.
        let mut attempt = 0;
        let text = loop {
            let (ok, text) = kubectl_out(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml))?;
            attempt += 1;
            match (ok, attempt) {
                (true, _) => break text,
                (false, 10) => bail!("{name}: the API server refused the rendered chart:\n{text}"),
                (false, _) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        };
        assert_eq!(text.matches("(server dry run)").count(), docs.len(), "{name}: every object accepted:\n{text}");
        eprintln!("{name}: {} objects accepted by the API server ({:?})", docs.len(), kinds(&docs));
    }
    Ok(())
}

#[test]
fn the_value_combinations_change_what_they_say() -> Result<()> {
    let defaults = render(&[safe()])?;
    let want: BTreeSet<String> = [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "AutonomyPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let with_crds = yaml_docs(&render_chart(&[safe()], false)?)?;
    assert_eq!(kinds(&with_crds), want);
    assert_eq!(of_kind(&with_crds, "CustomResourceDefinition").len(), soc_warden::crdgen::manifests().len());
    let d = one(&defaults, "Deployment");
    assert_eq!(d["spec"]["replicas"], 2, "two replicas by default");
    let args = strings(&d["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert_eq!(one(&defaults, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    // The webhook Service the operator registers is the one the chart creates.
    let svc = one(&defaults, "Service");
    assert!(args.contains(&format!(
        "--webhook-service={OPERATOR_NAMESPACE}/{}:443",
        svc["metadata"]["name"].as_str().unwrap()
    )));
    assert!(svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 443 && p["targetPort"] == "webhook"));
    assert_eq!(one(&defaults, "AutonomyPolicy")["spec"]["killSwitch"], false);
    // The MCP gateway: served by every replica, exposed by the Service, open in the NetworkPolicy,
    // and the operator may review the agents' tokens for it.
    assert!(args.contains(&"--mcp-addr=0.0.0.0:9444".to_string()), "{args:?}");
    assert!(svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 9444 && p["targetPort"] == "mcp"));
    let np = &one(&defaults, "NetworkPolicy")["spec"]["ingress"];
    assert_eq!(np[2]["ports"][0]["port"], 9444, "{np}");
    let cr = of_kind(&defaults, "ClusterRole");
    let held: Vec<Value> = cr.iter().flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default()).collect();
    assert!(holds(&held, "authentication.k8s.io", "tokenreviews", "create", &[]), "TokenReview for the gateway");
    // Drift scores are on /metrics: by default only a labelled namespace may scrape it, never an
    // agent's.
    let scrapers = &one(&defaults, "NetworkPolicy")["spec"]["ingress"][1]["from"][0]["namespaceSelector"];
    assert_eq!(scrapers["matchLabels"]["socwarden.io/scrape-metrics"], "true", "{scrapers}");

    let dir = chart().join("ci");
    let monitoring = render(&[dir.join("monitoring.yaml")])?;
    assert_eq!(one(&monitoring, "ServiceMonitor")["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(one(&monitoring, "PrometheusRule")["metadata"]["labels"]["release"], "prometheus");

    let audit = render(&[dir.join("audit-and-own-cert.yaml")])?;
    let pod = &one(&audit, "Deployment")["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    assert!(args.contains(&"--audit-token-file=/etc/soc-warden/audit/token".to_string()), "{args:?}");
    assert!(args.contains(&"--webhook-cert-dir=/etc/soc-warden/webhook".to_string()), "{args:?}");
    assert!(args.contains(&"--unaudited-namespaces=monitoring,logging".to_string()), "{args:?}");
    assert!(args.contains(&"--webhook-client-ca=/etc/soc-warden/webhook-client/ca.crt".to_string()), "{args:?}");
    let maps: Vec<&str> =
        pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["configMap"]["name"].as_str()).collect();
    assert!(maps.contains(&"apiserver-webhook-client-ca"), "{maps:?}");
    let from = &one(&audit, "NetworkPolicy")["spec"]["ingress"][0]["from"];
    assert_eq!(from[0]["ipBlock"]["cidr"], "10.0.0.1/32", "{from}");
    let secrets: Vec<&str> =
        pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["secret"]["secretName"].as_str()).collect();
    assert_eq!(secrets, vec!["soc-warden-webhook-cert", "soc-warden-audit-token"]);
    assert!(pod["containers"][0]["image"].as_str().unwrap().ends_with(":0.1.0-rc1"));
    assert!(one(&audit, "Service")["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 8443));

    let small = render(&[dir.join("single-replica.yaml")])?;
    for gone in ["PodDisruptionBudget", "NetworkPolicy", "AutonomyPolicy", "Role", "RoleBinding"] {
        assert!(of_kind(&small, gone).is_empty(), "single-replica renders no {gone}");
    }
    let d = one(&small, "Deployment");
    assert_eq!(d["spec"]["replicas"], 1);
    let args = strings(&d["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(!args.iter().any(|a| a.starts_with("--leader-elect") || a.starts_with("--decision-log")), "{args:?}");

    // A value the chart needs gets a message that says which.
    let broken = std::env::temp_dir().join(format!("soc-warden-values-{}.yaml", std::process::id()));
    std::fs::write(&broken, "audit: {enabled: true, tokenSecret: \"\"}\n")?;
    let err = render_chart(&[safe(), broken.clone()], true).unwrap_err().to_string();
    std::fs::remove_file(&broken)?;
    assert!(err.contains("audit.tokenSecret is required when audit.enabled"), "{err}");
    Ok(())
}

/// Attack: the default chart's webhook answers any caller (no client CA, `webhookFrom` any), and
/// it signs stamps. The defaults refuse to render, naming the two ways and the opt-out; each way
/// renders, and does what it says.
#[test]
fn the_default_chart_refuses_a_webhook_that_answers_any_caller() -> Result<()> {
    let err = render_chart(&[], true).unwrap_err().to_string();
    for named in [
        "the webhook would answer any caller",
        "webhook.clientCAConfigMap",
        "networkPolicy.webhookFrom",
        "webhook.insecureAnyCallerGetsSignedStamps=true",
    ] {
        assert!(err.contains(named), "the refusal names {named}: {err}");
    }
    let values = |name: &str, text: &str| -> Result<PathBuf> {
        let f = std::env::temp_dir().join(format!("soc-warden-{name}-{}.yaml", std::process::id()));
        std::fs::write(&f, text)?;
        Ok(f)
    };
    let args = |docs: &[Value]| strings(&one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
    let client_ca = "--webhook-client-ca=/etc/soc-warden/webhook-client/ca.crt".to_string();

    // By certificate: only the API server's client certificate is answered.
    let by_ca = render(&[safe()])?;
    assert!(args(&by_ca).contains(&client_ca), "{:?}", args(&by_ca));
    // By network: only the listed peers reach the webhook's port.
    let net = values("by-network", "networkPolicy: {webhookFrom: [{ipBlock: {cidr: 10.0.0.1/32}}]}\n")?;
    let by_network = render(std::slice::from_ref(&net))?;
    let webhook_rule = &one(&by_network, "NetworkPolicy")["spec"]["ingress"][0];
    assert_eq!(webhook_rule["ports"][0]["port"], 9443, "{webhook_rule}");
    assert_eq!(webhook_rule["from"][0]["ipBlock"]["cidr"], "10.0.0.1/32", "{webhook_rule}");
    assert!(!args(&by_network).contains(&client_ca));
    // Peers without a NetworkPolicy guard nothing: still refused.
    let off =
        values("network-off", "networkPolicy: {enabled: false, webhookFrom: [{ipBlock: {cidr: 10.0.0.1/32}}]}\n")?;
    let err = render_chart(std::slice::from_ref(&off), true).unwrap_err().to_string();
    assert!(err.contains("the webhook would answer any caller"), "{err}");
    // The opt-out, by its name: renders, with neither guard.
    let open = values("opt-out", "webhook: {insecureAnyCallerGetsSignedStamps: true}\n")?;
    let opted = render(std::slice::from_ref(&open))?;
    assert!(!args(&opted).contains(&client_ca));
    assert!(one(&opted, "NetworkPolicy")["spec"]["ingress"][0].get("from").is_none(), "any source, as asked");
    for f in [net, off, open] {
        std::fs::remove_file(f)?;
    }
    Ok(())
}

/// Whether `held` grants `verb` on group/resource (for every one of `names`, or unrestricted).
fn holds(held: &[Value], group: &str, resource: &str, verb: &str, names: &[String]) -> bool {
    held.iter().any(|r| {
        let rn = strings(&r["resourceNames"]);
        strings(&r["apiGroups"]).iter().any(|g| g == group)
            && strings(&r["resources"]).iter().any(|x| x == resource)
            && strings(&r["verbs"]).iter().any(|v| v == verb)
            && (rn.is_empty() || (!names.is_empty() && names.iter().all(|n| rn.contains(n))))
    })
}

fn missing(held: &[Value], wanted: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for w in wanted {
        let names = strings(&w["resourceNames"]);
        for g in strings(&w["apiGroups"]) {
            for r in strings(&w["resources"]) {
                for v in strings(&w["verbs"]) {
                    if !holds(held, &g, &r, &v, &names) {
                        out.push(format!("{v} {g}/{r} {names:?}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn rbac_is_least_privilege_in_every_combination() -> Result<()> {
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml"))?)?;
    // The chart's default delegable rules are the operator's built-in ones.
    let from_chart: Vec<socwarden_core::agent::rbac::Rule> = serde_json::from_value(values["delegable"].clone())?;
    let from_chart: BTreeSet<_> = from_chart.into_iter().map(socwarden_core::agent::rbac::Rule::normalized).collect();
    let builtin: BTreeSet<_> =
        socwarden_core::agent::rbac::parse_delegable(socwarden_core::agent::rbac::DEFAULT_DELEGABLE)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .collect();
    assert_eq!(from_chart, builtin, "values.yaml delegable and crates/core/src/agent/delegable.yaml differ");

    for (name, files) in combinations()? {
        let docs = render(&files)?;
        let sa = one(&docs, "ServiceAccount");
        let sa_name = sa["metadata"]["name"].as_str().unwrap();
        let own_roles: BTreeSet<(String, String)> = of_kind(&docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(&docs, "Role"))
            .map(|r| (r["kind"].as_str().unwrap().to_string(), r["metadata"]["name"].as_str().unwrap().to_string()))
            .collect();
        for role in of_kind(&docs, "ClusterRole").into_iter().chain(of_kind(&docs, "Role")) {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] {
                    let vals = strings(&rule[field]);
                    if vals.iter().any(|v| v.contains('*')) {
                        bail!("{name}: wildcard in {field} of {}: {rule}", role["metadata"]["name"]);
                    }
                }
                let verbs = strings(&rule["verbs"]);
                for bad in ["escalate", "bind", "impersonate"] {
                    assert!(!verbs.iter().any(|v| v == bad), "{name}: {bad} in {rule}");
                }
                // It never creates cluster-wide RBAC (nor could it use it to widen itself).
                let resources = strings(&rule["resources"]);
                assert!(!resources.iter().any(|r| r == "clusterroles" || r == "clusterrolebindings"), "{name}: {rule}");
            }
        }
        for b in of_kind(&docs, "ClusterRoleBinding").into_iter().chain(of_kind(&docs, "RoleBinding")) {
            let role_ref = (
                b["roleRef"]["kind"].as_str().unwrap().to_string(),
                b["roleRef"]["name"].as_str().unwrap().to_string(),
            );
            assert!(
                own_roles.contains(&role_ref),
                "{name}: binds {role_ref:?}, not a role of the chart (no cluster-admin)"
            );
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": OPERATOR_NAMESPACE}]),
                "{name}: bindings are for the operator alone"
            );
        }
        // The operator may only grant what it holds: the agents' base rules and the delegable list.
        let own =
            of_kind(&docs, "ClusterRole").into_iter().filter(|r| r["metadata"]["name"] == sa_name).collect::<Vec<_>>();
        assert_eq!(own.len(), 1, "{name}: the operator's ClusterRole is named as its ServiceAccount");
        let held = own[0]["rules"].as_array().unwrap().clone();
        let delegable: Value =
            serde_yaml::from_str(one(&docs, "ConfigMap")["data"]["delegable.yaml"].as_str().unwrap())?;
        let delegable = delegable.as_array().unwrap().clone();
        assert_eq!(missing(&held, &delegable), Vec::<String>::new(), "{name}: the ClusterRole lacks delegable rules");
        let base: Vec<Value> = socwarden_core::agent::rbac::base_rules("an-agent")
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        assert_eq!(missing(&held, &base), Vec::<String>::new(), "{name}: the ClusterRole lacks the agents' base rules");
        if name == "ci/narrow-delegation.yaml" {
            let del = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]);
            assert_eq!(
                missing(&held, del.as_array().unwrap()).len(),
                1,
                "{name}: the ClusterRole shrinks with the list"
            );
        }
        eprintln!("{name}: {} ClusterRole rules, no wildcard, escalate, bind or impersonate", held.len());
    }
    Ok(())
}

#[test]
fn the_operator_pod_is_non_root_read_only_and_without_capabilities() -> Result<()> {
    for (name, files) in combinations()? {
        let docs = render(&files)?;
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0, "{name}");
        assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null(), "{name}");
        assert!(pod["volumes"].as_array().unwrap().iter().all(|v| v["hostPath"].is_null()), "{name}");
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}), "{name}");
            assert!(sc["privileged"].is_null() || sc["privileged"] == false, "{name}");
            assert!(!c["resources"]["limits"]["memory"].is_null(), "{name}: a memory limit");
        }
    }
    Ok(())
}

#[test]
fn the_chart_carries_the_generated_crds_and_the_shipped_alert_rules() -> Result<()> {
    let names = |dir: PathBuf| -> Result<BTreeSet<String>> {
        Ok(std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
            .collect::<Result<_, _>>()?)
    };
    let (ours, charts) = (repo().join("crds"), chart().join("crds"));
    assert_eq!(names(ours.clone())?, names(charts.clone())?);
    for f in names(ours.clone())? {
        assert_eq!(
            std::fs::read_to_string(ours.join(&f))?,
            std::fs::read_to_string(charts.join(&f))?,
            "charts/soc-warden/crds/{f} differs from crds/{f}: cp crds/*.yaml charts/soc-warden/crds/"
        );
    }
    let docs = render(&[chart().join("ci/monitoring.yaml")])?;
    let rule = one(&docs, "PrometheusRule");
    let file: Value = serde_yaml::from_str(&std::fs::read_to_string(repo().join("alerts/soc-warden.rules.yaml"))?)?;
    assert_eq!(rule["spec"], file, "the PrometheusRule and alerts/soc-warden.rules.yaml differ");
    Ok(())
}

#[test]
fn the_chart_ships_the_peoples_roles_of_the_examples() -> Result<()> {
    let docs = render(&[safe()])?;
    let named = |d: &&Value| d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("socwarden-"));
    let chart: Vec<&Value> = of_kind(&docs, "ClusterRole").into_iter().filter(named).collect();
    let example: Vec<Value> =
        serde_yaml::Deserializer::from_str(&std::fs::read_to_string(repo().join("examples/05-people.yaml"))?)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()?;
    let example: Vec<&Value> = example.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    assert_eq!(chart.len(), 3, "approver, responder, editor");
    assert_eq!(chart, example, "charts/soc-warden/templates/people-roles.yaml and examples/05-people.yaml differ");
    let responder = chart.iter().find(|r| r["metadata"]["name"] == "socwarden-responder").unwrap();
    assert_eq!(responder["rules"][0]["verbs"], json!(["patch", "pause"]), "responders pause, and only that");
    Ok(())
}

#[test]
fn the_dockerfile_and_the_nodes_buildah_images_agree_with_the_chart() -> Result<()> {
    // e2e/node.sh builds with buildah what the Dockerfile builds with docker: the same user (the
    // chart's runAsUser) and entrypoints.
    let docker = std::fs::read_to_string(repo().join("Dockerfile"))?;
    let node = std::fs::read_to_string(repo().join("e2e/node.sh"))?;
    let docs = render(&[safe()])?;
    let user = one(&docs, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_u64().unwrap();
    assert_eq!(docker.matches(&format!("USER {user}:{user}")).count(), 2, "both Dockerfile images run as {user}");
    assert_eq!(node.matches(&format!("--user {user}:{user}")).count(), 2, "both buildah images run as {user}");
    for bin in ["warden", "reference-agent"] {
        assert!(docker.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")), "Dockerfile: {bin}");
        assert!(node.contains(&format!("--entrypoint '[\"/usr/local/bin/{bin}\"]'")), "e2e/node.sh: {bin}");
        assert!(docker.contains(&format!("--bin {bin}")) && node.contains(&format!("--bin {bin}")), "{bin} built");
    }
    Ok(())
}
