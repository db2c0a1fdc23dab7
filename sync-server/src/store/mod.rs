//! Durable storage: per document, an append-only log of accepted updates
//! and a compacted snapshot that replaces the log's older entries.
//!
//! A document's state is always `snapshot + log entries after it`. The
//! document task appends every accepted update before anyone else sees it,
//! and compaction folds the log into a new snapshot in the background.

mod entry;
mod postgres;
mod sled;
mod sled_history;

use async_trait::async_trait;
use bytes::Bytes;
use crdt_core::Encoding;

pub use self::entry::EntryError;
pub use self::postgres::{PostgresConfig, PostgresOpenError, PostgresStore};
pub use self::sled::{SledConfig, SledStore};
use crate::docs::DocName;
use crate::history::HistoryStore;

/// An update accepted by a document, on its way to the log.
#[derive(Debug, Clone)]
pub struct NewUpdate {
    /// The update as the peer sent it (v1).
    pub update: Bytes,
    /// Who sent it: a user id, or `conn:<id>` for an anonymous connection.
    pub origin: String,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// One log entry read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// Position in the document's log; increases with every append.
    pub seq: u64,
    /// Encoding of `update`.
    pub encoding: Encoding,
    /// The update bytes.
    pub update: Vec<u8>,
    /// Who sent it.
    pub origin: String,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A compacted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log entry folded into this snapshot.
    pub through_seq: u64,
    /// Encoding of `state`.
    pub encoding: Encoding,
    /// The whole document state as one update.
    pub state: Vec<u8>,
}

/// Where an append landed in its document's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the first update appended.
    pub first_seq: u64,
    /// Sequence number of the last update appended.
    pub last_seq: u64,
}

/// Stored bytes and their encoding, as [`crdt_core::Document::load`] takes them.
pub type Part<'a> = (Encoding, &'a [u8]);

/// Everything stored for one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDoc {
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, in order.
    pub log: Vec<StoredUpdate>,
}

impl StoredDoc {
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.log.is_empty()
    }

    /// The last sequence number stored, or 0.
    pub fn last_seq(&self) -> u64 {
        self.log
            .last()
            .map(|u| u.seq)
            .or(self.snapshot.as_ref().map(|s| s.through_seq))
            .unwrap_or(0)
    }

    /// Drops what is at or before `after_seq`: log entries, and the snapshot
    /// unless it folds in entries after `after_seq`.
    pub fn keep_after(&mut self, after_seq: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.through_seq <= after_seq)
        {
            self.snapshot = None;
        }
        self.log.retain(|entry| entry.seq > after_seq);
    }

    /// Bytes held in the log (not the snapshot).
    pub fn log_bytes(&self) -> usize {
        self.log.iter().map(|u| u.update.len()).sum()
    }

    /// The snapshot and log as inputs to [`crdt_core::Document::load`].
    pub fn parts(&self) -> (Option<Part<'_>>, Vec<Part<'_>>) {
        let snapshot = self
            .snapshot
            .as_ref()
            .map(|s| (s.encoding, s.state.as_slice()));
        let log = self
            .log
            .iter()
            .map(|u| (u.encoding, u.update.as_slice()))
            .collect();
        (snapshot, log)
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// Stored bytes could not be read back.
    #[error("stored data for {doc:?} is corrupt: {reason}")]
    Corrupt {
        /// The document.
        doc: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was closed (the server is shutting down).
    #[error("store is closed")]
    Closed,
}

/// A durable home for documents.
///
/// Implementations must make `append` durable before returning, and keep
/// entries of one document in append order.
#[async_trait]
pub trait DocStore: HistoryStore + Send + Sync + 'static {
    /// Short name for logs and metrics (`sled`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Loads a document's snapshot and the log entries after it. A document
    /// never written loads as empty.
    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError>;

    /// Appends updates to a document's log; returns once they are durable,
    /// with the sequence numbers they got. Appends from many documents may be
    /// committed together. `updates` is never empty.
    async fn append(&self, doc: &DocName, updates: Vec<NewUpdate>) -> Result<Appended, StoreError>;

    /// What was stored after entry `after_seq`: the entries past it, and the
    /// snapshot if a compaction folded some of them in. A node that may have
    /// missed updates from other nodes reads this to catch up.
    async fn load_since(&self, doc: &DocName, after_seq: u64) -> Result<StoredDoc, StoreError> {
        let mut stored = self.load(doc).await?;
        stored.keep_after(after_seq);
        Ok(stored)
    }

    /// Replaces the log entries up to and including `through_seq` with
    /// `snapshot`. Entries appended after `through_seq` are kept.
    async fn compact(&self, doc: &DocName, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Names of all stored documents.
    async fn list(&self) -> Result<Vec<DocName>, StoreError>;

    /// Whether the store can serve requests now (for `/readyz`).
    async fn check(&self) -> Result<(), StoreError>;

    /// Flushes everything and stops accepting work.
    async fn close(&self) -> Result<(), StoreError>;
}
