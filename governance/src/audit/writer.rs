//! The audit writer: one task that group-commits appends and signs
//! checkpoints.
//!
//! Every append queued while the previous commit ran goes into the next
//! commit, so under load one durable commit (one fsync, or one PostgreSQL
//! transaction) covers thousands of events, and nobody is told "recorded"
//! before the commit covering their event returned. After each commit the
//! writer signs a checkpoint for every chain that grew by
//! `checkpoint_every_entries` since its last one; a timer signs chains
//! that have unsigned entries older than `checkpoint_interval`, and
//! shutdown signs every chain it touched, so a clean stop leaves nothing
//! unsigned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{AuditError, AuditKeys, Checkpoint};
use crate::clock::Clock;
use crate::store::{AuditRef, AuditStore, ChainHead, PreparedEvent};

/// Work for the writer.
pub(super) enum Job {
    /// Append these events, in order.
    Append {
        events: Vec<PreparedEvent>,
        ack: oneshot::Sender<Result<Vec<AuditRef>, AuditError>>,
    },
    /// Sign a checkpoint of this chain now.
    Checkpoint {
        workspace: String,
        ack: oneshot::Sender<Result<Option<Checkpoint>, AuditError>>,
    },
}

/// An append waiting for its commit: the events and who to tell.
type PendingAppend = (
    Vec<PreparedEvent>,
    oneshot::Sender<Result<Vec<AuditRef>, AuditError>>,
);

/// How the writer batches and signs.
#[derive(Debug, Clone)]
pub(super) struct WriterConfig {
    pub max_batch_events: usize,
    pub commit_delay: Duration,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval: Duration,
}

/// A chain with entries no checkpoint covers yet.
struct Unsigned {
    /// When the oldest unsigned entry was committed.
    since: Instant,
}

pub(super) struct Writer {
    pub store: Arc<dyn AuditStore>,
    pub keys: AuditKeys,
    pub clock: Arc<dyn Clock>,
    pub config: WriterConfig,
    unsigned: HashMap<String, Unsigned>,
}

impl Writer {
    pub fn new(
        store: Arc<dyn AuditStore>,
        keys: AuditKeys,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
    ) -> Self {
        Self {
            store,
            keys,
            clock,
            config,
            unsigned: HashMap::new(),
        }
    }

    /// Runs until every sender is gone, then finishes the queue and signs
    /// what is unsigned.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let tick = self
            .config
            .checkpoint_interval
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.handle(job, &mut jobs).await,
                    None => break,
                },
                _ = ticker.tick() => self.sign_due(false).await,
            }
        }
        self.sign_due(true).await;
    }

    async fn handle(&mut self, first: Job, jobs: &mut mpsc::Receiver<Job>) {
        let mut appends = Vec::new();
        let mut checkpoints = Vec::new();
        let mut count = 0;
        match first {
            Job::Append { events, ack } => {
                count += events.len();
                appends.push((events, ack));
            }
            Job::Checkpoint { workspace, ack } => checkpoints.push((workspace, ack)),
        }
        if !appends.is_empty() && !self.config.commit_delay.is_zero() {
            tokio::time::sleep(self.config.commit_delay).await;
        }
        while count < self.config.max_batch_events {
            match jobs.try_recv() {
                Ok(Job::Append { events, ack }) => {
                    count += events.len();
                    appends.push((events, ack));
                }
                Ok(Job::Checkpoint { workspace, ack }) => checkpoints.push((workspace, ack)),
                Err(_) => break,
            }
        }
        if !appends.is_empty() {
            self.commit(appends).await;
        }
        for (workspace, ack) in checkpoints {
            let signed = self.sign(&workspace).await;
            // A caller that gave up waiting no longer needs the answer.
            let _ignored = ack.send(signed);
        }
    }

    async fn commit(&mut self, appends: Vec<PendingAppend>) {
        let mut all = Vec::with_capacity(appends.iter().map(|(e, _)| e.len()).sum());
        let mut sizes = Vec::with_capacity(appends.len());
        let mut acks = Vec::with_capacity(appends.len());
        for (events, ack) in appends {
            sizes.push(events.len());
            all.extend(events);
            acks.push(ack);
        }
        match self.store.commit(all).await {
            Ok(committed) => {
                let mut refs = committed.refs.into_iter();
                for (size, ack) in sizes.into_iter().zip(acks) {
                    let _ignored = ack.send(Ok(refs.by_ref().take(size).collect()));
                }
                self.after_commit(committed.heads).await;
            }
            Err(error) => {
                tracing::warn!(%error, "audit commit failed; refusing its operations");
                for ack in acks {
                    let _ignored = ack.send(Err(AuditError::Store(error.clone())));
                }
            }
        }
    }

    async fn after_commit(&mut self, heads: Vec<ChainHead>) {
        let now = Instant::now();
        for head in heads {
            if head.seq.saturating_sub(head.checkpoint_seq) >= self.config.checkpoint_every_entries
            {
                if let Err(error) = self.sign(&head.workspace).await {
                    tracing::warn!(%error, workspace = %head.workspace, "signing a checkpoint failed; retrying later");
                }
            } else {
                self.unsigned
                    .entry(head.workspace)
                    .or_insert(Unsigned { since: now });
            }
        }
    }

    async fn sign(&mut self, workspace: &str) -> Result<Option<Checkpoint>, AuditError> {
        let signed = self
            .store
            .checkpoint(workspace, &self.keys, self.clock.now_ms())
            .await?;
        self.unsigned.remove(workspace);
        Ok(signed)
    }

    /// Signs chains whose unsigned entries are older than the interval, or
    /// all of them when `all`.
    async fn sign_due(&mut self, all: bool) {
        let due: Vec<String> = self
            .unsigned
            .iter()
            .filter(|(_, u)| all || u.since.elapsed() >= self.config.checkpoint_interval)
            .map(|(ws, _)| ws.clone())
            .collect();
        for workspace in due {
            if let Err(error) = self.sign(&workspace).await {
                tracing::warn!(%error, %workspace, "signing a checkpoint failed; retrying later");
            }
        }
    }
}
