//! Watches that survive malformed objects.
//!
//! A typed watch fails its whole list when one object does not decode, which would stop the
//! operator from serving every other agent. Here each object is decoded on its own: an undecodable
//! spec becomes a default spec marked with the `socwarden.io/malformed` annotation (so reconcilers
//! fail closed on it and say why), and an undecodable status is dropped.

use crate::metrics::Metrics;
use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use socwarden_api::{
    ActionRequest, ActionRequestSpec, Approval, ApprovalSpec, AutonomyPolicy, AutonomyPolicySpec, SocAction,
    SocActionSpec, SocAgent, SocAgentSpec,
};

pub const MALFORMED_ANNOTATION: &str = "socwarden.io/malformed";

/// A custom resource that can be decoded part by part.
pub trait Lenient: Resource<DynamicType = ()> + Clone + Send + Sync + std::fmt::Debug + 'static {
    type Spec: DeserializeOwned + Default;
    type Status: DeserializeOwned;
    fn assemble(meta: ObjectMeta, spec: Self::Spec, status: Option<Self::Status>) -> Self;
}

macro_rules! lenient {
    ($kind:ty, $spec:ty, $status:ty) => {
        impl Lenient for $kind {
            type Spec = $spec;
            type Status = $status;
            fn assemble(meta: ObjectMeta, spec: $spec, status: Option<$status>) -> Self {
                let mut o = <$kind>::new(meta.name.as_deref().unwrap_or_default(), spec);
                o.metadata = meta;
                o.status = status;
                o
            }
        }
    };
}
lenient!(SocAgent, SocAgentSpec, socwarden_api::SocAgentStatus);
lenient!(SocAction, SocActionSpec, socwarden_api::SocActionStatus);
lenient!(AutonomyPolicy, AutonomyPolicySpec, socwarden_api::AutonomyPolicyStatus);
lenient!(ActionRequest, ActionRequestSpec, socwarden_api::ActionRequestStatus);

// Approvals have no status subresource.
impl Lenient for Approval {
    type Spec = ApprovalSpec;
    type Status = serde_json::Value;
    fn assemble(meta: ObjectMeta, spec: ApprovalSpec, _: Option<serde_json::Value>) -> Self {
        let mut o = Approval::new(meta.name.as_deref().unwrap_or_default(), spec);
        o.metadata = meta;
        o
    }
}

/// Why the object's spec could not be decoded, if it could not.
pub fn malformed<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().annotations.as_ref()?.get(MALFORMED_ANNOTATION).map(String::as_str)
}

/// Decodes one object; never fails.
pub fn decode<K: Lenient>(obj: DynamicObject) -> K {
    let DynamicObject { mut metadata, data, .. } = obj;
    let spec = data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    let spec = match serde_json::from_value::<K::Spec>(spec) {
        Ok(s) => s,
        Err(e) => {
            metadata.annotations.get_or_insert_default().insert(MALFORMED_ANNOTATION.into(), format!("spec: {e}"));
            K::Spec::default()
        }
    };
    let status = data.get("status").and_then(|s| serde_json::from_value::<K::Status>(s.clone()).ok());
    // Managed fields are large and never read here; dropping them keeps the caches small.
    metadata.managed_fields = None;
    K::assemble(metadata, spec, status)
}

/// A watch of every object of `K`, decoded leniently.
pub fn watch<K: Lenient>(
    client: Client,
    config: watcher::Config,
    metrics: Metrics,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static {
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<K>(&()));
    let kind = K::kind(&()).to_string();
    watcher::watcher(api, config).map(move |ev| {
        ev.map(|ev| {
            let count = |o: &K| {
                if let Some(why) = malformed(o) {
                    metrics.malformed_objects.with_label_values(&[&kind]).inc();
                    tracing::warn!(kind = %kind, name = %o.name_any(), namespace = ?o.namespace(), %why, "malformed object");
                }
            };
            match ev {
                Event::Apply(o) => {
                    let o = decode::<K>(o);
                    count(&o);
                    Event::Apply(o)
                }
                Event::InitApply(o) => {
                    let o = decode::<K>(o);
                    count(&o);
                    Event::InitApply(o)
                }
                Event::Delete(o) => Event::Delete(decode(o)),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use socwarden_api::Tier;

    fn dynobj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_good_object_decodes_as_typed() {
        let a: SocAgent = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
            "metadata": {"name": "bot", "namespace": "agents", "managedFields": [{"manager": "x"}]},
            "spec": {"tier": "supervised", "scope": {"namespaces": ["web"]}},
            "status": {"phase": "Active"}
        })));
        assert_eq!(a.spec.tier, Tier::Supervised);
        assert!(malformed(&a).is_none());
        assert!(a.metadata.managed_fields.is_none());
        assert!(a.status.is_some());
    }

    #[test]
    fn a_malformed_spec_is_marked_not_fatal() {
        let a: SocAgent = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAgent",
            "metadata": {"name": "bot", "namespace": "agents"},
            "spec": {"tier": "godmode", "scope": {"namespaces": ["web"]}},
        })));
        assert!(malformed(&a).unwrap().contains("godmode"));
        assert_eq!(a.name_any(), "bot");
        assert_eq!(a.spec, SocAgentSpec::default());
    }

    #[test]
    fn a_malformed_status_is_dropped() {
        let p: AutonomyPolicy = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "AutonomyPolicy",
            "metadata": {"name": "default"},
            "spec": {"killSwitch": true},
            "status": {"conditions": "not a list"}
        })));
        assert!(p.spec.kill_switch);
        assert!(p.status.is_none());
        assert!(malformed(&p).is_none());
    }

    #[test]
    fn a_malformed_action_defaults_to_critical() {
        let a: SocAction = decode(dynobj(json!({
            "apiVersion": "socwarden.io/v1alpha1", "kind": "SocAction",
            "metadata": {"name": "x"}, "spec": {"risk": 7}
        })));
        assert!(malformed(&a).is_some());
        assert_eq!(a.spec.risk, socwarden_api::Risk::Critical);
        assert!(a.spec.grants.is_empty());
    }
}
