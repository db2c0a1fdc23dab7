//! Where governance data lives: the audit chains, their checkpoints and
//! pruning anchors, per-workspace settings (retention, legal hold, erasure
//! mode) and lineage edges, in the server's own store: sled (embedded,
//! [`SledStore`]) or PostgreSQL ([`PostgresStore`]).
//!
//! The stores do the storage and the linking (they hold the lock under
//! which a workspace's next sequence number and previous hash are read);
//! everything else (hashing rules, verification, signing) is shared and
//! lives in [`crate::audit`], so both backends behave identically. Both
//! stores also implement [`crate::lineage::LineageStore`]: the
//! conformance suite in `tests/` runs every test against both.

mod postgres;
mod sled;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::postgres::{PostgresConfig, PostgresStore};
pub use self::sled::{SledConfig, SledStore};
use crate::audit::{Action, Anchor, AuditEvent, AuditKeys, Checkpoint, Digest, entry_hash};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed (I/O, connection, SQL).
    #[error("governance storage failed: {0}")]
    Backend(String),
    /// Stored bytes could not be read back.
    #[error("stored governance data is unreadable ({what}): {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was closed.
    #[error("governance store is closed")]
    Closed,
}

/// An event about to be appended, with its canonical encoding computed
/// outside the store's critical section.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The event.
    pub event: AuditEvent,
    /// [`crate::audit::canonical_event`] of it.
    pub canonical: String,
}

/// Where an appended event landed: enough to cite it in a log line or an
/// API answer, and to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditRef {
    /// The chain.
    pub workspace: String,
    /// Its position in the chain.
    pub seq: u64,
    /// Its hash.
    pub hash: Digest,
}

/// The end of a workspace's chain, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub workspace: String,
    /// The last entry's seq (0: nothing appended yet).
    pub seq: u64,
    /// The last entry's hash.
    pub hash: Digest,
    /// The last checkpoint's seq (0: none yet).
    pub checkpoint_seq: u64,
}

/// What one commit did.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// One per event, in the order given.
    pub refs: Vec<AuditRef>,
    /// The new head of every chain the commit touched.
    pub heads: Vec<ChainHead>,
}

/// An entry as stored, before anyone trusts it: verification reads these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The chain.
    pub workspace: String,
    /// The position the store holds it at (its key).
    pub seq: u64,
    /// The stored link to the previous entry.
    pub prev_hash: Digest,
    /// The stored hash.
    pub hash: Digest,
    /// The stored event, as canonical JSON.
    pub event_json: String,
    /// Whether the store's search indexes agree with the event. A changed
    /// index would hide an entry from searches (and from a GDPR access
    /// report), so verification reports it.
    pub index_ok: bool,
}

/// An entry read back and parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The chain.
    pub workspace: String,
    /// Its position.
    pub seq: u64,
    /// The hash of the entry before it.
    pub prev_hash: Digest,
    /// Its hash.
    pub hash: Digest,
    /// The event.
    pub event: AuditEvent,
}

impl AuditEntry {
    /// Parses a stored entry.
    pub fn from_raw(raw: &RawEntry) -> Result<Self, StoreError> {
        let event = serde_json::from_str(&raw.event_json).map_err(|e| StoreError::Corrupt {
            what: format!("audit entry {} #{}", raw.workspace, raw.seq),
            reason: e.to_string(),
        })?;
        Ok(Self {
            workspace: raw.workspace.clone(),
            seq: raw.seq,
            prev_hash: raw.prev_hash,
            hash: raw.hash,
            event,
        })
    }
}

/// A position in search order `(at_ms, workspace, seq)`, opaque to clients:
/// a page's `next` is passed back as the next query's `after`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Time of the last entry returned.
    pub at_ms: u64,
    /// Its workspace.
    pub workspace: String,
    /// Its seq.
    pub seq: u64,
}

impl Cursor {
    /// The cursor just after `entry`.
    pub fn after(entry: &AuditEntry) -> Self {
        Self {
            at_ms: entry.event.at_ms,
            workspace: entry.workspace.clone(),
            seq: entry.seq,
        }
    }

    /// As an opaque token (hex).
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(16 + self.workspace.len());
        bytes.extend_from_slice(&self.at_ms.to_be_bytes());
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes.extend_from_slice(self.workspace.as_bytes());
        hex::encode(bytes)
    }

    /// Reads a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Option<Self> {
        let bytes = hex::decode(token).ok()?;
        if bytes.len() < 17 {
            return None;
        }
        Some(Self {
            at_ms: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            seq: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            workspace: String::from_utf8(bytes[16..].to_vec()).ok()?,
        })
    }
}

/// Most entries one search page returns.
pub const MAX_PAGE: usize = 1000;

/// A search of the audit trail: every filter set must match. Results come
/// in `(at_ms, workspace, seq)` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this chain.
    pub workspace: Option<String>,
    /// Only this actor id ([`crate::audit::Actor::id`]).
    pub actor: Option<String>,
    /// Only this document.
    pub document: Option<String>,
    /// Only these actions (empty: all).
    pub actions: Vec<Action>,
    /// Only entries at or after this time (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Only entries before this time.
    pub to_ms: Option<u64>,
    /// Continue after this position (the previous page's `next`).
    pub after: Option<Cursor>,
    /// Page size; 0 means 100, anything above [`MAX_PAGE`] is capped.
    pub limit: usize,
}

impl AuditQuery {
    /// The page size to use.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        }
    }

    /// Whether `entry` passes the filters (not the cursor). Stores use it
    /// for the filters their indexes do not cover.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let e = &entry.event;
        self.workspace
            .as_ref()
            .is_none_or(|w| *w == entry.workspace)
            && self.actor.as_ref().is_none_or(|a| a == e.actor.id())
            && self
                .document
                .as_ref()
                .is_none_or(|d| e.document.as_ref() == Some(d))
            && (self.actions.is_empty() || self.actions.contains(&e.action))
            && self.from_ms.is_none_or(|from| e.at_ms >= from)
            && self.to_ms.is_none_or(|to| e.at_ms < to)
    }
}

/// One page of search results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    /// The entries, in search order.
    pub entries: Vec<AuditEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneOutcome {
    /// The entries were deleted and the anchor stored.
    Pruned {
        /// Entries deleted.
        entries: u64,
    },
    /// A legal hold is in force: nothing was deleted.
    Held,
}

/// The settings key whose presence means a legal hold is in force. Stores
/// check it in the same transaction that prunes.
pub const LEGAL_HOLD_KEY: &str = "legal_hold";

/// Links `events` to the chain heads in `heads` (seq and hash of each
/// workspace's last entry, missing for a new chain), advancing them.
/// Returns, per event, its seq, previous hash and hash. Shared by both
/// stores so the chain is built the same way everywhere.
pub(crate) fn link(
    events: &[PreparedEvent],
    heads: &mut BTreeMap<String, (u64, Digest)>,
) -> Vec<(u64, Digest, Digest)> {
    events
        .iter()
        .map(|prepared| {
            let head = heads
                .entry(prepared.event.workspace.clone())
                .or_insert((0, Digest::GENESIS));
            let seq = head.0 + 1;
            let prev = head.1;
            let hash = entry_hash(seq, &prev, &prepared.canonical);
            *head = (seq, hash);
            (seq, prev, hash)
        })
        .collect()
}

/// Durable storage of audit chains and governance settings.
///
/// Implementations must commit each [`AuditStore::commit`] atomically, link
/// entries of one workspace in commit order without gaps even with several
/// server nodes appending, and refuse [`AuditStore::prune`] while a legal
/// hold is set, checked atomically with the deletion.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Short name for logs (`sled`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Appends `events` (never empty) in order, each to its workspace's
    /// chain, in one atomic, durable commit.
    async fn commit(&self, events: Vec<PreparedEvent>) -> Result<Committed, StoreError>;

    /// Signs and stores a checkpoint of `workspace`'s current head, unless
    /// the head is already checkpointed (then `None`).
    async fn checkpoint(
        &self,
        workspace: &str,
        keys: &AuditKeys,
        at_ms: u64,
    ) -> Result<Option<Checkpoint>, StoreError>;

    /// The head of `workspace`'s chain, if anything was ever appended.
    async fn head(&self, workspace: &str) -> Result<Option<ChainHead>, StoreError>;

    /// Every workspace that has a chain, sorted.
    async fn workspaces(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` stored entries of `workspace` with seq `>= from_seq`,
    /// in seq order, exactly as stored.
    async fn read_chain(
        &self,
        workspace: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<RawEntry>, StoreError>;

    /// Every stored checkpoint of `workspace`, in seq order.
    async fn checkpoints(&self, workspace: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// The pruning anchor of `workspace`, if retention ever deleted entries.
    async fn anchor(&self, workspace: &str) -> Result<Option<Anchor>, StoreError>;

    /// One page of entries matching `query`.
    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Deletes `anchor.workspace`'s entries and checkpoints up to
    /// `anchor.through_seq` and stores `anchor`, atomically, unless a legal
    /// hold ([`LEGAL_HOLD_KEY`]) is set.
    async fn prune(&self, anchor: Anchor) -> Result<PruneOutcome, StoreError>;

    /// Every setting of `workspace`.
    async fn settings(&self, workspace: &str) -> Result<BTreeMap<String, String>, StoreError>;

    /// Sets (`Some`) or removes (`None`) one setting of `workspace`.
    async fn set_setting(
        &self,
        workspace: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), StoreError>;

    /// Workspaces that have any setting, sorted.
    async fn configured_workspaces(&self) -> Result<Vec<String>, StoreError>;

    /// Whether the store can serve requests now.
    async fn check(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            at_ms: 42,
            workspace: "acme".into(),
            seq: 7,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("00"), None);
    }
}
