//! Signing keys, and the two signed statements the audit trail makes:
//! checkpoints ("the chain of workspace W reached seq N with hash H") and
//! pruning anchors ("entries of W up to seq N, the last with hash H, were
//! deleted by retention").
//!
//! # Key handling
//!
//! The signing key is an Ed25519 key in a file holding its 32-byte seed as
//! 64 hex digits. [`AuditKeys::load_or_generate`] reads it, or creates it on
//! first start with permissions `0600` (created exclusively, so two nodes
//! starting together on a shared volume never overwrite each other's key).
//! It writes the public key beside it (`<file>.pub`, 64 hex digits), which
//! is what an auditor needs: give it to them out of band (and keep a copy
//! outside the server), and `verify` can then be run anywhere.
//!
//! Keep the key file off the database host: whoever can both change the
//! database and read the key can rewrite history undetected. With several
//! nodes, either share one key (a Kubernetes secret) or give each its own
//! and list the others' public keys as trusted; checkpoints name the key
//! that signed them. To rotate, start with a new key and keep the old public
//! key trusted for as long as its checkpoints are retained.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::hash::Digest;

const CHECKPOINT_DOMAIN: &[u8] = b"collab-engine/audit-checkpoint/v1\0";
const ANCHOR_DOMAIN: &[u8] = b"collab-engine/audit-anchor/v1\0";

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("key file {path} does not hold a 32-byte key as 64 hex digits")]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A public key given to trust is not a valid Ed25519 key.
    #[error("invalid public key {0:?}: expected 64 hex digits of an Ed25519 key")]
    PublicKey(String),
    /// The operating system gave no randomness for a new key.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256,
/// in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Digest::of(key.as_bytes()).0[..8])
}

/// The key this node signs with, and every key whose signatures it accepts.
#[derive(Clone)]
pub struct AuditKeys {
    signing: SigningKey,
    id: String,
    trusted: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for AuditKeys {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("key_id", &self.id)
            .field("trusted", &self.trusted.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuditKeys {
    /// From a 32-byte seed (tests, or keys kept in a secret manager).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        let id = key_id(&verifying);
        Self {
            signing,
            trusted: HashMap::from([(id.clone(), verifying)]),
            id,
        }
    }

    /// A fresh random key that is never written anywhere (tests).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// Reads the key at `path`, or creates it (and `<path>.pub`) when the
    /// file does not exist. Blocking file I/O: call it at start-up, or from
    /// `spawn_blocking`.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyError::Format {
                    path: path.to_owned(),
                })?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate()?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(path) {
                    Ok(mut file) => {
                        writeln!(file, "{}", hex::encode(keys.signing.to_bytes())).map_err(io)?;
                        file.sync_all().map_err(io)?;
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_generate(path);
                    }
                    Err(e) => return Err(io(e)),
                }
                let public = public_key_path(path);
                std::fs::write(&public, format!("{}\n", keys.public_key_hex())).map_err(
                    |source| KeyError::Io {
                        path: public.clone(),
                        source,
                    },
                )?;
                tracing::info!(path = %path.display(), key_id = %keys.id, "generated a new audit signing key");
                Ok(keys)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Also accepts signatures by the key with this public half (64 hex
    /// digits): another node's key, or a rotated-out one.
    pub fn trust(mut self, public_hex: &str) -> Result<Self, KeyError> {
        let key = parse_public_key(public_hex)?;
        self.trusted.insert(key_id(&key), key);
        Ok(self)
    }

    /// The id of the signing key.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public half of the signing key, as 64 hex digits.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// Signs a checkpoint of `workspace` at `seq` with hash `hash`.
    pub fn checkpoint(
        &self,
        workspace: &str,
        seq: u64,
        hash: Digest,
        prev_seq: u64,
        at_ms: u64,
    ) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            workspace: workspace.to_owned(),
            seq,
            hash,
            prev_seq,
            at_ms,
            key_id: self.id.clone(),
            signature: String::new(),
        };
        let signature = self.signing.sign(&checkpoint.payload());
        checkpoint.signature = hex::encode(signature.to_bytes());
        checkpoint
    }

    /// Signs an anchor saying entries of `workspace` through `through_seq`
    /// (whose hash was `hash`) were pruned.
    pub fn anchor(&self, workspace: &str, through_seq: u64, hash: Digest, at_ms: u64) -> Anchor {
        let mut anchor = Anchor {
            workspace: workspace.to_owned(),
            through_seq,
            hash,
            at_ms,
            key_id: self.id.clone(),
            signature: String::new(),
        };
        anchor.signature = hex::encode(self.signing.sign(&anchor.payload()).to_bytes());
        anchor
    }

    /// A secret derived from the signing key for `purpose`: stable as long
    /// as the key is, never equal to it (pseudonyms use it).
    pub(crate) fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        let mut input = b"collab-engine/derived-secret/v1\0".to_vec();
        input.extend_from_slice(purpose.as_bytes());
        input.push(0);
        input.extend_from_slice(&self.signing.to_bytes());
        Digest::of(&input).0
    }

    /// Checks a signature by one of the trusted keys over `payload`.
    fn verify(&self, key_id: &str, payload: &[u8], signature_hex: &str) -> Result<(), String> {
        let key = self
            .trusted
            .get(key_id)
            .ok_or_else(|| format!("signed by unknown key {key_id:?}"))?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(signature_hex, &mut bytes)
            .map_err(|_| "the signature is not 128 hex digits".to_owned())?;
        key.verify_strict(payload, &Signature::from_bytes(&bytes))
            .map_err(|_| format!("the signature does not verify with key {key_id}"))
    }

    /// Whether `checkpoint` carries a valid signature by a trusted key.
    pub fn verify_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        self.verify(
            &checkpoint.key_id,
            &checkpoint.payload(),
            &checkpoint.signature,
        )
    }

    /// Whether `anchor` carries a valid signature by a trusted key.
    pub fn verify_anchor(&self, anchor: &Anchor) -> Result<(), String> {
        self.verify(&anchor.key_id, &anchor.payload(), &anchor.signature)
    }
}

/// Where the public key of the key file at `path` is written.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn parse_public_key(hex_text: &str) -> Result<VerifyingKey, KeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut bytes)
        .map_err(|_| KeyError::PublicKey(hex_text.to_owned()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::PublicKey(hex_text.to_owned()))
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A signed statement that a workspace's chain reached `seq` with `hash`.
///
/// The signature is Ed25519 over
/// `"collab-engine/audit-checkpoint/v1" 0x00 || len(workspace) as u32 BE ||
/// workspace || seq u64 BE || hash (32 bytes) || prev_seq u64 BE || at_ms
/// u64 BE || len(key_id) u32 BE || key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain.
    pub workspace: String,
    /// The entry signed.
    pub seq: u64,
    /// That entry's hash.
    pub hash: Digest,
    /// The checkpoint before this one (0 for none): a checkpoint deleted
    /// from the middle is noticed because the next one names it.
    pub prev_seq: u64,
    /// When it was signed.
    pub at_ms: u64,
    /// The signing key's id ([`key_id`]).
    pub key_id: String,
    /// The signature, 128 hex digits.
    pub signature: String,
}

impl Checkpoint {
    fn payload(&self) -> Vec<u8> {
        let mut out = CHECKPOINT_DOMAIN.to_vec();
        push_str(&mut out, &self.workspace);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.prev_seq.to_be_bytes());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        push_str(&mut out, &self.key_id);
        out
    }
}

/// A signed statement that a workspace's entries through `through_seq` were
/// deleted by retention; the chain now starts after it.
///
/// The signature is Ed25519 over `"collab-engine/audit-anchor/v1" 0x00 ||
/// len(workspace) u32 BE || workspace || through_seq u64 BE || hash || at_ms
/// u64 BE || len(key_id) u32 BE || key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The chain.
    pub workspace: String,
    /// The last entry deleted.
    pub through_seq: u64,
    /// Its hash: the `prev_hash` the first remaining entry must have.
    pub hash: Digest,
    /// When the entries were deleted.
    pub at_ms: u64,
    /// The signing key's id.
    pub key_id: String,
    /// The signature, 128 hex digits.
    pub signature: String,
}

impl Anchor {
    fn payload(&self) -> Vec<u8> {
        let mut out = ANCHOR_DOMAIN.to_vec();
        push_str(&mut out, &self.workspace);
        out.extend_from_slice(&self.through_seq.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        push_str(&mut out, &self.key_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_and_any_change_breaks_them() {
        let keys = AuditKeys::from_seed([7; 32]);
        let cp = keys.checkpoint("acme", 10, Digest::of(b"h"), 0, 99);
        assert_eq!(keys.verify_checkpoint(&cp), Ok(()));
        let mut moved = cp.clone();
        moved.seq = 11;
        assert!(keys.verify_checkpoint(&moved).is_err());
        let mut other_ws = cp.clone();
        other_ws.workspace = "acme2".into();
        assert!(keys.verify_checkpoint(&other_ws).is_err());
        let stranger = AuditKeys::from_seed([8; 32]);
        assert_eq!(
            stranger.verify_checkpoint(&cp),
            Err(format!("signed by unknown key {:?}", keys.key_id()))
        );
        let trusting = stranger.trust(&keys.public_key_hex()).unwrap();
        assert_eq!(trusting.verify_checkpoint(&cp), Ok(()));
    }

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let first = AuditKeys::load_or_generate(&path).unwrap();
        let again = AuditKeys::load_or_generate(&path).unwrap();
        assert_eq!(first.public_key_hex(), again.public_key_hex());
        let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(public.trim(), first.public_key_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            AuditKeys::load_or_generate(&path),
            Err(KeyError::Format { .. })
        ));
    }
}
