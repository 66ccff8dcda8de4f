//! The CRDs' own validation rules (CEL, `x-kubernetes-validations`, generated from `crates/api`),
//! tried with no operator running and no admission webhook registered: the API server alone
//! refuses each manifest a rule forbids, with the rule's message, and admits the good ones. The
//! webhook and the operator stay the authority; these rules are the layer that holds while they
//! are down (design §14).

use anyhow::{Result, bail};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Approval, AutonomyPolicy, Notifier};

/// Applies `yaml` and returns the API server's refusal (fails if it was admitted).
async fn refused(client: &kube::Client, yaml: &str) -> Result<String> {
    match apply_yaml(client, yaml).await {
        Ok(_) => bail!("admitted:\n{yaml}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

fn policy(name: &str, spec: &str) -> String {
    format!("apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn notifier(name: &str, spec: &str) -> String {
    format!("apiVersion: socwarden.io/v1alpha1\nkind: Notifier\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn agent(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: socwarden.io/v1alpha1\nkind: SocAgent\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{tier: observe, scope: {{namespaces: [{ns}]}}, {spec}}}\n"
    )
}

/// Every rule, even against a cluster admin: a Notifier with neither or both URLs, a webhook
/// sink without its signing key or signing with the operator's own, ceilings that decrease with
/// the tier, a duration over ten years (in days, in hours, summed over its parts), a token TTL
/// over a day, and an edit of a request's or an approval's spec. With the CRDs as they were before
/// these rules, every one of them was admitted (and the first case fails this test).
#[tokio::test]
async fn with_the_operator_down_the_api_server_refuses_what_the_rules_forbid() -> Result<()> {
    let admin = admin().await?;
    install_crds(&admin).await?;
    // No operator is started here, and none may answer for the API server: only the CRDs judge.
    forget_webhook(&admin).await?;
    let ns = Namespaces::create(&admin, &["schema"]).await?;
    let home = ns.get(0);
    let n = unique("schema");

    // (manifest, the field the API server names, what its message says)
    let cases = [
        (notifier(&n, "{format: slack}"), "spec", "set url, or urlSecretRef (a Secret in the operator's namespace"),
        (
            notifier(&n, "{format: slack, url: 'https://chat.example/x', urlSecretRef: {name: chat, key: url}}"),
            "spec",
            "set url or urlSecretRef, not both",
        ),
        (notifier(&n, "{format: webhook, url: 'https://soar.example/x'}"), "spec", "format webhook needs secretRef"),
        (
            notifier(
                &n,
                "{format: webhook, url: 'https://soar.example/x', secretRef: {name: socwarden-signing-key, key: key}}",
            ),
            "spec.secretRef",
            "names socwarden-signing-key, the operator's own Secret; give the endpoint a key of its own",
        ),
        (
            notifier(&n, "{format: slack, urlSecretRef: {name: socwarden-webhook-tls, key: tls.key}}"),
            "spec.urlSecretRef",
            "names socwarden-webhook-tls, the operator's own Secret",
        ),
        (
            policy(&n, "{autonomy: {assist: high}}"),
            "spec.autonomy",
            "ceilings must not decrease with the tier: autonomy.assist is high but autonomy.supervised is low; raise autonomy.supervised or lower autonomy.assist",
        ),
        (
            policy(&n, "{autonomy: {assist: low, supervised: high, autonomous: medium}}"),
            "spec.autonomy",
            "autonomy.supervised is high but autonomy.autonomous is medium; raise autonomy.autonomous",
        ),
        (
            policy(&n, "{approvals: {timeout: 3651d}}"),
            "spec.approvals.timeout",
            "3651d is longer than 3650d (ten years), the longest duration SOC Warden accepts: write a shorter one",
        ),
        (policy(&n, "{requests: {retention: 999999d}}"), "spec.requests.retention", "999999d is longer than 3650d"),
        (policy(&n, "{promotion: {minDwell: 87601h}}"), "spec.promotion.minDwell", "87601h is longer than 3650d"),
        (policy(&n, "{promotion: {cleanWindow: 3650d1s}}"), "spec.promotion.cleanWindow", "3650d1s is longer than"),
        (
            policy(&n, "{promotion: {coolingOff: 999999d999999h999999m999999s}}"),
            "spec.promotion.coolingOff",
            "is longer than 3650d",
        ),
        (
            agent(&n, home, "baseline: {learningPeriod: 3649d24h1m}"),
            "spec.baseline.learningPeriod",
            "3649d24h1m is longer than 3650d (ten years)",
        ),
        (
            agent(&n, home, "credentials: {ttl: 25h}"),
            "spec.credentials.ttl",
            "25h is longer than 24h; tokens are meant to be short-lived: write a shorter one, such as 1h",
        ),
        (agent(&n, home, "credentials: {ttl: 1441m}"), "spec.credentials.ttl", "1441m is longer than 24h"),
        (agent(&n, home, "credentials: {ttl: 86401s}"), "spec.credentials.ttl", "86401s is longer than 24h"),
    ];
    for (yaml, field, says) in &cases {
        let why = refused(&admin, yaml).await?;
        assert!(why.contains(&format!("{field}: Invalid value")) && why.contains(says), "{yaml}\n→ {why}");
    }

    // The good ones, at the bounds, are admitted (and the example policy passes every rule).
    let (good, signed) = (unique("schema-good"), unique("schema-signed"));
    apply_yaml(
        &admin,
        &policy(
            &good,
            "{autonomy: {assist: high, supervised: high, autonomous: high}, approvals: {timeout: 3650d}, requests: {retention: 3649d23h59m60s}, promotion: {minDwell: 87600h, cleanWindow: 0s, coolingOff: 999999m}}",
        ),
    )
    .await?;
    apply_yaml(
        &admin,
        &format!(
            "{}---\n{}",
            notifier(
                &signed,
                "{format: webhook, url: 'https://soar.example/x', secretRef: {name: soar-hmac, key: key}}"
            ),
            notifier(&good, "{format: teams, urlSecretRef: {name: teams-url, key: url}}")
        ),
    )
    .await?;
    apply_yaml(&admin, &agent("good", home, "credentials: {ttl: 24h}, baseline: {learningPeriod: 3650d}")).await?;
    apply_yaml(&admin, &agent("short", home, "credentials: {ttl: 10m}, baseline: {learningPeriod: 0s}")).await?;
    let example = std::fs::read_to_string(repo().join("examples/10-policy.yaml"))?;
    let (ok, out) = kubectl_with(&admin_kubeconfig(), &["apply", "--dry-run=server", "-f", "-"], &example)?;
    assert!(ok, "{out}");

    // Records: the spec stays as created; the metadata is not the record's content.
    let requests = Api::<ActionRequest>::namespaced(admin.clone(), home);
    file(&admin, home, &request("r1", "good", "read-pods", json!({"app": "web"}), home, "web-1")).await?;
    let approvals = Api::<Approval>::namespaced(admin.clone(), home);
    approvals.create(&Default::default(), &approval("a1", "r1", "approve")).await?;
    let edits = [
        json!({"spec": {"target": {"kind": "Pod", "name": "web-2", "namespace": home}}}),
        json!({"spec": {"parameters": {"app": "everything"}}}),
        json!({"spec": {"requester": "lead-a"}}),
    ];
    for edit in &edits {
        let why = refusal(requests.patch("r1", &PatchParams::default(), &Patch::Merge(edit)).await);
        assert!(
            why.contains("spec: Invalid value")
                && why.contains("ActionRequest spec is immutable; create a new one instead"),
            "{edit} → {why}"
        );
    }
    for edit in [json!({"spec": {"decision": "deny"}}), json!({"spec": {"approver": "lead-b"}})] {
        let why = refusal(approvals.patch("a1", &PatchParams::default(), &Patch::Merge(&edit)).await);
        assert!(why.contains("Approval spec is immutable; create a new one instead"), "{edit} → {why}");
    }
    let label = json!({"metadata": {"labels": {"reviewed": "yes"}}});
    requests.patch("r1", &PatchParams::default(), &Patch::Merge(&label)).await?;
    approvals.patch("a1", &PatchParams::default(), &Patch::Merge(&label)).await?;
    let r1 = requests.get("r1").await?;
    assert_eq!((r1.spec.target.name.as_str(), r1.spec.parameters["app"].as_str()), ("web-1", Some("web")));

    for name in [&good, &signed] {
        let _ = Api::<Notifier>::all(admin.clone()).delete(name, &Default::default()).await;
    }
    let _ = Api::<AutonomyPolicy>::all(admin.clone()).delete(&good, &Default::default()).await;
    Ok(())
}
