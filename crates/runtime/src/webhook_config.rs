//! Registering the admission webhook: the `socwarden.io` Mutating and Validating configurations,
//! with the CA bundle of the serving certificate, written by the operator (and written again
//! every repair interval, undoing a deletion or an edit).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

pub const WEBHOOK_CONFIG: &str = "socwarden.io";

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `https://host:port` (a local operator, or a fixed address).
    Url(String),
    /// A Service in front of the operator's replicas.
    Service { namespace: String, name: String, port: i32 },
}

impl Endpoint {
    fn client_config(&self, path: &str, ca: &str) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(ca.as_bytes().to_vec()));
        match self {
            Endpoint::Url(u) => WebhookClientConfig {
                url: Some(format!("{}{path}", u.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
            Endpoint::Service { namespace, name, port } => WebhookClientConfig {
                url: None,
                ca_bundle,
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.into()),
                    port: Some(*port),
                }),
            },
        }
    }
}

fn rule(operations: &[&str], resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec!["socwarden.io".into()]),
        api_versions: Some(vec!["v1alpha1".into()]),
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        scope: Some("Namespaced".into()),
    }
}

const RECORDS: &[&str] = &["actionrequests", "approvals"];

/// Reviewed for their lifetime: no owner reference (either kind), an audited namespace (a
/// SocAgent's create), who may change which fields (a SocAgent's update).
const AGENTS: &[&str] = &["socagents", "driftreports"];

/// The condition under which the lifetime webhook skips a request: it comes from the operator's
/// own ServiceAccount. The operator writes SocAgents only to add and remove its finalizer, and
/// DriftReports to record a drift pause; neither may wait on its own webhook being reachable (a
/// pause must land while every replica restarts, a deletion must finish while the webhook is down).
/// Safe: what the webhook guards there (owners, audited namespaces, who changes which field) is
/// against people and agents with partial rights; the operator's ServiceAccount already holds
/// every right those checks protect. Stamps (ActionRequests, Approvals) are never exempted: the
/// operator's own requests (the MCP gateway's) are checked like everyone's.
///
/// Only a ServiceAccount is exempted: an operator run with a person's credentials (a local run as
/// an admin) would otherwise exempt that person.
pub fn exemption(operator_user: Option<&str>) -> Option<MatchCondition> {
    let user = operator_user?;
    let sa = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = sa.split_once(':')?;
    let dns = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    (dns(ns) && dns(name)).then(|| MatchCondition {
        name: "not-the-operator".into(),
        expression: format!("request.userInfo.username != 'system:serviceaccount:{ns}:{name}'"),
    })
}

/// The two webhook configurations: a mutating one that stamps on CREATE, a validating one that
/// checks stamps on CREATE, immutability on UPDATE, and, for SocAgents and DriftReports on both,
/// what `webhook::lifetime` and `agent::authority` decide (skipping the operator's own writes
/// there, see `exemption`). All fail closed.
pub fn configurations(
    endpoint: &Endpoint,
    ca: &str,
    operator_user: Option<&str>,
) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let meta = ObjectMeta { name: Some(WEBHOOK_CONFIG.into()), ..Default::default() };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: "stamp.socwarden.io".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: endpoint.client_config("/mutate", ca),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            reinvocation_policy: Some("Never".into()),
            rules: Some(vec![rule(&["CREATE"], RECORDS)]),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "check.socwarden.io".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: endpoint.client_config("/validate", ca),
                failure_policy: Some("Fail".into()),
                match_policy: Some("Equivalent".into()),
                rules: Some(vec![rule(&["CREATE", "UPDATE"], RECORDS)]),
                side_effects: "None".into(),
                timeout_seconds: Some(5),
                ..Default::default()
            },
            ValidatingWebhook {
                name: "lifetime.socwarden.io".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: endpoint.client_config("/validate", ca),
                failure_policy: Some("Fail".into()),
                match_policy: Some("Equivalent".into()),
                match_conditions: exemption(operator_user).map(|c| vec![c]),
                rules: Some(vec![rule(&["CREATE", "UPDATE"], AGENTS)]),
                side_effects: "None".into(),
                timeout_seconds: Some(5),
                ..Default::default()
            },
        ]),
    };
    (mutating, validating)
}

/// Creates or updates both webhook configurations.
pub async fn register(client: &Client, endpoint: &Endpoint, ca: &str, operator_user: Option<&str>) -> kube::Result<()> {
    let (m, v) = configurations(endpoint, ca, operator_user);
    let pp = PatchParams::apply("soc-warden").force();
    Api::<MutatingWebhookConfiguration>::all(client.clone()).patch(WEBHOOK_CONFIG, &pp, &Patch::Apply(&m)).await?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).patch(WEBHOOK_CONFIG, &pp, &Patch::Apply(&v)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_fail_closed_and_cover_both_kinds() {
        let (m, v) = configurations(&Endpoint::Url("https://127.0.0.1:9443/".into()), "CA", None);
        let mw = &m.webhooks.unwrap()[0];
        assert_eq!(mw.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(mw.client_config.url.as_deref(), Some("https://127.0.0.1:9443/mutate"));
        let vw = &v.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            vw.rules.as_ref().unwrap()[0].operations.as_ref().unwrap(),
            &vec!["CREATE".to_string(), "UPDATE".to_string()]
        );
        assert_eq!(
            vw.rules.as_ref().unwrap()[0].resources.as_ref().unwrap(),
            &vec!["actionrequests".to_string(), "approvals".to_string()]
        );
        // A SocAgent's create is reviewed too (its namespace, its owners), and its DriftReport's.
        let lifetime = &v.webhooks.as_ref().unwrap()[1];
        let agents = &lifetime.rules.as_ref().unwrap()[0];
        assert_eq!(agents.resources.as_ref().unwrap(), &vec!["socagents".to_string(), "driftreports".to_string()]);
        assert_eq!(agents.operations.as_ref().unwrap(), &vec!["CREATE".to_string(), "UPDATE".to_string()]);
        assert_eq!(lifetime.failure_policy.as_deref(), Some("Fail"));
        assert!(lifetime.match_conditions.is_none(), "no identity, no exemption");
        let (m, _) =
            configurations(&Endpoint::Service { namespace: "sw".into(), name: "warden".into(), port: 443 }, "CA", None);
        assert_eq!(m.webhooks.unwrap()[0].client_config.service.as_ref().unwrap().path.as_deref(), Some("/mutate"));
    }

    #[test]
    fn only_the_operators_own_service_account_skips_the_lifetime_checks_never_the_stamps() {
        let sa = "system:serviceaccount:soc-warden-system:soc-warden";
        let (m, v) = configurations(&Endpoint::Url("https://127.0.0.1:9443".into()), "CA", Some(sa));
        let hooks = v.webhooks.unwrap();
        let cond = hooks[1].match_conditions.as_ref().expect("the lifetime webhook skips the operator");
        assert_eq!(cond[0].expression, format!("request.userInfo.username != '{sa}'"));
        assert!(hooks[0].match_conditions.is_none(), "stamps and records are checked for everyone");
        assert!(m.webhooks.unwrap()[0].match_conditions.is_none(), "every request is stamped");
        // A person, or a name that would not be a plain CEL string, exempts no one.
        for user in ["admin", "system:serviceaccount:ns", "system:serviceaccount:a:b' || true || '", ""] {
            assert!(exemption(Some(user)).is_none(), "{user:?}");
        }
        assert!(exemption(None).is_none());
    }
}
