//! What the server knows about users, for compliance reports: their
//! account as the identity store recorded it at first sign-in, the
//! documents they wrote and the text still attributed to them, from the
//! history store's attribution.

use std::sync::Arc;

use async_trait::async_trait;
use crdt_core::Encoding;
use governance::compliance::{
    AttributedPart, AuthoredDocument, ComplianceSource, RoleChange, SourceError, UserAccount,
};

use crate::auth::store::IdentityStore;
use crate::docs::DocName;
use crate::history::Authors;
use crate::store::DocStore;

/// Reads the document and identity stores for reports.
pub struct ServerSource {
    store: Arc<dyn DocStore>,
    identity: Arc<dyn IdentityStore>,
    limits: crdt_core::Limits,
}

impl ServerSource {
    /// A source over `store` and `identity`.
    pub fn new(
        store: Arc<dyn DocStore>,
        identity: Arc<dyn IdentityStore>,
        limits: crdt_core::Limits,
    ) -> Self {
        Self {
            store,
            identity,
            limits,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

#[async_trait]
impl ComplianceSource for ServerSource {
    async fn account(&self, user: &str) -> Result<Option<UserAccount>, SourceError> {
        // What the identity provider holds stays there; the server keeps
        // the name seen at sign-in and when it first saw the user. A user
        // known only from stored content (an anonymous connection) has an
        // account of its id alone.
        let record = self.identity.user(user).await.map_err(failed)?;
        Ok(Some(UserAccount {
            id: user.to_owned(),
            display_name: record.as_ref().and_then(|r| r.name.clone()),
            created_at_ms: record.map(|r| r.first_seen_ms),
            ..UserAccount::default()
        }))
    }

    async fn role_changes(
        &self,
        _workspace: Option<&str>,
        _user: Option<&str>,
    ) -> Result<Vec<RoleChange>, SourceError> {
        // Role changes are audited (`role.grant`, `role.revoke`); the access
        // review reads them from the trail.
        Ok(Vec::new())
    }

    async fn current_roles(
        &self,
        user: &str,
    ) -> Result<std::collections::BTreeMap<String, governance::policy::Role>, SourceError> {
        // Explicit memberships; roles from group rules follow the identity
        // provider's groups and are not stored here.
        let memberships = self.identity.memberships(user).await.map_err(failed)?;
        Ok(memberships.into_iter().collect())
    }

    async fn authored_documents(&self, user: &str) -> Result<Vec<AuthoredDocument>, SourceError> {
        let mut out = Vec::new();
        for doc in self.store.list().await.map_err(failed)? {
            let buckets = self.store.attribution(&doc).await.map_err(failed)?;
            let mine: Vec<_> = buckets.iter().filter(|b| b.origin == user).collect();
            if mine.is_empty() {
                continue;
            }
            let minute_ms = 60_000;
            out.push(AuthoredDocument {
                workspace: doc.workspace().to_owned(),
                document: doc.as_str().to_owned(),
                updates: mine.iter().map(|b| b.updates).sum(),
                bytes: mine.iter().map(|b| b.bytes).sum(),
                first_at_ms: mine.iter().map(|b| b.minute * minute_ms).min().unwrap_or(0),
                last_at_ms: mine
                    .iter()
                    .map(|b| b.minute * minute_ms + minute_ms - 1)
                    .max()
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn attributed_parts(
        &self,
        user: &str,
        document: &str,
    ) -> Result<Vec<AttributedPart>, SourceError> {
        let doc = DocName::parse(document).map_err(failed)?;
        let buckets = self.store.attribution(&doc).await.map_err(failed)?;
        let stored = self.store.load(&doc).await.map_err(failed)?;
        let limits = self.limits.clone();
        let user = user.to_owned();
        let last_ms = buckets
            .iter()
            .filter(|b| b.origin == user)
            .map(|b| b.minute * 60_000)
            .max()
            .unwrap_or(0);
        tokio::task::spawn_blocking(move || {
            let (snapshot, log) = stored.parts();
            let current = crdt_core::Document::load(limits.clone(), snapshot, log)
                .map_err(failed)?
                .encode_state(Encoding::V2);
            let empty = crdt_core::Document::new(limits.clone()).encode_state(Encoding::V2);
            let diff =
                crdt_core::version::diff(&limits, (Encoding::V2, &empty), (Encoding::V2, &current))
                    .map_err(failed)?;
            let roots = serde_json::to_value(&diff.roots).map_err(failed)?;
            let authors = Authors::from_buckets(&buckets);
            let mut parts = Vec::new();
            for (root, value) in roots.as_object().into_iter().flatten() {
                let mut offset = 0usize;
                for run in value["runs"].as_array().into_iter().flatten() {
                    let text = run["text"].as_str().unwrap_or_default();
                    let chars = text.chars().count();
                    let writer = run["client"].as_u64().and_then(|c| authors.writer(c));
                    if writer == Some(user.as_str()) {
                        parts.push(AttributedPart {
                            location: format!("text:{root}[{offset}..{}]", offset + chars),
                            content: Some(text.to_owned()),
                            at_ms: last_ms,
                        });
                    }
                    if run["change"] != "deleted" {
                        offset += chars;
                    }
                }
            }
            Ok(parts)
        })
        .await
        .map_err(failed)?
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::store::{SledIdentityStore, UserRecord};
    use crate::store::{SledConfig, SledStore};

    #[tokio::test]
    async fn the_account_comes_from_the_identity_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(SledConfig {
            path: dir.path().join("docs"),
            cache_bytes: 1 << 20,
            fsync: false,
            commit_delay: Duration::ZERO,
        })
        .unwrap();
        let identity = SledIdentityStore::open(&dir.path().join("auth")).unwrap();
        identity
            .provision(&UserRecord {
                id: "ldap|uid=alice".into(),
                name: Some("Alice Liddell".into()),
                first_seen_ms: 1_700_000_000_000,
            })
            .await
            .unwrap();
        let identity: Arc<dyn IdentityStore> = Arc::new(identity);
        let source = ServerSource::new(store, identity, crdt_core::Limits::default());

        let alice = source.account("ldap|uid=alice").await.unwrap().unwrap();
        assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
        assert_eq!(alice.created_at_ms, Some(1_700_000_000_000));
        // Known only from content (an anonymous connection): its id alone.
        let anonymous = source.account("conn:7").await.unwrap().unwrap();
        assert_eq!(anonymous.id, "conn:7");
        assert_eq!(anonymous.display_name, None);
    }
}
