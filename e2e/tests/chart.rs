//! The Helm chart, checked by Helm itself (v4, built from its Go module by `e2e/cluster helm-path`):
//! `helm lint --strict`, the values schema refusing mistyped values, and `helm template` with every
//! documented combination of values (`charts/soc-warden/ci/*.yaml`): accepted by the API server
//! (`kubectl apply --dry-run=server`), least-privilege RBAC, a locked-down pod, a `helm test` pod
//! that probes the webhook and /metrics, and the same CRDs and alert rules as the repository's.
//! That the chart's RBAC is *enough* is proven by the whole end-to-end suite: its operator runs as
//! the chart's ServiceAccount. Installing, upgrading, testing and uninstalling it with Helm are the
//! node's tests (`e2e/tests/node.rs`).

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

/// The chart's Service (the audit sink's NodePort Service, when `audit.nodePort` renders one, is
/// the other).
fn main_service(docs: &[Value]) -> &Value {
    let found: Vec<&Value> = of_kind(docs, "Service").into_iter().filter(|s| s["spec"]["type"] != "NodePort").collect();
    assert_eq!(found.len(), 1, "exactly one Service besides the audit node port");
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
    // Like `helm install`, render for the version the API server reports.
    let (ok, version) = kubectl_out(&["version", "-o", "json"], None)?;
    assert!(ok, "{version}");
    let version: Value = serde_json::from_str(&version)?;
    let version =
        version["serverVersion"]["gitVersion"].as_str().unwrap_or_default().trim_start_matches('v').to_string();
    assert!(!version.is_empty(), "the API server reports its version");

    for (name, values) in combinations()? {
        let yaml = render_chart_for(&values, false, &version).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
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
        eprintln!("{name}: {} objects accepted by the API server {version} ({:?})", docs.len(), kinds(&docs));
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
        // The `helm test` pod (a hook: `helm template` shows it, `helm install` does not create it).
        "Pod",
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
    // A deleted pod serves on while the API server learns it left (on the node: the upgrade test).
    let lifecycle = &d["spec"]["template"]["spec"]["containers"][0]["lifecycle"];
    assert_eq!(lifecycle["preStop"], json!({"sleep": {"seconds": 5}}), "{lifecycle}");
    assert_eq!(one(&defaults, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    // The webhook Service the operator registers is the one the chart creates.
    let svc = main_service(&defaults);
    assert_eq!(of_kind(&defaults, "Service").len(), 1, "no audit node port by default");
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
    // The peer endpoint (issue 30): every replica serves it at its pod IP, and only the
    // operator's own pods may reach it.
    assert!(args.contains(&"--peer-addr=0.0.0.0:8444".to_string()), "{args:?}");
    assert!(args.contains(&"--peer-url=https://$(POD_IP):8444".to_string()), "{args:?}");
    let env = &one(&defaults, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_IP" && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"),
        "{env}"
    );
    assert_eq!(np[3]["ports"][0]["port"], 8444, "{np}");
    let from = np[3]["from"].as_array().unwrap();
    assert_eq!(from.len(), 1, "{np}");
    assert_eq!(from[0]["podSelector"]["matchLabels"], one(&defaults, "Deployment")["spec"]["selector"]["matchLabels"]);
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
    assert!(main_service(&audit)["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 8443));
    // audit.nodePort: the sink alone on every node's port, selecting the operator's pods.
    let node_port: Vec<&Value> =
        of_kind(&audit, "Service").into_iter().filter(|s| s["spec"]["type"] == "NodePort").collect();
    assert_eq!(node_port.len(), 1, "one audit NodePort Service");
    let ports = node_port[0]["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "the audit port alone: {ports:?}");
    assert_eq!((&ports[0]["port"], &ports[0]["nodePort"]), (&json!(8443), &json!(30443)));
    assert_eq!(node_port[0]["spec"]["selector"], main_service(&audit)["spec"]["selector"]);

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

/// A values file for one test, removed when dropped.
struct ValuesFile(PathBuf);

impl ValuesFile {
    fn new(name: &str, text: &str) -> Result<Self> {
        let f = std::env::temp_dir().join(format!("soc-warden-{name}-{}.yaml", std::process::id()));
        std::fs::write(&f, text)?;
        Ok(Self(f))
    }
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `helm lint --strict` (a warning fails it) on the chart for the tested Kubernetes version.
fn lint(values: &[PathBuf]) -> Result<(bool, String)> {
    let (chart, kube) = (chart().display().to_string(), tested_kube_version()?);
    let files: Vec<String> = values.iter().map(|v| v.display().to_string()).collect();
    let mut args = vec!["lint", "--strict", chart.as_str(), "--kube-version", kube.as_str()];
    for f in &files {
        args.extend(["--values", f.as_str()]);
    }
    helm_with(None, &args)
}

#[test]
fn helm_lint_strict_passes_on_the_chart_and_every_documented_combination() -> Result<()> {
    // The defaults lint clean too: Helm's lint does not run `fail`, so the defaults' refusal is
    // checked by `helm template` (the_default_chart_refuses_a_webhook_that_answers_any_caller).
    let mut runs = vec![("the defaults".to_string(), vec![])];
    runs.extend(combinations()?);
    for (name, values) in runs {
        let (ok, out) = lint(&values)?;
        assert!(ok && out.contains("1 chart(s) linted, 0 chart(s) failed"), "{name}: {out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "{name}: {out}");
        eprintln!("{name}: helm lint --strict clean");
    }
    Ok(())
}

/// Attack: a mistyped value kept its default without a word (`networkPolicy.enable: false` left
/// the policy on; `webhook.clientCaConfigMap` left the webhook without its client CA). The values
/// schema refuses unknown keys, wrong types, values outside their enums, patterns and bounds, and
/// Helm says where and why, in `helm template` (as in `helm install`) and `helm lint` alike.
#[test]
fn the_values_schema_refuses_a_mistyped_value_and_says_where() -> Result<()> {
    let cases = [
        (
            "a typo'd key",
            "webhook: {clientCaConfigMap: apiserver-webhook-client-ca}\n",
            "at '/webhook': additional properties 'clientCaConfigMap' not allowed",
        ),
        (
            "a typo'd switch",
            "networkPolicy: {enable: false}\n",
            "at '/networkPolicy': additional properties 'enable' not allowed",
        ),
        ("a top-level typo", "replicaCont: 3\n", "at '': additional properties 'replicaCont' not allowed"),
        ("a wrong type", "replicaCount: two\n", "at '/replicaCount': got string, want integer"),
        ("a quoted boolean", "webhook: {insecureAnyCallerGetsSignedStamps: \"yes\"}\n", "got string, want boolean"),
        ("a bound", "replicaCount: 0\n", "at '/replicaCount': minimum: got 0, want 1"),
        ("an enum", "logFormat: yaml\n", "at '/logFormat': value must be one of 'json', 'text'"),
        (
            "a ceiling no tier has",
            "defaultPolicy: {autonomy: {autonomous: critical}}\n",
            "at '/defaultPolicy/autonomy/autonomous': value must be one of 'none', 'low', 'medium', 'high'",
        ),
        (
            "a duration the operator cannot read",
            "leaderElection: {leaseDuration: 15 seconds}\n",
            "at '/leaderElection/leaseDuration': '15 seconds' does not match pattern",
        ),
        (
            "a wildcard to delegate",
            "delegable: [{apiGroups: [''], resources: ['*'], verbs: [get]}]\n",
            "at '/delegable/0/resources/0': '*' does not match pattern",
        ),
        (
            "a quantity",
            "resources: {limits: {memory: 256MB}}\n",
            "at '/resources/limits/memory': '256MB' does not match pattern",
        ),
    ];
    for (case, text, message) in cases {
        let bad = ValuesFile::new("schema", text)?;
        let values = [safe(), bad.0.clone()];
        let err = render_chart(&values, true).unwrap_err().to_string();
        assert!(err.contains("values don't meet the specifications of the schema"), "{case}: {err}");
        assert!(err.contains(message), "{case}: helm template says {message:?}: {err}");
        let (ok, out) = lint(&values)?;
        assert!(!ok && out.contains(message), "{case}: helm lint says {message:?}: {out}");
    }
    Ok(())
}

/// The schema's node a `$ref` (or the first part of an `allOf`) points to.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(r) = node["$ref"].as_str() {
        let name = r.strip_prefix("#/definitions/").expect("local refs only");
        return resolve(root, &root["definitions"][name]);
    }
    match node["allOf"].as_array() {
        Some(parts) => resolve(root, &parts[0]),
        None => node,
    }
}

/// The paths of `value` the schema does not describe with a type or an enum.
fn undescribed(root: &Value, node: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let node = resolve(root, node);
    if ["type", "enum", "oneOf"].iter().all(|k| node.get(k).is_none()) {
        out.push(path.to_string());
        return;
    }
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                let sub =
                    node["properties"].get(k).or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
                match sub {
                    Some(sub) => undescribed(root, sub, v, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                match node.get("items") {
                    Some(sub) => undescribed(root, sub, v, &format!("{path}[{i}]"), out),
                    None => out.push(format!("{path}[{i}]")),
                }
            }
        }
        _ => {}
    }
}

#[test]
fn the_values_schema_describes_every_value_and_agrees_with_the_crds() -> Result<()> {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json"))?)?;
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml"))?)?;
    let mut missing = vec![];
    undescribed(&schema, &schema, &values, "", &mut missing);
    for (_, files) in combinations()? {
        for f in files {
            let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&f)?)?;
            undescribed(&schema, &schema, &v, "", &mut missing);
        }
    }
    assert_eq!(missing, Vec::<String>::new(), "values without a type in values.schema.json");
    // Every object of the schema that lists its fields refuses others (but `global`, Helm's, and
    // the Kubernetes types passed through whole: affinity's parts).
    fn closed(node: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            if node["additionalProperties"] != false {
                out.push(path.to_string());
            }
            for (k, v) in props {
                closed(v, &format!("{path}.{k}"), out);
            }
        }
        for k in ["items", "additionalProperties"] {
            if node[k].is_object() {
                closed(&node[k], &format!("{path}.{k}"), out);
            }
        }
    }
    let mut open = vec![];
    closed(&schema, "", &mut open);
    for (name, def) in schema["definitions"].as_object().unwrap() {
        closed(def, &format!("definitions.{name}"), &mut open);
    }
    assert_eq!(open, Vec::<String>::new(), "objects of values.schema.json that accept unknown keys");

    // The default policy's ceilings are the AutonomyPolicy CRD's.
    let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(repo().join("crds/autonomypolicies.yaml"))?)?;
    let tiers = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["autonomy"]
        ["properties"];
    let ours = schema["properties"]["defaultPolicy"]["properties"]["autonomy"]["properties"].as_object().unwrap();
    assert_eq!(ours.keys().collect::<Vec<_>>(), tiers.as_object().unwrap().keys().collect::<Vec<_>>(), "the tiers");
    for (tier, node) in ours {
        assert_eq!(resolve(&schema, node)["enum"], tiers[tier]["enum"], "the ceilings of {tier}");
    }
    Ok(())
}

#[test]
fn the_chart_needs_kubernetes_1_33_or_later() -> Result<()> {
    let err = render_chart_for(&[safe()], true, "1.32.9").unwrap_err().to_string();
    assert!(
        err.contains("chart requires kubeVersion: >=1.33.0-0 which is incompatible with Kubernetes v1.32.9"),
        "{err}"
    );
    for version in ["1.33.0", &tested_kube_version()?] {
        render_chart_for(&[safe()], true, version)?;
    }
    Ok(())
}

/// `helm test` runs the operator's own image (no shell, no curl: `warden probe`) against the
/// chart's Service: the webhook over TLS, its certificate checked against its CA for the name the
/// API server uses, refusing this caller when only the API server's client certificate is
/// answered; /metrics serving a gauge every replica has. The pod is a hook (no object of the
/// release, no endpoint of the Service), as locked down as the operator's, holds no token and
/// mounts only the CA's certificate, and the NetworkPolicy lets it reach both ports. That it
/// passes against the pods is the node's test (`on_the_node_helm_test_…`).
#[test]
fn the_helm_test_pod_probes_the_webhook_and_the_metrics_with_the_operator_image() -> Result<()> {
    let certs = ValuesFile::new("cert-secret", "webhook: {certSecret: my-webhook-cert}\n")?;
    let mut runs = combinations()?;
    runs.push(("certSecret".into(), vec![safe(), certs.0.clone()]));
    for (name, files) in runs {
        let docs = render(&files)?;
        let pod = one(&docs, "Pod");
        let deployment = one(&docs, "Deployment");
        let operator = &deployment["spec"]["template"]["spec"];
        let args = strings(&operator["containers"][0]["args"]);
        let svc = main_service(&docs);
        let svc_name = svc["metadata"]["name"].as_str().unwrap();
        assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test", "{name}");
        assert_eq!(pod["metadata"]["namespace"], OPERATOR_NAMESPACE, "{name}");
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Never", "{name}");
        assert_eq!(spec["automountServiceAccountToken"], false, "{name}: no token");
        assert_eq!(spec["securityContext"], operator["securityContext"], "{name}");
        // Not the operator's pod: the Service and the PodDisruptionBudget do not select it.
        let labels = pod["metadata"]["labels"].as_object().unwrap();
        let selects =
            |selector: &Value| selector.as_object().unwrap().iter().all(|(k, v)| labels.get(k).is_some_and(|l| l == v));
        assert!(!selects(&svc["spec"]["selector"]), "{name}: the Service selects the test pod");
        assert!(!selects(&deployment["spec"]["selector"]["matchLabels"]), "{name}: the Deployment selects it");
        for pdb in of_kind(&docs, "PodDisruptionBudget") {
            assert!(!selects(&pdb["spec"]["selector"]["matchLabels"]), "{name}: the PodDisruptionBudget selects it");
        }

        let containers = spec["containers"].as_array().unwrap();
        let names: Vec<&str> = containers.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["webhook", "metrics"], "{name}");
        let host = format!("$({}_SERVICE_HOST)", svc_name.to_uppercase().replace('-', "_"));
        for c in containers {
            assert_eq!(c["image"], operator["containers"][0]["image"], "{name}: the operator's image");
            assert_eq!(c["securityContext"], operator["containers"][0]["securityContext"], "{name}");
            assert!(!c["resources"]["limits"]["memory"].is_null(), "{name}: a memory limit");
            assert_eq!(strings(&c["args"])[0], "probe", "{name}");
        }
        let port = |p: &str| {
            svc["spec"]["ports"].as_array().unwrap().iter().any(|x| x["name"] == p && x["port"].as_u64().is_some())
        };
        assert!(port("webhook") && port("metrics"), "{name}");

        let webhook = strings(&containers[0]["args"]);
        assert_eq!(webhook[1], format!("https://{host}:443/helm-test"), "{name}: the Service's webhook port");
        assert!(args.contains(&format!("--webhook-service={OPERATOR_NAMESPACE}/{svc_name}:443")), "{name}: {args:?}");
        assert!(webhook.contains(&format!("--server-name={svc_name}.{OPERATOR_NAMESPACE}.svc")), "{name}: {webhook:?}");
        assert!(webhook.contains(&"--ca=/etc/soc-warden/webhook-ca/ca.crt".to_string()), "{name}: {webhook:?}");
        let by_certificate = args.iter().any(|a| a.starts_with("--webhook-client-ca="));
        let expected: [&str; 2] = if by_certificate {
            ["--expect-status=401", "--expect-body=answers only the API server"]
        } else {
            ["--expect-status=200", "--expect-body=AdmissionReview"]
        };
        for e in expected {
            assert!(webhook.contains(&e.to_string()), "{name}: {e} in {webhook:?}");
        }
        let metrics = strings(&containers[1]["args"]);
        assert_eq!(
            metrics[1..],
            [format!("http://{host}:8080/metrics"), "--expect-body=socwarden_kill_switch_active".into()],
            "{name}"
        );
        assert!(args.contains(&"--metrics-addr=0.0.0.0:8080".to_string()), "{name}");

        // The webhook's CA certificate, and nothing else of its Secret.
        let secret = match name.as_str() {
            "certSecret" => "my-webhook-cert",
            "ci/audit-and-own-cert.yaml" => "soc-warden-webhook-cert",
            _ => soc_warden::tls::TLS_SECRET,
        };
        assert_eq!(
            spec["volumes"],
            json!([{"name": "webhook-ca", "secret": {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]),
            "{name}"
        );

        // Where a NetworkPolicy guards the ports, it admits the test pod to both.
        for np in of_kind(&docs, "NetworkPolicy") {
            for port in [9443, 8080] {
                let rule = np["spec"]["ingress"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["ports"].as_array().unwrap().iter().any(|p| p["port"] == port))
                    .unwrap();
                let admitted = rule.get("from").is_none()
                    || rule["from"].as_array().unwrap().iter().any(|peer| {
                        peer.get("namespaceSelector").is_none()
                            && peer.get("ipBlock").is_none()
                            && selects(&peer["podSelector"]["matchLabels"])
                    });
                assert!(admitted, "{name}: the NetworkPolicy keeps the test pod from port {port}: {rule}");
            }
        }
    }
    Ok(())
}
