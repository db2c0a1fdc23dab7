//! The audit trail: append-only, hash-chained per workspace, signed at
//! checkpoints, verifiable, searchable and exportable.
//!
//! # Write path
//!
//! [`AuditLog::append_batch`] computes each event's canonical encoding on
//! the caller's task, queues the batch for the writer task (a bounded
//! queue: when it is full the caller waits, up to `append_timeout`, which
//! is backpressure rather than unbounded memory) and waits for the commit
//! that covers it. The writer folds every queued batch into one commit of
//! the store (one sled batch and fsync, or one PostgreSQL transaction), so
//! thousands of appends per second cost a few commits per second.
//!
//! # "An operation whose audit write fails is refused"
//!
//! The server treats the audit append as part of the operation's
//! durability: it appends the entry first and performs the operation only
//! once `append_batch` returned `Ok`; an `Err` refuses the operation (a
//! 503 over HTTP, a refused update over WebSocket, which the client
//! resends after reconnecting). For document updates the document task
//! appends the audit entries of a coalesced batch, then the updates, then
//! broadcasts: two group commits in a row, so latency grows by one commit
//! but throughput does not shrink. If the operation then fails, the
//! server appends a second entry with [`Outcome::Failed`] (best effort: an
//! entry saying "allowed" for an operation that did not happen is an
//! over-statement an investigator can resolve, an operation without entry
//! is not).
//!
//! Availability: the audit trail lives in the same store as the documents,
//! so it fails only when document writes would fail too; the queue bound
//! and the timeout turn a stuck store into prompt refusals instead of a
//! pile-up; presence updates are audited once per connection, not per
//! message. There is deliberately no "fail open" switch.

mod event;
pub(crate) mod export;
pub mod hash;
mod keys;
mod verify;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub(crate) use self::event::is_plain_id;
pub use self::event::{
    Action, Actor, AuditEvent, EventError, MAX_ID_LEN, Outcome, SERVER_SCOPE, Source, UnknownAction,
};
pub use self::export::{
    ExportError, ExportFormat, UnknownFormat, csv_header, encode_entry, export,
};
pub use self::hash::{Digest, canonical_event, entry_hash};
pub use self::keys::{Anchor, AuditKeys, Checkpoint, KeyError, key_id, public_key_path};
pub use self::verify::{
    ChainReport, Problem, ProblemKind, VerifyReport, VerifyScope, verify_chain,
};
use self::writer::{Job, Writer, WriterConfig};
use crate::clock::Clock;
pub use crate::store::{AuditEntry, AuditPage, AuditQuery, AuditRef, Cursor};
use crate::store::{AuditStore, PreparedEvent, StoreError};

/// Why an audit operation failed. For an append, every variant means the
/// event was not (known to be) recorded: refuse the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The event is malformed; nothing was queued.
    #[error("invalid audit event: {0}")]
    InvalidEvent(#[from] EventError),
    /// The store failed; the commit was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue stayed full for the whole append timeout.
    #[error("the audit trail is overloaded: the queue stayed full for {0:?}")]
    Overloaded(Duration),
    /// The commit did not finish within the append timeout. It may still
    /// complete: the entry can then exist for an operation that was refused.
    #[error("the audit commit did not finish within {0:?}")]
    Timeout(Duration),
    /// The log was closed (the server is shutting down).
    #[error("the audit trail is closed")]
    Closed,
}

/// Settings of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Sign a checkpoint once a chain grew by this many entries.
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint once a chain's oldest unsigned entry is this old.
    pub checkpoint_interval: Duration,
    /// Appends (batches) that may wait for the writer.
    pub queue_capacity: usize,
    /// Most events one commit takes.
    pub max_batch_events: usize,
    /// Extra time the writer waits to gather a bigger commit.
    pub commit_delay: Duration,
    /// Longest an append waits for queue space and its commit together.
    pub append_timeout: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1000,
            checkpoint_interval: Duration::from_secs(60),
            queue_capacity: 16_384,
            max_batch_events: 8192,
            commit_delay: Duration::ZERO,
            append_timeout: Duration::from_secs(10),
        }
    }
}

/// The audit trail of one server node.
pub struct AuditLog {
    store: Arc<dyn AuditStore>,
    keys: AuditKeys,
    clock: Arc<dyn Clock>,
    append_timeout: Duration,
    /// The writer's queue and task; `None` once closed. A std mutex: it is
    /// held only to clone the sender, never across an await.
    writer: Mutex<Option<(mpsc::Sender<Job>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("store", &self.store.kind())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(
        store: Arc<dyn AuditStore>,
        keys: AuditKeys,
        clock: Arc<dyn Clock>,
        config: AuditConfig,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Writer::new(
            store.clone(),
            keys.clone(),
            clock.clone(),
            WriterConfig {
                max_batch_events: config.max_batch_events.max(1),
                commit_delay: config.commit_delay,
                checkpoint_every_entries: config.checkpoint_every_entries.max(1),
                checkpoint_interval: config.checkpoint_interval,
            },
        );
        let task = tokio::spawn(writer.run(rx));
        Arc::new(Self {
            store,
            keys,
            clock,
            append_timeout: config.append_timeout,
            writer: Mutex::new(Some((tx, task))),
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, AuditError> {
        let guard = self.writer.lock().expect("writer lock poisoned");
        guard
            .as_ref()
            .map(|(tx, _)| tx.clone())
            .ok_or(AuditError::Closed)
    }

    /// Appends one event; returns once it is durable.
    pub async fn append(&self, event: AuditEvent) -> Result<AuditRef, AuditError> {
        let mut refs = self.append_batch(vec![event]).await?;
        refs.pop().ok_or(AuditError::Closed)
    }

    /// Appends events in order (each to its workspace's chain); returns
    /// once all are durable, with where each landed. All or none: a failed
    /// commit records none of them.
    pub async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditRef>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(events.len());
        for event in events {
            event.validate()?;
            prepared.push(PreparedEvent {
                canonical: canonical_event(&event),
                event,
            });
        }
        let (ack, done) = oneshot::channel();
        let job = Job::Append {
            events: prepared,
            ack,
        };
        self.submit(job, done).await
    }

    async fn submit<T>(
        &self,
        job: Job,
        done: oneshot::Receiver<Result<T, AuditError>>,
    ) -> Result<T, AuditError> {
        let deadline = tokio::time::Instant::now() + self.append_timeout;
        self.sender()?
            .send_timeout(job, self.append_timeout)
            .await
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => {
                    AuditError::Overloaded(self.append_timeout)
                }
                mpsc::error::SendTimeoutError::Closed(_) => AuditError::Closed,
            })?;
        match tokio::time::timeout_at(deadline, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AuditError::Closed),
            Err(_) => Err(AuditError::Timeout(self.append_timeout)),
        }
    }

    /// Signs a checkpoint of `workspace`'s chain now (if anything is
    /// unsigned), through the writer so it orders with appends.
    pub async fn checkpoint_now(&self, workspace: &str) -> Result<Option<Checkpoint>, AuditError> {
        let (ack, done) = oneshot::channel();
        let job = Job::Checkpoint {
            workspace: workspace.to_owned(),
            ack,
        };
        self.submit(job, done).await
    }

    /// One page of entries matching `query`.
    pub async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        Ok(self.store.search(query).await?)
    }

    /// Verifies the chains in `scope`; `progress` is told the entries
    /// checked so far in the current chain and the chain's name.
    pub async fn verify(
        &self,
        scope: &VerifyScope,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<VerifyReport, AuditError> {
        let workspaces = match scope {
            VerifyScope::All => self.store.workspaces().await?,
            VerifyScope::Workspace(ws) => vec![ws.clone()],
        };
        let mut report = VerifyReport::default();
        for ws in workspaces {
            let chain = verify_chain(self.store.as_ref(), &self.keys, &ws, None, &mut |n| {
                progress(&ws, n)
            })
            .await?;
            report.chains.push(chain);
        }
        Ok(report)
    }

    /// Stops accepting appends, commits what is queued, signs every chain
    /// with unsigned entries, and waits for the writer to finish.
    pub async fn close(&self) -> Result<(), AuditError> {
        let writer = self.writer.lock().expect("writer lock poisoned").take();
        if let Some((tx, task)) = writer {
            drop(tx);
            task.await.map_err(|e| {
                AuditError::Store(StoreError::Backend(format!("audit writer failed: {e}")))
            })?;
        }
        Ok(())
    }

    /// The keys checkpoints are signed and verified with.
    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// The clock events and checkpoints are stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether the writer is running and the store answers (for `/readyz`).
    pub async fn check(&self) -> Result<(), AuditError> {
        {
            let guard = self.writer.lock().expect("writer lock poisoned");
            match guard.as_ref() {
                Some((_, task)) if !task.is_finished() => {}
                Some(_) => {
                    return Err(AuditError::Store(StoreError::Backend(
                        "audit writer stopped".into(),
                    )));
                }
                None => return Err(AuditError::Closed),
            }
        }
        Ok(self.store.check().await?)
    }
}
