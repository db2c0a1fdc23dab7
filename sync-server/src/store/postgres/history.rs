//! History in the PostgreSQL store (tables from `0002_history.sql`).

use async_trait::async_trait;
use sqlx::Row;
use yrs::IdSet;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::{PostgresStore, backend, bounded, to_i64, to_u64};
use crate::docs::DocName;
use crate::history::{
    ActivityEvent, ActivityKind, Bucket, HistoryStore, NewActivity, NewVersion, VersionKind,
    VersionMeta, workspace_of,
};
use crate::store::StoreError;

/// The document's row id, created if missing (a version or attribution can
/// come before the row would otherwise exist only in odd orders, never
/// after it is gone: rows are never deleted).
const DOC_ID: &str = "WITH ins AS (
    INSERT INTO documents (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id
) SELECT id FROM ins UNION ALL SELECT id FROM documents WHERE name = $1 LIMIT 1";

fn kind_name(kind: VersionKind) -> &'static str {
    match kind {
        VersionKind::Auto => "auto",
        VersionKind::Named => "named",
        VersionKind::Restore => "restore",
    }
}

fn kind_of(name: &str) -> VersionKind {
    match name {
        "named" => VersionKind::Named,
        "restore" => VersionKind::Restore,
        _ => VersionKind::Auto,
    }
}

fn meta(row: &sqlx::postgres::PgRow) -> Result<VersionMeta, StoreError> {
    Ok(VersionMeta {
        id: to_u64(row.try_get("id").map_err(backend)?),
        kind: kind_of(row.try_get::<&str, _>("kind").map_err(backend)?),
        label: row.try_get("label").map_err(backend)?,
        description: row.try_get("description").map_err(backend)?,
        author: row.try_get("author").map_err(backend)?,
        created_ms: to_u64(row.try_get("created_ms").map_err(backend)?),
        seq: to_u64(row.try_get("seq").map_err(backend)?),
        size: to_u64(row.try_get("size").map_err(backend)?) as usize,
    })
}

const META_COLUMNS: &str = "v.id, v.kind, v.label, v.description, v.author, v.created_ms, v.seq, length(v.state)::bigint AS size";

fn corrupt(doc: &DocName, what: &str) -> StoreError {
    StoreError::Corrupt {
        doc: doc.to_string(),
        reason: what.to_owned(),
    }
}

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn add_version(
        &self,
        doc: &DocName,
        version: NewVersion,
    ) -> Result<VersionMeta, StoreError> {
        bounded("storing a version", async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let doc_id: i64 = sqlx::query_scalar(DOC_ID)
                .bind(doc.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO versions (doc_id, kind, label, description, author, created_ms, seq, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(doc_id)
            .bind(kind_name(version.kind))
            .bind(&version.label)
            .bind(&version.description)
            .bind(&version.author)
            .bind(to_i64(version.created_ms))
            .bind(to_i64(version.seq))
            .bind(&version.state)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(VersionMeta {
                id: to_u64(id),
                kind: version.kind,
                label: version.label,
                description: version.description,
                author: version.author,
                created_ms: version.created_ms,
                seq: version.seq,
                size: version.state.len(),
            })
        })
        .await
    }

    async fn versions(&self, doc: &DocName) -> Result<Vec<VersionMeta>, StoreError> {
        bounded("listing versions", async {
            let rows = sqlx::query(&format!(
                "SELECT {META_COLUMNS} FROM versions v JOIN documents d ON d.id = v.doc_id
                  WHERE d.name = $1 ORDER BY v.id"
            ))
            .bind(doc.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter().map(meta).collect()
        })
        .await
    }

    async fn version(
        &self,
        doc: &DocName,
        id: u64,
    ) -> Result<Option<(VersionMeta, Vec<u8>)>, StoreError> {
        bounded("reading a version", async {
            let row = sqlx::query(&format!(
                "SELECT {META_COLUMNS}, v.state FROM versions v JOIN documents d ON d.id = v.doc_id
                  WHERE d.name = $1 AND v.id = $2"
            ))
            .bind(doc.as_str())
            .bind(to_i64(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            match row {
                Some(row) => Ok(Some((meta(&row)?, row.try_get("state").map_err(backend)?))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete_versions(&self, doc: &DocName, ids: &[u64]) -> Result<usize, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|&i| to_i64(i)).collect();
        bounded("deleting versions", async {
            let done = sqlx::query(
                "DELETE FROM versions v USING documents d
                  WHERE d.id = v.doc_id AND d.name = $1 AND v.id = ANY($2)",
            )
            .bind(doc.as_str())
            .bind(&ids)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() as usize)
        })
        .await
    }

    async fn add_attribution(&self, doc: &DocName, buckets: Vec<Bucket>) -> Result<(), StoreError> {
        if buckets.is_empty() {
            return Ok(());
        }
        bounded("storing attribution", async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let doc_id: i64 = sqlx::query_scalar(DOC_ID)
                .bind(doc.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            let minutes: Vec<i64> = buckets.iter().map(|b| to_i64(b.minute)).collect();
            let origins: Vec<&str> = buckets.iter().map(|b| b.origin.as_str()).collect();
            let updates: Vec<i64> = buckets.iter().map(|b| to_i64(b.updates)).collect();
            let bytes: Vec<i64> = buckets.iter().map(|b| to_i64(b.bytes)).collect();
            let inserted: Vec<Vec<u8>> = buckets.iter().map(|b| b.inserted.encode_v1()).collect();
            let deleted: Vec<Vec<u8>> = buckets.iter().map(|b| b.deleted.encode_v1()).collect();
            sqlx::query(
                "INSERT INTO attribution (doc_id, minute, origin, updates, bytes, inserted, deleted)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                                          $6::bytea[], $7::bytea[])",
            )
            .bind(doc_id)
            .bind(&minutes)
            .bind(&origins)
            .bind(&updates)
            .bind(&bytes)
            .bind(&inserted)
            .bind(&deleted)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn attribution(&self, doc: &DocName) -> Result<Vec<Bucket>, StoreError> {
        bounded("reading attribution", async {
            let rows = sqlx::query(
                "SELECT a.minute, a.origin, a.updates, a.bytes, a.inserted, a.deleted
                   FROM attribution a JOIN documents d ON d.id = a.doc_id
                  WHERE d.name = $1 ORDER BY a.minute",
            )
            .bind(doc.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let inserted: Vec<u8> = row.try_get("inserted").map_err(backend)?;
                    let deleted: Vec<u8> = row.try_get("deleted").map_err(backend)?;
                    Ok(Bucket {
                        minute: to_u64(row.try_get("minute").map_err(backend)?),
                        origin: row.try_get("origin").map_err(backend)?,
                        updates: to_u64(row.try_get("updates").map_err(backend)?),
                        bytes: to_u64(row.try_get("bytes").map_err(backend)?),
                        inserted: IdSet::decode_v1(&inserted)
                            .map_err(|_| corrupt(doc, "bad attribution row"))?,
                        deleted: IdSet::decode_v1(&deleted)
                            .map_err(|_| corrupt(doc, "bad attribution row"))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn delete_attribution_before(
        &self,
        doc: &DocName,
        minute: u64,
    ) -> Result<usize, StoreError> {
        bounded("deleting attribution", async {
            let done = sqlx::query(
                "DELETE FROM attribution a USING documents d
                  WHERE d.id = a.doc_id AND d.name = $1 AND a.minute < $2",
            )
            .bind(doc.as_str())
            .bind(to_i64(minute))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() as usize)
        })
        .await
    }

    async fn add_activity(
        &self,
        events: Vec<NewActivity>,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        bounded("storing activity", async {
            let mut stored = Vec::with_capacity(events.len());
            let mut tx = self.pool.begin().await.map_err(backend)?;
            for event in events {
                let workspace = workspace_of(&event.document).to_owned();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO activity (workspace, document, actor, at_ms, event)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(&workspace)
                .bind(&event.document)
                .bind(&event.actor)
                .bind(to_i64(event.at_ms))
                .bind(
                    serde_json::to_value(&event.kind)
                        .map_err(|e| StoreError::Backend(e.to_string()))?,
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                stored.push(ActivityEvent {
                    id: to_u64(id),
                    workspace,
                    event,
                });
            }
            tx.commit().await.map_err(backend)?;
            Ok(stored)
        })
        .await
    }

    async fn activity(
        &self,
        workspace: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        bounded("reading activity", async {
            let rows = sqlx::query(
                "SELECT id, document, actor, at_ms, event FROM activity
                  WHERE workspace = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(workspace)
            .bind(to_i64(before.unwrap_or(i64::MAX as u64)))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let kind: ActivityKind =
                        serde_json::from_value(row.try_get("event").map_err(backend)?)
                            .map_err(|e| StoreError::Backend(e.to_string()))?;
                    Ok(ActivityEvent {
                        id: to_u64(row.try_get("id").map_err(backend)?),
                        workspace: workspace.to_owned(),
                        event: NewActivity {
                            document: row.try_get("document").map_err(backend)?,
                            actor: row.try_get("actor").map_err(backend)?,
                            at_ms: to_u64(row.try_get("at_ms").map_err(backend)?),
                            kind,
                        },
                    })
                })
                .collect()
        })
        .await
    }

    async fn delete_activity_before(
        &self,
        workspace: &str,
        at_ms: u64,
    ) -> Result<usize, StoreError> {
        bounded("deleting activity", async {
            let done = sqlx::query("DELETE FROM activity WHERE workspace = $1 AND at_ms < $2")
                .bind(workspace)
                .bind(to_i64(at_ms))
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(done.rows_affected() as usize)
        })
        .await
    }

    async fn replace_version_state(
        &self,
        doc: &DocName,
        id: u64,
        state: Vec<u8>,
    ) -> Result<bool, StoreError> {
        bounded("replacing a version's state", async {
            let done = sqlx::query(
                "UPDATE versions v SET state = $3 FROM documents d
                  WHERE d.id = v.doc_id AND d.name = $1 AND v.id = $2",
            )
            .bind(doc.as_str())
            .bind(to_i64(id))
            .bind(state)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn rename_author(
        &self,
        doc: &DocName,
        from: &str,
        to: &str,
    ) -> Result<usize, StoreError> {
        bounded("renaming an author", async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let mut changed = 0;
            for statement in [
                "UPDATE attribution a SET origin = $3 FROM documents d
                  WHERE d.id = a.doc_id AND d.name = $1 AND a.origin = $2",
                "UPDATE versions v SET author = $3 FROM documents d
                  WHERE d.id = v.doc_id AND d.name = $1 AND v.author = $2",
            ] {
                let done = sqlx::query(statement)
                    .bind(doc.as_str())
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                changed += done.rows_affected() as usize;
            }
            tx.commit().await.map_err(backend)?;
            Ok(changed)
        })
        .await
    }

    async fn rename_actor(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
    ) -> Result<usize, StoreError> {
        bounded("renaming an actor", async {
            let done =
                sqlx::query("UPDATE activity SET actor = $3 WHERE workspace = $1 AND actor = $2")
                    .bind(workspace)
                    .bind(from)
                    .bind(to)
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?;
            Ok(done.rows_affected() as usize)
        })
        .await
    }
}
