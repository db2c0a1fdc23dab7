//! Document history: who wrote what, versions, and the activity feed.
//!
//! **Attribution.** Every accepted update is stored in the log with its
//! author, time and size, but compaction folds the log into a snapshot.
//! What survives compaction is kept here, at the granularity the activity
//! feed and the diff need: one bucket per (document, author, minute) with
//! the exact Yjs item ids the author inserted and deleted in that minute.
//! Item ids resolve to authors exactly (a diff names who wrote and who
//! deleted each run); times are kept to the minute, not per keystroke.
//!
//! **Versions** are whole states (v2), automatic (after an idle gap or a
//! number of edits, whichever comes first), named (REST or WebSocket), or
//! the record of a restore. They are stored only once the updates they
//! reflect are durable.
//!
//! **Activity** is a per-workspace feed of edits (one event per author per
//! document per minute), versions, restores, joins and leaves, paged over
//! REST and streamed live over server-sent events.

mod attribution;
mod retention;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use yrs::IdSet;

pub use self::attribution::{Attribution, Authors};
pub use self::retention::{
    Retention, RetentionPolicy, StorePruner, Swept, held_workspaces, run_sweeper, sweep,
};
use crate::docs::DocName;
use crate::store::StoreError;

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// Taken after an idle gap or a number of edits.
    Auto,
    /// Saved by someone, with a label.
    Named,
    /// The state right after a restore.
    Restore,
}

/// A version's description (without its state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Unique within the document, increasing.
    pub id: u64,
    /// How it came to be.
    pub kind: VersionKind,
    /// A short name.
    pub label: String,
    /// Optional longer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who saved it (`system` for automatic versions).
    pub author: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The log entry it reflects (everything up to it).
    pub seq: u64,
    /// Size of the stored state in bytes.
    pub size: usize,
}

/// A version to store; the store assigns its id.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// How it came to be.
    pub kind: VersionKind,
    /// A short name.
    pub label: String,
    /// Optional longer text.
    pub description: Option<String>,
    /// Who saved it.
    pub author: String,
    /// When.
    pub created_ms: u64,
    /// The log entry it reflects.
    pub seq: u64,
    /// The whole state, v2.
    pub state: Vec<u8>,
}

/// What one author did to one document in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The author (a user id or `conn:N`).
    pub origin: String,
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Updates accepted.
    pub updates: u64,
    /// Bytes of those updates.
    pub bytes: u64,
    /// Items inserted.
    pub inserted: IdSet,
    /// Items deleted.
    pub deleted: IdSet,
}

impl Bucket {
    /// Adds `other`'s counts and items to this bucket (the caller decides
    /// which author and minute the result stands for).
    pub fn absorb(&mut self, other: Bucket) {
        self.updates += other.updates;
        self.bytes += other.bytes;
        self.inserted.merge_with(other.inserted);
        self.deleted.merge_with(other.deleted);
    }
}

/// What an activity event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActivityKind {
    /// Someone edited (first edit of this author in this minute).
    Edit,
    /// A version was saved.
    Version {
        /// Its id.
        version: u64,
        /// Its kind.
        kind: VersionKind,
        /// Its label.
        label: String,
    },
    /// A version was restored.
    Restore {
        /// The version restored.
        version: u64,
    },
    /// Someone connected to the document.
    Join,
    /// Someone disconnected.
    Leave,
}

/// An activity event to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewActivity {
    /// The document.
    pub document: String,
    /// Who.
    pub actor: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub kind: ActivityKind,
}

/// A stored activity event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEvent {
    /// Increasing within the workspace; page with `before`.
    pub id: u64,
    /// The workspace.
    pub workspace: String,
    /// The event.
    #[serde(flatten)]
    pub event: NewActivity,
}

/// Where history lives: the same store as the documents.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Stores a version; returns it with its id.
    async fn add_version(
        &self,
        doc: &DocName,
        version: NewVersion,
    ) -> Result<VersionMeta, StoreError>;
    /// A document's versions, oldest first.
    async fn versions(&self, doc: &DocName) -> Result<Vec<VersionMeta>, StoreError>;
    /// One version with its state.
    async fn version(
        &self,
        doc: &DocName,
        id: u64,
    ) -> Result<Option<(VersionMeta, Vec<u8>)>, StoreError>;
    /// Deletes versions; returns how many existed.
    async fn delete_versions(&self, doc: &DocName, ids: &[u64]) -> Result<usize, StoreError>;
    /// Stores attribution buckets (several rows for one author and minute
    /// are allowed; readers merge them).
    async fn add_attribution(&self, doc: &DocName, buckets: Vec<Bucket>) -> Result<(), StoreError>;
    /// A document's attribution, oldest first.
    async fn attribution(&self, doc: &DocName) -> Result<Vec<Bucket>, StoreError>;
    /// Deletes attribution from before `minute`; returns rows deleted.
    async fn delete_attribution_before(
        &self,
        doc: &DocName,
        minute: u64,
    ) -> Result<usize, StoreError>;
    /// Stores activity events; returns them with their ids.
    async fn add_activity(
        &self,
        events: Vec<NewActivity>,
    ) -> Result<Vec<ActivityEvent>, StoreError>;
    /// A workspace's activity, newest first, before event `before`.
    async fn activity(
        &self,
        workspace: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, StoreError>;
    /// Deletes a workspace's activity from before `at_ms`.
    async fn delete_activity_before(
        &self,
        workspace: &str,
        at_ms: u64,
    ) -> Result<usize, StoreError>;
    /// Replaces a version's state, keeping its id and metadata (an erasure
    /// rewrites versions without the erased content); false if it does not
    /// exist.
    async fn replace_version_state(
        &self,
        doc: &DocName,
        id: u64,
        state: Vec<u8>,
    ) -> Result<bool, StoreError>;
    /// Names `to` instead of `from` as author in a document's attribution
    /// and versions (pseudonymisation); returns the rows changed.
    async fn rename_author(&self, doc: &DocName, from: &str, to: &str)
    -> Result<usize, StoreError>;
    /// Names `to` instead of `from` as actor in a workspace's activity;
    /// returns the events changed.
    async fn rename_actor(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
    ) -> Result<usize, StoreError>;
}

/// Live activity, for `/api/activity/{workspace}/stream`.
#[derive(Clone)]
pub struct ActivityHub {
    sender: broadcast::Sender<ActivityEvent>,
}

impl Default for ActivityHub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }
}

impl ActivityHub {
    /// Announces stored events to live subscribers (none listening is fine).
    pub fn publish(&self, events: &[ActivityEvent]) {
        for event in events {
            let _no_listener = self.sender.send(event.clone());
        }
    }

    /// Subscribes to every workspace's events.
    pub fn subscribe(&self) -> broadcast::Receiver<ActivityEvent> {
        self.sender.subscribe()
    }
}

/// The workspace of a document name.
pub fn workspace_of(document: &str) -> &str {
    document.split('/').next().unwrap_or(document)
}

/// Merges buckets of the same author and minute.
pub fn merge_buckets(buckets: Vec<Bucket>) -> Vec<Bucket> {
    let mut merged: BTreeMap<(u64, String), Bucket> = BTreeMap::new();
    for bucket in buckets {
        match merged.get_mut(&(bucket.minute, bucket.origin.clone())) {
            Some(existing) => existing.absorb(bucket),
            None => {
                merged.insert((bucket.minute, bucket.origin.clone()), bucket);
            }
        }
    }
    merged.into_values().collect()
}
