//! Where users, workspace memberships and API keys live: beside the
//! documents, in sled (its own database under the data directory) or in
//! the same PostgreSQL schema (`migrations/0003_identity.sql`), so every
//! node sees the same members and keys.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Role;

/// Why the identity store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("identity store: {0}")]
pub struct IdentityStoreError(pub String);

/// A user seen at least once (just-in-time provisioning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user id (`issuer|subject`).
    pub id: String,
    /// Display name at last sign-in.
    pub name: Option<String>,
    /// First sign-in, ms since the epoch.
    pub first_seen_ms: u64,
}

/// A workspace member with an explicit role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// The role; it overrides what group rules would give.
    pub role: Role,
}

/// An API key, without its secret: only the SHA-256 of the whole key is
/// kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id (also inside the key).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// Workspaces it opens (`*`: all).
    pub workspaces: Vec<String>,
    /// The role it has there.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_ms: u64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
    /// When it was last used, if ever.
    pub last_used_ms: Option<u64>,
}

/// Users, memberships and API keys.
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync {
    /// Records `user` if new; true if it was.
    async fn provision(&self, user: &UserRecord) -> Result<bool, IdentityStoreError>;
    /// The user recorded under `id` (for compliance reports).
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, IdentityStoreError>;
    /// `user`'s explicit role in `workspace`.
    async fn member_role(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError>;
    /// Sets `user`'s role in `workspace`; returns the previous one.
    async fn set_member(
        &self,
        workspace: &str,
        user: &str,
        role: Role,
    ) -> Result<Option<Role>, IdentityStoreError>;
    /// Removes `user` from `workspace`; returns the role they had.
    async fn remove_member(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError>;
    /// The members of `workspace`.
    async fn members(&self, workspace: &str) -> Result<Vec<Member>, IdentityStoreError>;
    /// The workspaces `user` is an explicit member of, with the role.
    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>, IdentityStoreError>;
    /// Deletes the user's record (GDPR erasure); true if there was one.
    /// Memberships and keys are revoked separately, each audited.
    async fn delete_user(&self, id: &str) -> Result<bool, IdentityStoreError>;
    /// Stores a new key.
    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), IdentityStoreError>;
    /// The key whose hash is `hash`.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, IdentityStoreError>;
    /// Every key.
    async fn keys(&self) -> Result<Vec<ApiKeyRecord>, IdentityStoreError>;
    /// Marks key `id` revoked at `at_ms`; the key as it was, if it exists.
    async fn revoke_key(
        &self,
        id: &str,
        at_ms: u64,
    ) -> Result<Option<ApiKeyRecord>, IdentityStoreError>;
    /// Records that key `id` was used at `at_ms`.
    async fn touch_key(&self, id: &str, at_ms: u64) -> Result<(), IdentityStoreError>;
}

/// The identity store in its own sled database.
pub struct SledIdentityStore {
    users: sled::Tree,
    members: sled::Tree,
    keys: sled::Tree,
    key_hashes: sled::Tree,
}

fn sled_err(e: impl std::fmt::Display) -> IdentityStoreError {
    IdentityStoreError(e.to_string())
}

/// `workspace \0 user`: members of one workspace are one prefix scan.
fn member_key(workspace: &str, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(workspace.len() + user.len() + 1);
    key.extend_from_slice(workspace.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key
}

impl SledIdentityStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>, IdentityStoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(4 << 20)
            .open()
            .map_err(|e| IdentityStoreError(format!("{}: {e}", path.display())))?;
        Ok(Arc::new(Self {
            users: db.open_tree("users").map_err(sled_err)?,
            members: db.open_tree("members").map_err(sled_err)?,
            keys: db.open_tree("keys").map_err(sled_err)?,
            key_hashes: db.open_tree("key_hashes").map_err(sled_err)?,
        }))
    }

    fn key(&self, id: &str) -> Result<Option<ApiKeyRecord>, IdentityStoreError> {
        self.keys
            .get(id.as_bytes())
            .map_err(sled_err)?
            .map(|v| serde_json::from_slice(&v).map_err(sled_err))
            .transpose()
    }

    fn put_key(&self, key: &ApiKeyRecord) -> Result<(), IdentityStoreError> {
        let value = serde_json::to_vec(key).map_err(sled_err)?;
        self.keys
            .insert(key.id.as_bytes(), value)
            .map_err(sled_err)?;
        self.keys.flush().map_err(sled_err)?;
        Ok(())
    }
}

/// Runs a sled call off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IdentityStoreError> + Send + 'static,
) -> Result<T, IdentityStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IdentityStoreError(e.to_string()))?
}

fn parse_role(bytes: &[u8]) -> Result<Role, IdentityStoreError> {
    std::str::from_utf8(bytes)
        .map_err(sled_err)?
        .parse()
        .map_err(sled_err)
}

#[async_trait::async_trait]
impl IdentityStore for Arc<SledIdentityStore> {
    async fn provision(&self, user: &UserRecord) -> Result<bool, IdentityStoreError> {
        let (this, user) = (self.clone(), user.clone());
        blocking(move || {
            let value = serde_json::to_vec(&user).map_err(sled_err)?;
            let created = this
                .users
                .compare_and_swap(user.id.as_bytes(), None as Option<&[u8]>, Some(value))
                .map_err(sled_err)?
                .is_ok();
            Ok(created)
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, IdentityStoreError> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || {
            this.users
                .get(id.as_bytes())
                .map_err(sled_err)?
                .map(|v| serde_json::from_slice(&v).map_err(sled_err))
                .transpose()
        })
        .await
    }

    async fn member_role(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let (this, key) = (self.clone(), member_key(workspace, user));
        blocking(move || {
            this.members
                .get(key)
                .map_err(sled_err)?
                .map(|v| parse_role(&v))
                .transpose()
        })
        .await
    }

    async fn set_member(
        &self,
        workspace: &str,
        user: &str,
        role: Role,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let (this, key) = (self.clone(), member_key(workspace, user));
        blocking(move || {
            let old = this
                .members
                .insert(key, role.as_str().as_bytes())
                .map_err(sled_err)?;
            this.members.flush().map_err(sled_err)?;
            old.map(|v| parse_role(&v)).transpose()
        })
        .await
    }

    async fn remove_member(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let (this, key) = (self.clone(), member_key(workspace, user));
        blocking(move || {
            let old = this.members.remove(key).map_err(sled_err)?;
            this.members.flush().map_err(sled_err)?;
            old.map(|v| parse_role(&v)).transpose()
        })
        .await
    }

    async fn members(&self, workspace: &str) -> Result<Vec<Member>, IdentityStoreError> {
        let (this, prefix) = (self.clone(), member_key(workspace, ""));
        blocking(move || {
            this.members
                .scan_prefix(&prefix)
                .map(|entry| {
                    let (key, value) = entry.map_err(sled_err)?;
                    Ok(Member {
                        user: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                        role: parse_role(&value)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>, IdentityStoreError> {
        let (this, user) = (self.clone(), user.to_owned());
        blocking(move || {
            // Keyed by workspace first: a full scan, fine for an erasure or
            // a report.
            let mut out = Vec::new();
            for entry in this.members.iter() {
                let (key, value) = entry.map_err(sled_err)?;
                let Some(split) = key.iter().position(|&b| b == 0) else {
                    continue;
                };
                if &key[split + 1..] == user.as_bytes() {
                    let workspace = String::from_utf8_lossy(&key[..split]).into_owned();
                    out.push((workspace, parse_role(&value)?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> Result<bool, IdentityStoreError> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || {
            let old = this.users.remove(id.as_bytes()).map_err(sled_err)?;
            this.users.flush().map_err(sled_err)?;
            Ok(old.is_some())
        })
        .await
    }

    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), IdentityStoreError> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || {
            this.key_hashes
                .insert(key.hash.as_bytes(), key.id.as_bytes())
                .map_err(sled_err)?;
            this.put_key(&key)
        })
        .await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, IdentityStoreError> {
        let (this, hash) = (self.clone(), hash.to_owned());
        blocking(
            move || match this.key_hashes.get(hash.as_bytes()).map_err(sled_err)? {
                Some(id) => this.key(&String::from_utf8_lossy(&id)),
                None => Ok(None),
            },
        )
        .await
    }

    async fn keys(&self) -> Result<Vec<ApiKeyRecord>, IdentityStoreError> {
        let this = self.clone();
        blocking(move || {
            this.keys
                .iter()
                .map(|entry| {
                    let (_, value) = entry.map_err(sled_err)?;
                    serde_json::from_slice(&value).map_err(sled_err)
                })
                .collect()
        })
        .await
    }

    async fn revoke_key(
        &self,
        id: &str,
        at_ms: u64,
    ) -> Result<Option<ApiKeyRecord>, IdentityStoreError> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || {
            let Some(mut key) = this.key(&id)? else {
                return Ok(None);
            };
            let before = key.clone();
            key.revoked_ms.get_or_insert(at_ms);
            this.put_key(&key)?;
            Ok(Some(before))
        })
        .await
    }

    async fn touch_key(&self, id: &str, at_ms: u64) -> Result<(), IdentityStoreError> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || {
            if let Some(mut key) = this.key(&id)? {
                key.last_used_ms = Some(at_ms);
                this.put_key(&key)?;
            }
            Ok(())
        })
        .await
    }
}
