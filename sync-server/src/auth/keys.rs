//! API keys for server-to-server use: `csk_<id>_<secret>`.
//!
//! The id is public (lists, audit, revocation); the secret is 32 random
//! bytes. Only the SHA-256 of the whole key is stored: a key is random and
//! long, so a fast hash is enough (nothing to brute-force, unlike a
//! password), and a lookup is one indexed read per request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::credentials::API_KEY_PREFIX;

/// A freshly generated key: shown once, then only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The whole key, for the caller.
    pub key: String,
    /// Its public id.
    pub id: String,
    /// Hex SHA-256 of `key`.
    pub hash: String,
}

/// Generates a key.
pub fn generate() -> NewKey {
    let mut rng = rand::thread_rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let key = format!("{API_KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    NewKey {
        hash: hash(&key),
        key,
        id,
    }
}

/// Hex SHA-256 of a presented key.
pub fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _infallible = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_to_what_is_stored() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("csk_"));
        assert_eq!(hash(&a.key), a.hash);
        assert_eq!(a.hash.len(), 64);
    }
}
