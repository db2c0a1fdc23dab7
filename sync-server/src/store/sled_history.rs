//! History in the sled store: versions, attribution and activity, each in
//! trees of their own.
//!
//! Keys: `versions` and `version_states` map `name 0x00 id(u64 BE)` to a
//! version's metadata (JSON) and state; `attribution` maps
//! `name 0x00 minute(u64 BE) unique(u64 BE)` to a bucket; `activity` maps
//! `workspace 0x00 id(u64 BE)` to an event (JSON). Ids come from sled's
//! `generate_id`: unique and increasing.

use async_trait::async_trait;
use yrs::IdSet;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::StoreError;
use super::sled::SledStore;
use crate::docs::DocName;
use crate::history::{
    ActivityEvent, Bucket, HistoryStore, NewActivity, NewVersion, VersionMeta, workspace_of,
};

/// The history trees.
#[derive(Clone)]
pub(super) struct SledHistory {
    db: sled::Db,
    versions: sled::Tree,
    states: sled::Tree,
    attribution: sled::Tree,
    activity: sled::Tree,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key(prefix: &str, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 9);
    key.extend_from_slice(prefix.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

/// `[json_len: u32 BE][json][inserted_len: u32 BE][inserted v1][deleted v1]`.
fn encode_bucket(bucket: &Bucket) -> Vec<u8> {
    let head = serde_json::json!({
        "origin": bucket.origin,
        "minute": bucket.minute,
        "updates": bucket.updates,
        "bytes": bucket.bytes,
    })
    .to_string();
    let inserted = bucket.inserted.encode_v1();
    let deleted = bucket.deleted.encode_v1();
    let mut out = Vec::with_capacity(8 + head.len() + inserted.len() + deleted.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&(inserted.len() as u32).to_be_bytes());
    out.extend_from_slice(&inserted);
    out.extend_from_slice(&deleted);
    out
}

fn decode_bucket(bytes: &[u8]) -> Result<Bucket, StoreError> {
    let corrupt = || StoreError::Corrupt {
        doc: String::new(),
        reason: "bad attribution row".into(),
    };
    let take = |bytes: &[u8], at: usize| -> Option<(usize, usize)> {
        let len = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        (bytes.len() >= at + 4 + len).then_some((at + 4, at + 4 + len))
    };
    let (head_start, head_end) = take(bytes, 0).ok_or_else(corrupt)?;
    let head: serde_json::Value =
        serde_json::from_slice(&bytes[head_start..head_end]).map_err(|_| corrupt())?;
    let (ins_start, ins_end) = take(bytes, head_end).ok_or_else(corrupt)?;
    Ok(Bucket {
        origin: head["origin"].as_str().ok_or_else(corrupt)?.to_owned(),
        minute: head["minute"].as_u64().ok_or_else(corrupt)?,
        updates: head["updates"].as_u64().unwrap_or(0),
        bytes: head["bytes"].as_u64().unwrap_or(0),
        inserted: IdSet::decode_v1(&bytes[ins_start..ins_end]).map_err(|_| corrupt())?,
        deleted: IdSet::decode_v1(&bytes[ins_end..]).map_err(|_| corrupt())?,
    })
}

impl SledHistory {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            db: db.clone(),
            versions: db.open_tree("versions").map_err(backend)?,
            states: db.open_tree("version_states").map_err(backend)?,
            attribution: db.open_tree("attribution").map_err(backend)?,
            activity: db.open_tree("activity").map_err(backend)?,
        })
    }

    fn add_version(&self, doc: &DocName, version: NewVersion) -> Result<VersionMeta, StoreError> {
        let id = self.db.generate_id().map_err(backend)?;
        let meta = VersionMeta {
            id,
            kind: version.kind,
            label: version.label,
            description: version.description,
            author: version.author,
            created_ms: version.created_ms,
            seq: version.seq,
            size: version.state.len(),
        };
        let k = key(doc.as_str(), id);
        // State first: a listed version always has its state.
        self.states.insert(&k, version.state).map_err(backend)?;
        self.versions
            .insert(&k, serde_json::to_vec(&meta).map_err(backend)?)
            .map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(meta)
    }

    fn versions(&self, doc: &DocName) -> Result<Vec<VersionMeta>, StoreError> {
        self.versions
            .scan_prefix(prefix(doc.as_str()))
            .values()
            .map(|v| serde_json::from_slice(&v.map_err(backend)?).map_err(backend))
            .collect()
    }

    fn version(
        &self,
        doc: &DocName,
        id: u64,
    ) -> Result<Option<(VersionMeta, Vec<u8>)>, StoreError> {
        let k = key(doc.as_str(), id);
        let Some(meta) = self.versions.get(&k).map_err(backend)? else {
            return Ok(None);
        };
        let meta: VersionMeta = serde_json::from_slice(&meta).map_err(backend)?;
        let state = self
            .states
            .get(&k)
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt {
                doc: doc.to_string(),
                reason: format!("version {id} has no state"),
            })?;
        Ok(Some((meta, state.to_vec())))
    }

    fn delete_versions(&self, doc: &DocName, ids: &[u64]) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for &id in ids {
            let k = key(doc.as_str(), id);
            // Metadata first: a listed version always has its state.
            if self.versions.remove(&k).map_err(backend)?.is_some() {
                deleted += 1;
            }
            self.states.remove(&k).map_err(backend)?;
        }
        Ok(deleted)
    }

    fn add_attribution(&self, doc: &DocName, buckets: Vec<Bucket>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for bucket in buckets {
            let mut k = key(doc.as_str(), bucket.minute);
            k.extend_from_slice(&self.db.generate_id().map_err(backend)?.to_be_bytes());
            batch.insert(k, encode_bucket(&bucket));
        }
        self.attribution.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn attribution(&self, doc: &DocName) -> Result<Vec<Bucket>, StoreError> {
        self.attribution
            .scan_prefix(prefix(doc.as_str()))
            .values()
            .map(|v| decode_bucket(&v.map_err(backend)?))
            .collect()
    }

    fn delete_attribution_before(&self, doc: &DocName, minute: u64) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        for k in self
            .attribution
            .range(key(doc.as_str(), 0)..key(doc.as_str(), minute))
            .keys()
        {
            batch.remove(k.map_err(backend)?);
            deleted += 1;
        }
        self.attribution.apply_batch(batch).map_err(backend)?;
        Ok(deleted)
    }

    fn add_activity(&self, events: Vec<NewActivity>) -> Result<Vec<ActivityEvent>, StoreError> {
        let mut stored = Vec::with_capacity(events.len());
        let mut batch = sled::Batch::default();
        for event in events {
            let id = self.db.generate_id().map_err(backend)?;
            let stored_event = ActivityEvent {
                id,
                workspace: workspace_of(&event.document).to_owned(),
                event,
            };
            batch.insert(
                key(&stored_event.workspace, id),
                serde_json::to_vec(&stored_event).map_err(backend)?,
            );
            stored.push(stored_event);
        }
        self.activity.apply_batch(batch).map_err(backend)?;
        Ok(stored)
    }

    fn activity(
        &self,
        workspace: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        let end = key(workspace, before.unwrap_or(u64::MAX));
        self.activity
            .range(key(workspace, 0)..end)
            .values()
            .rev()
            .take(limit)
            .map(|v| serde_json::from_slice(&v.map_err(backend)?).map_err(backend))
            .collect()
    }

    fn delete_activity_before(&self, workspace: &str, at_ms: u64) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        for item in self.activity.scan_prefix(prefix(workspace)) {
            let (k, v) = item.map_err(backend)?;
            let event: ActivityEvent = serde_json::from_slice(&v).map_err(backend)?;
            if event.event.at_ms < at_ms {
                batch.remove(k);
                deleted += 1;
            }
        }
        self.activity.apply_batch(batch).map_err(backend)?;
        Ok(deleted)
    }

    fn replace_version_state(
        &self,
        doc: &DocName,
        id: u64,
        state: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let k = key(doc.as_str(), id);
        let Some(meta) = self.versions.get(&k).map_err(backend)? else {
            return Ok(false);
        };
        let mut meta: VersionMeta = serde_json::from_slice(&meta).map_err(backend)?;
        meta.size = state.len();
        let mut batch = sled::Batch::default();
        batch.insert(k.clone(), serde_json::to_vec(&meta).map_err(backend)?);
        let mut states = sled::Batch::default();
        states.insert(k, state);
        // Two trees: state first, so a listed version always has a state
        // (its size may lag by one write if the second fails).
        self.states.apply_batch(states).map_err(backend)?;
        self.versions.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(true)
    }

    fn rename_author(&self, doc: &DocName, from: &str, to: &str) -> Result<usize, StoreError> {
        let mut changed = 0;
        let mut buckets = sled::Batch::default();
        for item in self.attribution.scan_prefix(prefix(doc.as_str())) {
            let (k, v) = item.map_err(backend)?;
            let mut bucket = decode_bucket(&v)?;
            if bucket.origin == from {
                bucket.origin = to.to_owned();
                buckets.insert(k, encode_bucket(&bucket));
                changed += 1;
            }
        }
        let mut versions = sled::Batch::default();
        for item in self.versions.scan_prefix(prefix(doc.as_str())) {
            let (k, v) = item.map_err(backend)?;
            let mut meta: VersionMeta = serde_json::from_slice(&v).map_err(backend)?;
            if meta.author == from {
                meta.author = to.to_owned();
                versions.insert(k, serde_json::to_vec(&meta).map_err(backend)?);
                changed += 1;
            }
        }
        self.attribution.apply_batch(buckets).map_err(backend)?;
        self.versions.apply_batch(versions).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(changed)
    }

    fn rename_actor(&self, workspace: &str, from: &str, to: &str) -> Result<usize, StoreError> {
        let mut changed = 0;
        let mut batch = sled::Batch::default();
        for item in self.activity.scan_prefix(prefix(workspace)) {
            let (k, v) = item.map_err(backend)?;
            let mut event: ActivityEvent = serde_json::from_slice(&v).map_err(backend)?;
            if event.event.actor == from {
                event.event.actor = to.to_owned();
                batch.insert(k, serde_json::to_vec(&event).map_err(backend)?);
                changed += 1;
            }
        }
        self.activity.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(changed)
    }
}

async fn blocking<T: Send + 'static>(
    history: &SledHistory,
    f: impl FnOnce(&SledHistory) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let history = history.clone();
    tokio::task::spawn_blocking(move || f(&history))
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

#[async_trait]
impl HistoryStore for SledStore {
    async fn add_version(
        &self,
        doc: &DocName,
        version: NewVersion,
    ) -> Result<VersionMeta, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| h.add_version(&doc, version)).await
    }
    async fn versions(&self, doc: &DocName) -> Result<Vec<VersionMeta>, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| h.versions(&doc)).await
    }
    async fn version(
        &self,
        doc: &DocName,
        id: u64,
    ) -> Result<Option<(VersionMeta, Vec<u8>)>, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| h.version(&doc, id)).await
    }
    async fn delete_versions(&self, doc: &DocName, ids: &[u64]) -> Result<usize, StoreError> {
        let (doc, ids) = (doc.clone(), ids.to_vec());
        blocking(self.history(), move |h| h.delete_versions(&doc, &ids)).await
    }
    async fn add_attribution(&self, doc: &DocName, buckets: Vec<Bucket>) -> Result<(), StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| h.add_attribution(&doc, buckets)).await
    }
    async fn attribution(&self, doc: &DocName) -> Result<Vec<Bucket>, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| h.attribution(&doc)).await
    }
    async fn delete_attribution_before(
        &self,
        doc: &DocName,
        minute: u64,
    ) -> Result<usize, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| {
            h.delete_attribution_before(&doc, minute)
        })
        .await
    }
    async fn add_activity(
        &self,
        events: Vec<NewActivity>,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        blocking(self.history(), move |h| h.add_activity(events)).await
    }
    async fn activity(
        &self,
        workspace: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        let workspace = workspace.to_owned();
        blocking(self.history(), move |h| {
            h.activity(&workspace, before, limit)
        })
        .await
    }
    async fn delete_activity_before(
        &self,
        workspace: &str,
        at_ms: u64,
    ) -> Result<usize, StoreError> {
        let workspace = workspace.to_owned();
        blocking(self.history(), move |h| {
            h.delete_activity_before(&workspace, at_ms)
        })
        .await
    }
    async fn replace_version_state(
        &self,
        doc: &DocName,
        id: u64,
        state: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let doc = doc.clone();
        blocking(self.history(), move |h| {
            h.replace_version_state(&doc, id, state)
        })
        .await
    }
    async fn rename_author(
        &self,
        doc: &DocName,
        from: &str,
        to: &str,
    ) -> Result<usize, StoreError> {
        let (doc, from, to) = (doc.clone(), from.to_owned(), to.to_owned());
        blocking(self.history(), move |h| h.rename_author(&doc, &from, &to)).await
    }
    async fn rename_actor(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
    ) -> Result<usize, StoreError> {
        let (workspace, from, to) = (workspace.to_owned(), from.to_owned(), to.to_owned());
        blocking(self.history(), move |h| {
            h.rename_actor(&workspace, &from, &to)
        })
        .await
    }
}
