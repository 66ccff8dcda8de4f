//! The kinds the API server serves, from its discovery, for `core::admission::kinds`: every target,
//! effect and protected-target kind is resolved against them. Filled at start and refreshed every
//! minute (CRDs installed later); until the first discovery answers, the built-in kinds.

use kube::Client;
use kube::discovery::{Discovery, Scope};
use socwarden_core::admission::kinds::{Kinds, Resource};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often discovery is asked again.
pub const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct KindsCache(Arc<RwLock<Arc<Kinds>>>);

impl Default for KindsCache {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Arc::new(Kinds::builtin()))))
    }
}

impl KindsCache {
    /// The kinds known now.
    pub fn current(&self) -> Arc<Kinds> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks discovery for every group and version; keeps the built-in kinds' short names.
    pub async fn refresh(&self, client: &Client) -> Result<usize, kube::Error> {
        let d = Discovery::new(client.clone()).run().await?;
        let builtin = Kinds::builtin();
        let mut resources = Vec::new();
        for g in d.groups() {
            for v in g.versions() {
                for (ar, caps) in g.versioned_resources(v) {
                    let mut r =
                        Resource::new(&ar.group, &ar.version, &ar.kind, &ar.plural, caps.scope == Scope::Namespaced);
                    r.short_names = builtin.short_names(&ar.group, &ar.plural);
                    resources.push(r);
                }
            }
        }
        let n = resources.len();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Kinds::new(resources));
        Ok(n)
    }

    /// Refreshes every `REFRESH`, for ever (a failed refresh keeps what was known).
    pub async fn keep_fresh(self, client: Client) {
        loop {
            match self.refresh(&client).await {
                Ok(n) => tracing::debug!(resources = n, "discovery refreshed"),
                Err(e) => tracing::warn!(error = %e, "discovery failed; keeping the kinds known"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}
