//! A store on PostgreSQL, shared by several server nodes at once.
//!
//! Tables (see `migrations/`): `documents` (one row per document with the
//! next sequence number), `log_entries` (accepted updates), `snapshots` (the
//! latest compacted state) and `schema_compat` (which builds may use the
//! schema). All of them live in one schema, so deployments and tests can
//! share a database and stay apart.
//!
//! Several nodes may append to the same document at once. An append locks
//! the document's row and takes its sequence numbers from the row's counter,
//! so numbers are gap-free and a later number always commits later: whatever
//! a reader sees is a prefix of the log, and compaction can never delete an
//! entry it did not fold.
//!
//! As in the sled store, all appends go through one writer task that owns a
//! connection: it takes every append queued while the previous commit ran and
//! writes them in one transaction, so under load one commit covers many
//! documents. A failed commit fails every append of its batch and writes none.

mod history;
mod writer;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use crdt_core::Encoding;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::writer::Job;
use super::{Appended, DocStore, NewUpdate, Snapshot, StoreError, StoredDoc, StoredUpdate};
use crate::docs::DocName;

/// Settings of the PostgreSQL store.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`.
    pub url: String,
    /// Schema that holds the tables; created if missing. Must be a plain
    /// lower-case identifier (see [`PostgresConfig::is_valid_schema`]).
    pub schema: String,
    /// Wait for the database to flush its write-ahead log before an append
    /// counts as durable (`synchronous_commit`). Off, a database crash can
    /// lose the last commits; a node crash still cannot.
    pub synchronous_commit: bool,
    /// Extra time the writer waits to gather more appends into one commit.
    pub commit_delay: Duration,
    /// Connections of this node: the writer keeps one; loads, compactions
    /// and history writes of documents share the rest. Several nodes share
    /// the database's `max_connections` (100 by default).
    pub pool_size: u32,
}

impl std::fmt::Debug for PostgresConfig {
    // The URL may carry a password; never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("schema", &self.schema)
            .field("synchronous_commit", &self.synchronous_commit)
            .field("commit_delay", &self.commit_delay)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// Whether `name` can be a schema: 1 to 63 characters of `a-z`, `0-9`
    /// and `_`, not starting with a digit. Such a name means the same quoted
    /// or not, and can never inject SQL.
    pub fn is_valid_schema(name: &str) -> bool {
        let mut chars = name.chars();
        matches!(chars.next(), Some('a'..='z' | '_'))
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
            && name.len() <= 63
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PostgresOpenError {
    /// The URL does not parse.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// The schema name is not a plain identifier.
    #[error(
        "invalid database schema {0:?}: use 1-63 characters of a-z, 0-9 and _, not starting with a digit"
    )]
    Schema(String),
    /// The database did not accept a connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// Preparing the schema or migrating it failed.
    #[error("cannot prepare schema {schema:?}: {reason}")]
    Migrate {
        /// The schema.
        schema: String,
        /// What failed.
        reason: String,
    },
    /// The schema was migrated by a newer build that older ones cannot use.
    #[error(
        "schema {schema:?} requires store version {required} or newer (its newest user had store version {latest}); \
         this build has store version {ours}: upgrade this node"
    )]
    Incompatible {
        /// The schema.
        schema: String,
        /// The oldest store version the schema admits.
        required: i32,
        /// The newest store version that has used the schema.
        latest: i32,
        /// This build's store version ([`PostgresStore::VERSION`]).
        ours: i32,
    },
}

impl From<PostgresOpenError> for StoreError {
    fn from(e: PostgresOpenError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The PostgreSQL-backed [`DocStore`].
pub struct PostgresStore {
    /// Connections for loads, compactions, listing and readiness; the writer
    /// holds one of them.
    pool: PgPool,
    /// The writer's queue and task; `None` once closed.
    writer: Mutex<Option<(mpsc::UnboundedSender<Job>, JoinHandle<()>)>>,
}

/// How long an operation waits for a free connection (or a new one).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a readiness check waits for `SELECT 1`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a load, compaction, listing or commit may take. Bounds the wait
/// when the database stops answering without closing the connection.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// `work`, failed after [`OPERATION_TIMEOUT`].
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

fn backend(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        e => StoreError::Backend(e.to_string()),
    }
}

fn encoding_number(encoding: Encoding) -> i16 {
    match encoding {
        Encoding::V1 => 1,
        Encoding::V2 => 2,
    }
}

fn encoding_of(doc: &DocName, number: i16) -> Result<Encoding, StoreError> {
    match number {
        1 => Ok(Encoding::V1),
        2 => Ok(Encoding::V2),
        other => Err(StoreError::Corrupt {
            doc: doc.to_string(),
            reason: format!("unknown update encoding {other}"),
        }),
    }
}

/// Sequence numbers and times are `u64` in the API and `bigint` here; real
/// values are far below `i64::MAX`, and a number read back is never negative
/// (`next_seq` starts at 1).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStore {
    /// The version of the storage contract this build speaks. Raise it with
    /// a migration that changes what nodes may read or write; a migration
    /// older nodes cannot live with also raises
    /// `schema_compat.min_store_version` to it.
    pub const VERSION: i32 = 1;

    /// Connects, creates the schema if missing, refuses a schema this build
    /// is too old for, runs the migrations and starts the writer task.
    pub async fn open(config: PostgresConfig) -> Result<Arc<Self>, PostgresOpenError> {
        let schema = config.schema.clone();
        if !PostgresConfig::is_valid_schema(&schema) {
            return Err(PostgresOpenError::Schema(schema));
        }
        let mut options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| PostgresOpenError::Url(e.to_string()))?
            .application_name("sync-server")
            .options([("search_path", schema.as_str())]);
        if !config.synchronous_commit {
            options = options.options([("synchronous_commit", "off")]);
        }
        // One plain connection first: a refused or unreachable database
        // fails at once with its real cause, where a pool would retry until
        // its timeout and then only say that it timed out.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                PostgresOpenError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}"))
            })?
            .map_err(|e| PostgresOpenError::Connect(e.to_string()))?;
        if let Err(error) = probe.close().await {
            tracing::debug!(%error, "closing the probe connection");
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        if let Err(e) = prepare_schema(&pool, &schema).await {
            pool.close().await;
            return Err(e);
        }
        let (tx, task) = writer::spawn(pool.clone(), config.commit_delay);
        tracing::info!(%schema, version = Self::VERSION, "storing documents in PostgreSQL");
        Ok(Arc::new(Self {
            pool,
            writer: Mutex::new(Some((tx, task))),
        }))
    }

    /// [`DocStore::load`], unbounded.
    async fn read(&self, doc: &DocName, after_seq: u64) -> Result<StoredDoc, StoreError> {
        let rows = sqlx::query(LOAD)
            .bind(doc.as_str())
            .bind(to_i64(after_seq))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut stored = StoredDoc::default();
        for row in rows {
            let is_snapshot: bool = row.try_get(0).map_err(backend)?;
            let seq = to_u64(row.try_get(1).map_err(backend)?);
            let encoding = encoding_of(doc, row.try_get(4).map_err(backend)?)?;
            let bytes: Vec<u8> = row.try_get(5).map_err(backend)?;
            if is_snapshot {
                stored.snapshot = Some(Snapshot {
                    through_seq: seq,
                    encoding,
                    state: bytes,
                });
            } else {
                stored.log.push(StoredUpdate {
                    seq,
                    encoding,
                    update: bytes,
                    origin: row.try_get(3).map_err(backend)?,
                    at_ms: to_u64(row.try_get(2).map_err(backend)?),
                });
            }
        }
        Ok(stored)
    }

    /// [`DocStore::compact`], unbounded.
    async fn replace_prefix(&self, doc: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        let through = to_i64(snapshot.through_seq);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let (doc_id, next_seq) = document_row(&mut tx, doc, through.saturating_add(1)).await?;
        // Every entry below next_seq has committed (appends hold the row
        // lock until they commit), so all of them are visible to the delete
        // below. An entry at or past it may still be on its way: folding
        // through it would delete what the snapshot never saw.
        if through >= next_seq {
            return Err(StoreError::Backend(format!(
                "cannot compact {doc} through entry {through}: its log ends at {}",
                next_seq - 1
            )));
        }
        // Two nodes may compact the same document: the conflict locks the
        // snapshot row, so they take turns, and a snapshot older than the
        // stored one (whose entries are gone) never replaces it.
        let replaced = sqlx::query(
            "INSERT INTO snapshots AS s (doc_id, through_seq, encoding, state)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (doc_id) DO UPDATE
                SET through_seq = EXCLUDED.through_seq, encoding = EXCLUDED.encoding,
                    state = EXCLUDED.state, updated_at = now()
              WHERE s.through_seq < EXCLUDED.through_seq",
        )
        .bind(doc_id)
        .bind(through)
        .bind(encoding_number(snapshot.encoding))
        .bind(&snapshot.state)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if replaced == 1 {
            sqlx::query("DELETE FROM log_entries WHERE doc_id = $1 AND seq <= $2")
                .bind(doc_id)
                .bind(through)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Job>, StoreError> {
        let guard = self.writer.lock().expect("writer lock poisoned");
        guard
            .as_ref()
            .map(|(tx, _)| tx.clone())
            .ok_or(StoreError::Closed)
    }
}

/// The row of `schema_compat`.
struct Compat {
    min: i32,
    latest: i32,
}

impl Compat {
    async fn read(pool: &PgPool) -> Result<Option<Compat>, sqlx::Error> {
        // Resolved through search_path, so only our schema counts.
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_compat') IS NOT NULL")
            .fetch_one(pool)
            .await?;
        if !exists {
            return Ok(None);
        }
        let row = sqlx::query("SELECT min_store_version, latest_store_version FROM schema_compat")
            .fetch_optional(pool)
            .await?;
        row.map(|row| {
            Ok(Compat {
                min: row.try_get(0)?,
                latest: row.try_get(1)?,
            })
        })
        .transpose()
    }

    fn admit(&self, schema: &str) -> Result<(), PostgresOpenError> {
        if PostgresStore::VERSION < self.min {
            return Err(PostgresOpenError::Incompatible {
                schema: schema.to_owned(),
                required: self.min,
                latest: self.latest,
                ours: PostgresStore::VERSION,
            });
        }
        Ok(())
    }
}

/// Creates the schema if missing, checks compatibility, migrates, and
/// checks again (a fresh schema has no `schema_compat` before migrating).
async fn prepare_schema(pool: &PgPool, schema: &str) -> Result<(), PostgresOpenError> {
    let failed = |e: &dyn std::fmt::Display| PostgresOpenError::Migrate {
        schema: schema.to_owned(),
        reason: e.to_string(),
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(pool)
            .await
            .map_err(|e| failed(&e))?;
    if !exists {
        // The name is a checked plain identifier, safe to splice in.
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        let created = sqlx::query(&create).execute(pool).await;
        match created {
            Ok(_) => {}
            // Another node created it at the same moment.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
            Err(e) => return Err(failed(&e)),
        }
    }
    // Refuse before touching anything when a newer build closed the door.
    if let Some(compat) = Compat::read(pool).await.map_err(|e| failed(&e))? {
        compat.admit(schema)?;
    }
    let mut migrator: Migrator = sqlx::migrate!("./migrations");
    // A newer node may have applied migrations this build does not know;
    // they are additive, so this build keeps working beside them.
    migrator.set_ignore_missing(true);
    // Runs under an advisory lock, so nodes starting together take turns.
    migrator.run(pool).await.map_err(|e| failed(&e))?;
    let compat = Compat::read(pool)
        .await
        .map_err(|e| failed(&e))?
        .ok_or_else(|| failed(&"schema_compat has no row"))?;
    compat.admit(schema)?;
    sqlx::query(
        "UPDATE schema_compat SET latest_store_version = $1 WHERE latest_store_version < $1",
    )
    .bind(PostgresStore::VERSION)
    .execute(pool)
    .await
    .map_err(|e| failed(&e))?;
    Ok(())
}

/// Reads a document's snapshot and the log entries after it in one
/// statement, so one database snapshot covers both: a compaction committing
/// in between can never leave the old snapshot beside a trimmed log.
/// The snapshot (if it folds in entries after `$2`) and the entries after
/// both, in one statement so a compaction cannot fall between them. `$2` is
/// 0 for a whole load.
const LOAD: &str = "
WITH doc AS (SELECT id FROM documents WHERE name = $1),
     snap AS (SELECT through_seq, encoding, state FROM snapshots
              WHERE doc_id = (SELECT id FROM doc))
SELECT true AS is_snapshot, through_seq AS seq, 0::bigint AS at_ms, ''::text AS origin,
       encoding, state AS bytes
  FROM snap
 WHERE through_seq > $2
UNION ALL
SELECT false, l.seq, l.at_ms, l.origin, l.encoding, l.update_bytes
  FROM log_entries AS l
 WHERE l.doc_id = (SELECT id FROM doc)
   AND l.seq > GREATEST(COALESCE((SELECT through_seq FROM snap), 0), $2)
ORDER BY is_snapshot DESC, seq";

#[async_trait]
impl DocStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        bounded("loading", self.read(doc, 0)).await
    }

    async fn load_since(&self, doc: &DocName, after_seq: u64) -> Result<StoredDoc, StoreError> {
        bounded("loading", self.read(doc, after_seq)).await
    }

    async fn append(&self, doc: &DocName, updates: Vec<NewUpdate>) -> Result<Appended, StoreError> {
        if updates.is_empty() {
            return Err(StoreError::Backend(
                "an append needs at least one update".into(),
            ));
        }
        let (ack, done) = oneshot::channel();
        self.sender()?
            .send(Job {
                doc: doc.clone(),
                updates,
                ack,
            })
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    async fn compact(&self, doc: &DocName, snapshot: Snapshot) -> Result<(), StoreError> {
        bounded("compaction", self.replace_prefix(doc, snapshot)).await
    }

    async fn list(&self) -> Result<Vec<DocName>, StoreError> {
        let names: Vec<String> = bounded("listing", async {
            sqlx::query_scalar("SELECT name FROM documents ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)
        })
        .await?;
        Ok(names
            .iter()
            .filter_map(|n| DocName::parse(n).ok())
            .collect())
    }

    async fn check(&self) -> Result<(), StoreError> {
        {
            let guard = self.writer.lock().expect("writer lock poisoned");
            match guard.as_ref() {
                Some((_, task)) if !task.is_finished() => {}
                Some(_) => return Err(StoreError::Backend("writer task stopped".into())),
                None => return Err(StoreError::Closed),
            }
        }
        match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool)).await
        {
            Ok(result) => result.map(|_| ()).map_err(backend),
            Err(_) => Err(StoreError::Backend(format!(
                "database did not answer within {CHECK_TIMEOUT:?}"
            ))),
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        let writer = self.writer.lock().expect("writer lock poisoned").take();
        if let Some((tx, task)) = writer {
            // Dropping the sender lets the writer finish queued commits and exit.
            drop(tx);
            task.await
                .map_err(|e| StoreError::Backend(format!("writer task failed: {e}")))?;
        }
        self.pool.close().await;
        Ok(())
    }
}

/// The id and next sequence number of `doc`, creating its row (numbering
/// from `next_seq_if_new`) when it has none.
async fn document_row(
    conn: &mut PgConnection,
    doc: &DocName,
    next_seq_if_new: i64,
) -> Result<(i64, i64), StoreError> {
    let select = "SELECT id, next_seq FROM documents WHERE name = $1";
    if let Some(row) = sqlx::query_as(select)
        .bind(doc.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
    {
        return Ok(row);
    }
    let inserted = sqlx::query_as(
        "INSERT INTO documents (name, next_seq) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING RETURNING id, next_seq",
    )
    .bind(doc.as_str())
    .bind(next_seq_if_new)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    match inserted {
        Some(row) => Ok(row),
        // Created by someone else since the select; visible now.
        None => sqlx::query_as(select)
            .bind(doc.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(backend),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["public", "t_1", "_x", &"a".repeat(63)] {
            assert!(PostgresConfig::is_valid_schema(good), "{good}");
        }
        for bad in ["", "1x", "Public", "a-b", "a\"b", "a;drop", &"a".repeat(64)] {
            assert!(!PostgresConfig::is_valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn opening_can_run_on_any_runtime_thread() {
        // `run` and `open_store` are spawned by hosts and tests; sqlx
        // futures over `&mut PgConnection` can lose `Send` by accident.
        fn assert_send<T: Send>(_: &T) {}
        let config = PostgresConfig {
            url: "postgres://localhost/x".into(),
            schema: "public".into(),
            synchronous_commit: true,
            commit_delay: Duration::ZERO,
            pool_size: 8,
        };
        assert_send(&PostgresStore::open(config));
    }

    #[test]
    fn the_url_is_not_printed() {
        let config = PostgresConfig {
            url: "postgres://u:hunter2@db/x".into(),
            schema: "public".into(),
            synchronous_commit: true,
            commit_delay: Duration::ZERO,
            pool_size: 8,
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
