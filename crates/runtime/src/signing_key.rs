//! The HMAC key that signs admission stamps (see `socwarden_core::admission::signature`): 32
//! random bytes, created once in a Secret of the operator's namespace and shared by replicas, so
//! any replica verifies what any other stamped.

use crate::k8s::{self, secret_value};
use crate::tls::Error;
use kube::Client;

pub const KEY_SECRET: &str = socwarden_core::envelope::OPERATOR_SECRETS[0];

/// The signing key, created on first use.
pub async fn signing_key(client: &Client, namespace: &str) -> Result<Vec<u8>, Error> {
    let s = k8s::shared_secret::<Error>(client, namespace, KEY_SECRET, || {
        let mut key = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| Error::Tls("no randomness".into()))?;
        Ok([("key".to_string(), key)].into())
    })
    .await?;
    secret_value(&s, "key").filter(|k| k.len() >= 32).ok_or_else(|| Error::MissingKey(KEY_SECRET.into(), "key".into()))
}

/// 16 random bytes in hex: a unique name or nonce.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    socwarden_core::admission::signature::hex(&b)
}
