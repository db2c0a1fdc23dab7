//! The writer task: group commit of appends for the PostgreSQL store.
//!
//! It takes every append queued while the previous commit ran and writes
//! them in one transaction: it locks the batch's document rows in name
//! order, numbers the entries from each row's `next_seq`, and inserts them
//! all with one multi-row statement. A failed commit fails every append of
//! its batch and writes none of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crdt_core::Encoding;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{OPERATION_TIMEOUT, backend, encoding_number, to_i64};
use crate::docs::DocName;
use crate::store::{Appended, NewUpdate, StoreError};

/// One append, waiting for the commit that covers it.
pub(super) struct Job {
    pub(super) doc: DocName,
    pub(super) updates: Vec<NewUpdate>,
    pub(super) ack: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Most appends folded into one commit, and most update bytes: bounds the
/// batch's memory and the transaction's size.
const MAX_JOBS_PER_COMMIT: usize = 4096;
const MAX_BYTES_PER_COMMIT: usize = 64 << 20;
/// Names the writer knows have a row; cleared when it grows past this.
const MAX_KNOWN_DOCS: usize = 100_000;

/// Starts the writer on `pool`. It commits until every sender is dropped,
/// then finishes the queued appends and exits.
pub(super) fn spawn(
    pool: PgPool,
    commit_delay: Duration,
) -> (mpsc::UnboundedSender<Job>, JoinHandle<()>) {
    // Unbounded, as in the sled store: each document task has at most one
    // append in flight, so the queue is bounded by the documents loaded.
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer {
        pool,
        conn: None,
        commit_delay,
        known: HashSet::new(),
    };
    (tx, tokio::spawn(writer.run(rx)))
}

/// The single task that commits appends.
struct Writer {
    pool: PgPool,
    /// The connection commits run on; `None` until first needed and after
    /// a failure, so a broken connection is never reused.
    conn: Option<PoolConnection<Postgres>>,
    commit_delay: Duration,
    /// Documents known to have a row (rows are never deleted): appends to
    /// them skip the insert.
    known: HashSet<String>,
}

/// A batch of jobs as rows to write.
struct Plan<'a> {
    /// Every document of the batch, sorted: rows are locked in this order by
    /// every node, so two group commits never wait on each other in a cycle.
    names: Vec<&'a str>,
    /// The documents without a known row.
    new_names: Vec<&'a str>,
    /// Entries per document, in append order.
    entries: BTreeMap<&'a str, Vec<&'a NewUpdate>>,
}

impl<'a> Plan<'a> {
    fn new(jobs: &'a [Job], known: &HashSet<String>) -> Self {
        let mut entries: BTreeMap<&str, Vec<&NewUpdate>> = BTreeMap::new();
        for job in jobs {
            entries
                .entry(job.doc.as_str())
                .or_default()
                .extend(job.updates.iter());
        }
        let names: Vec<&str> = entries.keys().copied().collect();
        let new_names = names
            .iter()
            .copied()
            .filter(|name| !known.contains(*name))
            .collect();
        Plan {
            names,
            new_names,
            entries,
        }
    }
}

impl Writer {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = jobs.recv().await {
            if !self.commit_delay.is_zero() {
                tokio::time::sleep(self.commit_delay).await;
            }
            let mut bytes = job_bytes(&first);
            let mut batch = vec![first];
            while batch.len() < MAX_JOBS_PER_COMMIT && bytes < MAX_BYTES_PER_COMMIT {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job_bytes(&job);
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&batch).await {
                Ok(mut first_seqs) => {
                    for job in batch {
                        // Jobs of one document follow each other in the log,
                        // in batch order.
                        let first = first_seqs
                            .get_mut(job.doc.as_str())
                            .expect("every document numbered");
                        let range = Appended {
                            first_seq: *first,
                            last_seq: *first + job.updates.len() as u64 - 1,
                        };
                        *first += job.updates.len() as u64;
                        // A caller that gave up waiting no longer needs the answer.
                        let _ignored = job.ack.send(Ok(range));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, appends = batch.len(), "PostgreSQL commit failed");
                    for job in batch {
                        let _ignored = job.ack.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Commits `jobs`; returns the first sequence number each document got.
    async fn commit(&mut self, jobs: &[Job]) -> Result<HashMap<String, u64>, StoreError> {
        let plan = Plan::new(jobs, &self.known);
        let mut held = self.conn.take();
        loop {
            let was_held = held.is_some();
            let mut conn = match held.take() {
                Some(conn) => conn,
                None => self.pool.acquire().await.map_err(backend)?,
            };
            let written = tokio::time::timeout(OPERATION_TIMEOUT, write(&mut conn, &plan))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::Write(StoreError::Backend(format!(
                        "commit took longer than {OPERATION_TIMEOUT:?}"
                    ))))
                });
            match written {
                Ok(first_seqs) => {
                    self.conn = Some(conn);
                    if self.known.len() + plan.new_names.len() > MAX_KNOWN_DOCS {
                        self.known.clear();
                    }
                    self.known
                        .extend(plan.new_names.iter().map(|name| (*name).to_owned()));
                    return Ok(first_seqs);
                }
                Err(failure) => {
                    // Never reuse a connection a commit failed on.
                    conn.close_on_drop();
                    drop(conn);
                    match failure {
                        // BEGIN failed, so nothing was sent: a connection
                        // that went stale while idle gets one retry on a
                        // fresh one.
                        Failure::Begin(_) if was_held => continue,
                        failure => return Err(failure.into_error()),
                    }
                }
            }
        }
    }
}

/// Why a commit failed, and whether anything reached the database.
enum Failure {
    /// The transaction never started.
    Begin(sqlx::Error),
    /// The transaction started and was rolled back (or its fate is unknown
    /// because the connection broke during COMMIT).
    Write(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Begin(e) => backend(e),
            Failure::Write(e) => e,
        }
    }
}

fn job_bytes(job: &Job) -> usize {
    job.updates.iter().map(|u| u.update.len()).sum()
}

/// Writes one batch in one transaction; returns each document's first new
/// sequence number.
async fn write(conn: &mut PgConnection, plan: &Plan<'_>) -> Result<HashMap<String, u64>, Failure> {
    let mut tx = conn.begin().await.map_err(Failure::Begin)?;
    let fail = |e: sqlx::Error| Failure::Write(backend(e));
    if !plan.new_names.is_empty() {
        // Sorted too: a node creating a row another node is creating waits
        // for it, in the same order everyone locks in.
        sqlx::query(
            "INSERT INTO documents (name)
             SELECT name FROM UNNEST($1::text[]) AS t (name) ORDER BY name
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&plan.new_names)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
    // FOR NO KEY UPDATE is the lock the UPDATE below takes anyway: it keeps
    // out every other appender of these documents until we commit, but not
    // a compaction's foreign-key check.
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, name, next_seq FROM documents WHERE name = ANY($1)
         ORDER BY name FOR NO KEY UPDATE",
    )
    .bind(&plan.names)
    .fetch_all(&mut *tx)
    .await
    .map_err(fail)?;
    if rows.len() != plan.names.len() {
        return Err(Failure::Write(StoreError::Backend(format!(
            "{} of {} document rows missing",
            plan.names.len() - rows.len(),
            plan.names.len()
        ))));
    }
    let total: usize = plan.entries.values().map(Vec::len).sum();
    let mut doc_ids = Vec::with_capacity(total);
    let mut seqs = Vec::with_capacity(total);
    let mut at_ms = Vec::with_capacity(total);
    let mut origins = Vec::with_capacity(total);
    let mut encodings = Vec::with_capacity(total);
    let mut updates: Vec<&[u8]> = Vec::with_capacity(total);
    let mut advanced_ids = Vec::with_capacity(rows.len());
    let mut advanced_to = Vec::with_capacity(rows.len());
    let mut first_seqs = HashMap::with_capacity(rows.len());
    for (id, name, next_seq) in rows {
        let mut seq = next_seq;
        first_seqs.insert(name.clone(), next_seq.max(0) as u64);
        for update in plan.entries.get(name.as_str()).into_iter().flatten() {
            doc_ids.push(id);
            seqs.push(seq);
            at_ms.push(to_i64(update.at_ms));
            // PostgreSQL text cannot hold NUL; origins are ids and never
            // should, but one must not fail a whole batch.
            origins.push(update.origin.replace('\0', "\u{fffd}"));
            encodings.push(encoding_number(Encoding::V1));
            updates.push(&update.update);
            seq += 1;
        }
        advanced_ids.push(id);
        advanced_to.push(seq);
    }
    sqlx::query(
        "WITH advanced AS (
             UPDATE documents AS d SET next_seq = a.next_seq
               FROM UNNEST($1::bigint[], $2::bigint[]) AS a (id, next_seq)
              WHERE d.id = a.id
         )
         INSERT INTO log_entries (doc_id, seq, at_ms, origin, encoding, update_bytes)
         SELECT * FROM UNNEST($3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                              $7::smallint[], $8::bytea[])",
    )
    .bind(&advanced_ids)
    .bind(&advanced_to)
    .bind(&doc_ids)
    .bind(&seqs)
    .bind(&at_ms)
    .bind(&origins)
    .bind(&encodings)
    .bind(&updates)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(first_seqs)
}
