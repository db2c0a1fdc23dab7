//! What the server knows about users, for compliance reports: the
//! documents they wrote and the text still attributed to them, from the
//! history store's attribution.

use std::sync::Arc;

use async_trait::async_trait;
use crdt_core::Encoding;
use governance::compliance::{
    AttributedPart, AuthoredDocument, ComplianceSource, RoleChange, SourceError, UserAccount,
};
use serde_json::Value;

use crate::docs::DocName;
use crate::history::Authors;
use crate::store::DocStore;

/// Reads the document store for reports.
pub struct ServerSource {
    store: Arc<dyn DocStore>,
    limits: crdt_core::Limits,
}

impl ServerSource {
    /// A source over `store`.
    pub fn new(store: Arc<dyn DocStore>, limits: crdt_core::Limits) -> Self {
        Self { store, limits }
    }
}

fn failed(e: impl std::fmt::Display) -> SourceError {
    SourceError(e.to_string())
}

#[async_trait]
impl ComplianceSource for ServerSource {
    async fn account(&self, user: &str) -> Result<Option<UserAccount>, SourceError> {
        // Accounts live with the identity provider; the server knows a user
        // by the id it signed in with.
        Ok(Some(UserAccount {
            id: user.to_owned(),
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
                    if run["change"] != Value::from("deleted") {
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
