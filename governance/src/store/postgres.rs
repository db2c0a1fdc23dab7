//! Governance data in PostgreSQL, in the same schema as the sync server's
//! document store (see `migrations/` for the tables and how their
//! migrations coexist with the store's).
//!
//! Several nodes may append to one workspace's chain at once. A commit locks
//! the chain heads it extends (`FOR UPDATE`, in workspace order, so two
//! commits never wait on each other in a cycle), links its entries from
//! them and advances them in the same transaction: entries are numbered
//! gap-free and each links to the entry committed before it. Checkpoints
//! take the same lock. A legal hold and a prune of the same workspace take a
//! transaction-scoped advisory lock, so a hold placed while a prune runs
//! waits for it, and a prune that starts after sees the hold.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{
    AuditEntry, AuditPage, AuditQuery, AuditRef, AuditStore, ChainHead, Committed, Cursor,
    LEGAL_HOLD_KEY, PreparedEvent, PruneOutcome, RawEntry, StoreError, link,
};
use crate::audit::{Anchor, AuditEvent, AuditKeys, Checkpoint, Digest};
use crate::lineage::{LineageEdge, LineageStore};

/// Settings of the PostgreSQL store.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The schema of the tables (the sync server's schema); created if
    /// missing. A plain lower-case identifier.
    pub schema: String,
    /// Connections this store keeps: the audit writer uses one at a time;
    /// the rest serve searches, verification and reports.
    pub max_connections: u32,
}

impl std::fmt::Debug for PostgresConfig {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// Longest any single statement or transaction may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

fn backend(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        e => StoreError::Backend(e.to_string()),
    }
}

async fn bounded<T>(
    what: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OPERATION_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "{what} took longer than {OPERATION_TIMEOUT:?}"
            )))
        })
}

/// `u64` in the API, `bigint` here; real values are far below `i64::MAX`.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn digest(row: &PgRow, column: &str) -> Result<Digest, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(backend)?;
    Digest::from_slice(&bytes).ok_or_else(|| StoreError::Corrupt {
        what: format!("column {column}"),
        reason: format!("{} bytes, not 32", bytes.len()),
    })
}

fn is_valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

/// Governance data in PostgreSQL.
pub struct PostgresStore {
    pool: PgPool,
    /// Workspaces known to have a head row (rows are never deleted).
    known_heads: Mutex<HashSet<String>>,
}

impl PostgresStore {
    /// Connects, creates the schema if missing and runs the governance
    /// migrations.
    pub async fn open(config: PostgresConfig) -> Result<Arc<Self>, StoreError> {
        if !is_valid_schema(&config.schema) {
            return Err(StoreError::Backend(format!(
                "invalid schema name {:?}: use 1-63 characters of a-z, 0-9 and _",
                config.schema
            )));
        }
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?
            .application_name("sync-server-governance")
            .options([("search_path", config.schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        let prepared = async {
            // The name is a checked plain identifier, safe to splice in.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", config.schema);
            match sqlx::query(&create).execute(&pool).await {
                Ok(_) => {}
                // Another node created it at the same moment.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
                Err(e) => return Err(backend(e)),
            }
            let mut migrator: Migrator = sqlx::migrate!("./migrations");
            // The sync server's store migrations live in the same table.
            migrator.set_ignore_missing(true);
            migrator
                .run(&pool)
                .await
                .map_err(|e| StoreError::Backend(format!("governance migrations failed: {e}")))
        };
        if let Err(e) = prepared.await {
            pool.close().await;
            return Err(e);
        }
        Ok(Arc::new(Self {
            pool,
            known_heads: Mutex::new(HashSet::new()),
        }))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn commit_tx(&self, events: Vec<PreparedEvent>) -> Result<Committed, StoreError> {
        let mut names: Vec<String> = events.iter().map(|p| p.event.workspace.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let new_names: Vec<String> = {
            let known = self.known_heads.lock().expect("known lock poisoned");
            names
                .iter()
                .filter(|n| !known.contains(*n))
                .cloned()
                .collect()
        };
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !new_names.is_empty() {
            sqlx::query(
                "INSERT INTO governance_audit_heads (workspace, seq, hash)
                 SELECT w, 0, $2 FROM UNNEST($1::text[]) AS t (w) ORDER BY w
                 ON CONFLICT (workspace) DO NOTHING",
            )
            .bind(&new_names)
            .bind(Digest::GENESIS.0.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let rows = sqlx::query(
            "SELECT workspace, seq, hash, checkpoint_seq FROM governance_audit_heads
              WHERE workspace = ANY($1) ORDER BY workspace FOR UPDATE",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut heads = BTreeMap::new();
        let mut checkpoint_seqs = BTreeMap::new();
        for row in &rows {
            let ws: String = row.try_get("workspace").map_err(backend)?;
            let seq = to_u64(row.try_get("seq").map_err(backend)?);
            heads.insert(ws.clone(), (seq, digest(row, "hash")?));
            checkpoint_seqs.insert(ws, to_u64(row.try_get("checkpoint_seq").map_err(backend)?));
        }
        if heads.len() != names.len() {
            return Err(StoreError::Backend("a chain head row is missing".into()));
        }
        let links = link(&events, &mut heads);
        let n = events.len();
        let (mut ws, mut seqs, mut prevs, mut hashes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut texts, mut at_ms, mut kinds, mut actors, mut actions, mut docs, mut outcomes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut refs = Vec::with_capacity(n);
        for (prepared, (seq, prev, hash)) in events.iter().zip(links) {
            let e = &prepared.event;
            ws.push(e.workspace.as_str());
            seqs.push(to_i64(seq));
            prevs.push(prev.0.to_vec());
            hashes.push(hash.0.to_vec());
            texts.push(prepared.canonical.as_str());
            at_ms.push(to_i64(e.at_ms));
            kinds.push(e.actor.kind());
            actors.push(e.actor.id());
            actions.push(e.action.as_str());
            docs.push(e.document.as_deref());
            outcomes.push(e.outcome.kind());
            refs.push(AuditRef {
                workspace: e.workspace.clone(),
                seq,
                hash,
            });
        }
        sqlx::query(
            "INSERT INTO governance_audit_entries
                 (workspace, seq, prev_hash, hash, event, at_ms, actor_kind, actor_id, action,
                  document, outcome)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::text[],
                                  $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[])",
        )
        .bind(&ws)
        .bind(&seqs)
        .bind(&prevs)
        .bind(&hashes)
        .bind(&texts)
        .bind(&at_ms)
        .bind(&kinds)
        .bind(&actors)
        .bind(&actions)
        .bind(&docs)
        .bind(&outcomes)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let head_names: Vec<&str> = heads.keys().map(String::as_str).collect();
        let head_seqs: Vec<i64> = heads.values().map(|(s, _)| to_i64(*s)).collect();
        let head_hashes: Vec<Vec<u8>> = heads.values().map(|(_, h)| h.0.to_vec()).collect();
        sqlx::query(
            "UPDATE governance_audit_heads AS h SET seq = n.seq, hash = n.hash
               FROM UNNEST($1::text[], $2::bigint[], $3::bytea[]) AS n (workspace, seq, hash)
              WHERE h.workspace = n.workspace",
        )
        .bind(&head_names)
        .bind(&head_seqs)
        .bind(&head_hashes)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.known_heads
            .lock()
            .expect("known lock poisoned")
            .extend(new_names);
        let heads = heads
            .into_iter()
            .map(|(workspace, (seq, hash))| ChainHead {
                checkpoint_seq: checkpoint_seqs[&workspace],
                workspace,
                seq,
                hash,
            })
            .collect();
        Ok(Committed { refs, heads })
    }

    async fn checkpoint_tx(
        &self,
        workspace: &str,
        keys: &AuditKeys,
        at_ms: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let Some(row) = sqlx::query(
            "SELECT seq, hash, checkpoint_seq FROM governance_audit_heads
              WHERE workspace = $1 FOR UPDATE",
        )
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        else {
            return Ok(None);
        };
        let seq = to_u64(row.try_get("seq").map_err(backend)?);
        let previous = to_u64(row.try_get("checkpoint_seq").map_err(backend)?);
        if seq == 0 || seq <= previous {
            return Ok(None);
        }
        let checkpoint = keys.checkpoint(workspace, seq, digest(&row, "hash")?, previous, at_ms);
        sqlx::query(
            "INSERT INTO governance_audit_checkpoints
                 (workspace, seq, hash, prev_seq, at_ms, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(workspace)
        .bind(to_i64(seq))
        .bind(checkpoint.hash.0.as_slice())
        .bind(to_i64(previous))
        .bind(to_i64(at_ms))
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.signature)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("UPDATE governance_audit_heads SET checkpoint_seq = $2 WHERE workspace = $1")
            .bind(workspace)
            .bind(to_i64(seq))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(checkpoint))
    }

    async fn prune_tx(&self, anchor: Anchor) -> Result<PruneOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        hold_lock(&mut tx, &anchor.workspace).await?;
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM governance_settings WHERE workspace = $1 AND name = $2)",
        )
        .bind(&anchor.workspace)
        .bind(LEGAL_HOLD_KEY)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if held {
            return Ok(PruneOutcome::Held);
        }
        let through = to_i64(anchor.through_seq);
        let deleted =
            sqlx::query("DELETE FROM governance_audit_entries WHERE workspace = $1 AND seq <= $2")
                .bind(&anchor.workspace)
                .bind(through)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        sqlx::query("DELETE FROM governance_audit_checkpoints WHERE workspace = $1 AND seq <= $2")
            .bind(&anchor.workspace)
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO governance_audit_anchors
                 (workspace, through_seq, hash, at_ms, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (workspace) DO UPDATE SET through_seq = EXCLUDED.through_seq,
                 hash = EXCLUDED.hash, at_ms = EXCLUDED.at_ms, key_id = EXCLUDED.key_id,
                 signature = EXCLUDED.signature",
        )
        .bind(&anchor.workspace)
        .bind(through)
        .bind(anchor.hash.0.as_slice())
        .bind(to_i64(anchor.at_ms))
        .bind(&anchor.key_id)
        .bind(&anchor.signature)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(PruneOutcome::Pruned { entries: deleted })
    }

    async fn search_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = query.page_size();
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT workspace, seq, prev_hash, hash, event, at_ms, actor_kind, actor_id, action,
                    document, outcome
               FROM governance_audit_entries WHERE true",
        );
        if let Some(ws) = &query.workspace {
            sql.push(" AND workspace = ").push_bind(ws.clone());
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND actor_id = ").push_bind(actor.clone());
        }
        if let Some(doc) = &query.document {
            sql.push(" AND document = ").push_bind(doc.clone());
        }
        if !query.actions.is_empty() {
            let names: Vec<&str> = query.actions.iter().map(|a| a.as_str()).collect();
            sql.push(" AND action = ANY(").push_bind(names).push(")");
        }
        if let Some(from) = query.from_ms {
            sql.push(" AND at_ms >= ").push_bind(to_i64(from));
        }
        if let Some(to) = query.to_ms {
            sql.push(" AND at_ms < ").push_bind(to_i64(to));
        }
        if let Some(after) = &query.after {
            sql.push(" AND (at_ms, workspace, seq) > (")
                .push_bind(to_i64(after.at_ms))
                .push(", ")
                .push_bind(after.workspace.clone())
                .push(", ")
                .push_bind(to_i64(after.seq))
                .push(")");
        }
        sql.push(" ORDER BY at_ms, workspace, seq LIMIT ")
            .push_bind(to_i64(limit as u64));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(AuditEntry::from_raw(&raw_entry(row)?)?);
        }
        let next = (entries.len() == limit)
            .then(|| entries.last().map(Cursor::after))
            .flatten();
        Ok(AuditPage { entries, next })
    }
}

/// Serializes a prune and a legal-hold change of `workspace`.
async fn hold_lock(conn: &mut sqlx::PgConnection, workspace: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('governance-hold:' || $1, 0))")
        .bind(workspace)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(backend)
}

/// An entry row as stored, with `index_ok` saying whether the search
/// columns agree with the event text.
fn raw_entry(row: &PgRow) -> Result<RawEntry, StoreError> {
    let mut raw = RawEntry {
        workspace: row.try_get("workspace").map_err(backend)?,
        seq: to_u64(row.try_get("seq").map_err(backend)?),
        prev_hash: digest(row, "prev_hash")?,
        hash: digest(row, "hash")?,
        event_json: row.try_get("event").map_err(backend)?,
        index_ok: true,
    };
    if let Ok(event) = serde_json::from_str::<AuditEvent>(&raw.event_json) {
        let at_ms: i64 = row.try_get("at_ms").map_err(backend)?;
        let kind: String = row.try_get("actor_kind").map_err(backend)?;
        let actor: String = row.try_get("actor_id").map_err(backend)?;
        let action: String = row.try_get("action").map_err(backend)?;
        let document: Option<String> = row.try_get("document").map_err(backend)?;
        let outcome: String = row.try_get("outcome").map_err(backend)?;
        raw.index_ok = to_u64(at_ms) == event.at_ms
            && kind == event.actor.kind()
            && actor == event.actor.id()
            && action == event.action.as_str()
            && document == event.document
            && outcome == event.outcome.kind();
    }
    Ok(raw)
}

#[async_trait]
impl AuditStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn commit(&self, events: Vec<PreparedEvent>) -> Result<Committed, StoreError> {
        bounded("an audit commit", self.commit_tx(events)).await
    }

    async fn checkpoint(
        &self,
        workspace: &str,
        keys: &AuditKeys,
        at_ms: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        bounded("a checkpoint", self.checkpoint_tx(workspace, keys, at_ms)).await
    }

    async fn head(&self, workspace: &str) -> Result<Option<ChainHead>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash, checkpoint_seq FROM governance_audit_heads WHERE workspace = $1",
        )
        .bind(workspace)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| {
            Ok(ChainHead {
                workspace: workspace.to_owned(),
                seq: to_u64(row.try_get("seq").map_err(backend)?),
                hash: digest(&row, "hash")?,
                checkpoint_seq: to_u64(row.try_get("checkpoint_seq").map_err(backend)?),
            })
        })
        .transpose()
    }

    async fn workspaces(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT workspace FROM governance_audit_heads ORDER BY workspace")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn read_chain(
        &self,
        workspace: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT workspace, seq, prev_hash, hash, event, at_ms, actor_kind, actor_id, action,
                    document, outcome
               FROM governance_audit_entries
              WHERE workspace = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(workspace)
        .bind(to_i64(from_seq))
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(raw_entry).collect()
    }

    async fn checkpoints(&self, workspace: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, prev_seq, at_ms, key_id, signature
               FROM governance_audit_checkpoints WHERE workspace = $1 ORDER BY seq",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    workspace: workspace.to_owned(),
                    seq: to_u64(row.try_get("seq").map_err(backend)?),
                    hash: digest(row, "hash")?,
                    prev_seq: to_u64(row.try_get("prev_seq").map_err(backend)?),
                    at_ms: to_u64(row.try_get("at_ms").map_err(backend)?),
                    key_id: row.try_get("key_id").map_err(backend)?,
                    signature: row.try_get("signature").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn anchor(&self, workspace: &str) -> Result<Option<Anchor>, StoreError> {
        let row = sqlx::query(
            "SELECT through_seq, hash, at_ms, key_id, signature
               FROM governance_audit_anchors WHERE workspace = $1",
        )
        .bind(workspace)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| {
            Ok(Anchor {
                workspace: workspace.to_owned(),
                through_seq: to_u64(row.try_get("through_seq").map_err(backend)?),
                hash: digest(&row, "hash")?,
                at_ms: to_u64(row.try_get("at_ms").map_err(backend)?),
                key_id: row.try_get("key_id").map_err(backend)?,
                signature: row.try_get("signature").map_err(backend)?,
            })
        })
        .transpose()
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        bounded("an audit search", self.search_query(query)).await
    }

    async fn prune(&self, anchor: Anchor) -> Result<PruneOutcome, StoreError> {
        bounded("pruning", self.prune_tx(anchor)).await
    }

    async fn settings(&self, workspace: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, value FROM governance_settings WHERE workspace = $1 ORDER BY name",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().collect())
    }

    async fn set_setting(
        &self,
        workspace: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if name == LEGAL_HOLD_KEY {
            hold_lock(&mut tx, workspace).await?;
        }
        match value {
            Some(value) => sqlx::query(
                "INSERT INTO governance_settings (workspace, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace, name) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(workspace)
            .bind(name)
            .bind(value),
            None => {
                sqlx::query("DELETE FROM governance_settings WHERE workspace = $1 AND name = $2")
                    .bind(workspace)
                    .bind(name)
            }
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn configured_workspaces(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT workspace FROM governance_settings ORDER BY workspace")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn check(&self) -> Result<(), StoreError> {
        bounded("a readiness check", async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl LineageStore for PostgresStore {
    async fn record_edge(&self, edge: &LineageEdge) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO governance_lineage_edges (from_node, to_node, edge) VALUES ($1, $2, $3)",
        )
        .bind(edge.from.key())
        .bind(edge.to.key())
        .bind(serde_json::to_string(edge).expect("edges serialize"))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(backend)
    }

    async fn edges_touching(&self, node_key: &str) -> Result<Vec<LineageEdge>, StoreError> {
        let texts: Vec<String> = sqlx::query_scalar(
            "SELECT edge FROM governance_lineage_edges
              WHERE from_node = $1 OR to_node = $1 ORDER BY id",
        )
        .bind(node_key)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| StoreError::Corrupt {
                    what: format!("lineage edge of {node_key}"),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}
