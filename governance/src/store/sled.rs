//! The embedded store: two trees in the server's own sled database.
//!
//! Tree `governance` holds, by the first byte of the key (ids never contain
//! NUL, so `0x00` separates parts unambiguously and keeps byte order equal
//! to the order of the parts):
//!
//! | key | value |
//! |---|---|
//! | `E` workspace `0x00` seq (u64 BE) | prev_hash (32) · hash (32) · event as canonical JSON |
//! | `T` at_ms (u64 BE) workspace `0x00` seq | empty: the search-order index |
//! | `A` actor id `0x00` at_ms workspace `0x00` seq | empty: the by-actor index |
//! | `H` workspace | head: seq (u64 BE) · hash (32) · last checkpoint seq (u64 BE) |
//! | `C` workspace `0x00` seq | checkpoint, JSON |
//! | `P` workspace | pruning anchor, JSON |
//! | `S` workspace `0x00` name | setting value, UTF-8 |
//!
//! Tree `governance_lineage` holds every edge twice, under
//! `from-node-key 0x00 id` and `to-node-key 0x00 id` (id from
//! [`sled::Db::generate_id`], so recording order), as JSON.
//!
//! One commit is one `sled::Batch` (atomic), followed by a flush when
//! `fsync` is set. Commits and checkpoints take a mutex: the audit writer
//! calls them from one task anyway, the mutex makes a second writer on the
//! same database safe too. Pruning is a sled transaction that reads the
//! legal-hold key, so a hold set concurrently either blocks it or comes
//! after it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    AuditEntry, AuditPage, AuditQuery, AuditStore, ChainHead, Committed, Cursor, LEGAL_HOLD_KEY,
    PreparedEvent, PruneOutcome, RawEntry, StoreError, link,
};
use crate::audit::{Anchor, AuditKeys, Checkpoint, Digest};
use crate::lineage::{LineageEdge, LineageStore};

/// Settings of the sled store.
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// Flush to disk before a commit counts as durable. Without it sled
    /// keeps writes in memory for up to its flush interval (500 ms), and an
    /// "always recorded" operation could lose its entry in a crash.
    pub fsync: bool,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self { fsync: true }
    }
}

/// Governance data in sled. See the module docs for the layout.
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    lineage: sled::Tree,
    fsync: bool,
    /// Serializes commits and checkpoints, which both rewrite heads.
    write_lock: Arc<Mutex<()>>,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.into(),
    }
}

fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![tag];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn entry_key(workspace: &str, seq: u64) -> Vec<u8> {
    key(b'E', &[workspace.as_bytes(), &[0], &seq.to_be_bytes()])
}

fn time_key(at_ms: u64, workspace: &str, seq: u64) -> Vec<u8> {
    key(
        b'T',
        &[
            &at_ms.to_be_bytes(),
            workspace.as_bytes(),
            &[0],
            &seq.to_be_bytes(),
        ],
    )
}

fn actor_prefix(actor: &str) -> Vec<u8> {
    key(b'A', &[actor.as_bytes(), &[0]])
}

fn actor_key(actor: &str, at_ms: u64, workspace: &str, seq: u64) -> Vec<u8> {
    let mut out = actor_prefix(actor);
    out.extend_from_slice(&time_key(at_ms, workspace, seq)[1..]);
    out
}

fn checkpoint_key(workspace: &str, seq: u64) -> Vec<u8> {
    key(b'C', &[workspace.as_bytes(), &[0], &seq.to_be_bytes()])
}

fn setting_key(workspace: &str, name: &str) -> Vec<u8> {
    key(b'S', &[workspace.as_bytes(), &[0], name.as_bytes()])
}

/// `(at_ms, workspace, seq)` from the part of an index key after its tag
/// (and actor).
fn parse_position(bytes: &[u8]) -> Option<Cursor> {
    if bytes.len() < 8 + 1 + 8 {
        return None;
    }
    let seq_at = bytes.len() - 8;
    Some(Cursor {
        at_ms: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        workspace: String::from_utf8(bytes[8..seq_at - 1].to_vec()).ok()?,
        seq: u64::from_be_bytes(bytes[seq_at..].try_into().ok()?),
    })
}

fn encode_head(seq: u64, hash: &Digest, checkpoint_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&checkpoint_seq.to_be_bytes());
    out
}

fn decode_head(workspace: &str, bytes: &[u8]) -> Result<ChainHead, StoreError> {
    if bytes.len() != 48 {
        return Err(corrupt(format!("head of {workspace}"), "wrong length"));
    }
    Ok(ChainHead {
        workspace: workspace.to_owned(),
        seq: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
        hash: Digest::from_slice(&bytes[8..40]).expect("32 bytes"),
        checkpoint_seq: u64::from_be_bytes(bytes[40..].try_into().expect("8 bytes")),
    })
}

fn decode_entry(workspace: &str, seq: u64, value: &[u8]) -> Result<RawEntry, StoreError> {
    let what = || format!("audit entry {workspace} #{seq}");
    if value.len() < 64 {
        return Err(corrupt(what(), "shorter than its two hashes"));
    }
    Ok(RawEntry {
        workspace: workspace.to_owned(),
        seq,
        prev_hash: Digest::from_slice(&value[..32]).expect("32 bytes"),
        hash: Digest::from_slice(&value[32..64]).expect("32 bytes"),
        event_json: String::from_utf8(value[64..].to_vec())
            .map_err(|_| corrupt(what(), "event is not UTF-8"))?,
        index_ok: true,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

impl SledStore {
    /// Opens the governance trees in `db` (the server's database, or one
    /// of its own).
    pub fn open(db: sled::Db, config: SledConfig) -> Result<Arc<Self>, StoreError> {
        let tree = db.open_tree("governance").map_err(backend)?;
        let lineage = db.open_tree("governance_lineage").map_err(backend)?;
        Ok(Arc::new(Self {
            db,
            tree,
            lineage,
            fsync: config.fsync,
            write_lock: Arc::new(Mutex::new(())),
        }))
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.fsync {
            self.db.flush().map_err(backend)?;
        }
        Ok(())
    }

    fn read_head(tree: &sled::Tree, workspace: &str) -> Result<Option<ChainHead>, StoreError> {
        match tree
            .get(key(b'H', &[workspace.as_bytes()]))
            .map_err(backend)?
        {
            Some(bytes) => decode_head(workspace, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn commit_blocking(&self, events: Vec<PreparedEvent>) -> Result<Committed, StoreError> {
        let _serial = self.write_lock.lock().expect("write lock poisoned");
        let mut heads = BTreeMap::new();
        let mut checkpoint_seqs = BTreeMap::new();
        for prepared in &events {
            let ws = &prepared.event.workspace;
            if !heads.contains_key(ws) {
                let head = Self::read_head(&self.tree, ws)?;
                heads.insert(
                    ws.clone(),
                    head.as_ref()
                        .map_or((0, Digest::GENESIS), |h| (h.seq, h.hash)),
                );
                checkpoint_seqs.insert(ws.clone(), head.map_or(0, |h| h.checkpoint_seq));
            }
        }
        let links = link(&events, &mut heads);
        let mut batch = sled::Batch::default();
        let mut refs = Vec::with_capacity(events.len());
        for (prepared, (seq, prev, hash)) in events.iter().zip(links) {
            let event = &prepared.event;
            let ws = &event.workspace;
            let mut value = Vec::with_capacity(64 + prepared.canonical.len());
            value.extend_from_slice(&prev.0);
            value.extend_from_slice(&hash.0);
            value.extend_from_slice(prepared.canonical.as_bytes());
            batch.insert(entry_key(ws, seq), value);
            batch.insert(time_key(event.at_ms, ws, seq), &[]);
            batch.insert(actor_key(event.actor.id(), event.at_ms, ws, seq), &[]);
            refs.push(super::AuditRef {
                workspace: ws.clone(),
                seq,
                hash,
            });
        }
        let mut new_heads = Vec::with_capacity(heads.len());
        for (ws, (seq, hash)) in heads {
            let checkpoint_seq = checkpoint_seqs[&ws];
            batch.insert(
                key(b'H', &[ws.as_bytes()]),
                encode_head(seq, &hash, checkpoint_seq),
            );
            new_heads.push(ChainHead {
                workspace: ws,
                seq,
                hash,
                checkpoint_seq,
            });
        }
        self.tree.apply_batch(batch).map_err(backend)?;
        self.flush()?;
        Ok(Committed {
            refs,
            heads: new_heads,
        })
    }

    fn checkpoint_blocking(
        &self,
        workspace: &str,
        keys: &AuditKeys,
        at_ms: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let _serial = self.write_lock.lock().expect("write lock poisoned");
        let Some(head) = Self::read_head(&self.tree, workspace)? else {
            return Ok(None);
        };
        if head.seq == 0 || head.seq <= head.checkpoint_seq {
            return Ok(None);
        }
        let checkpoint =
            keys.checkpoint(workspace, head.seq, head.hash, head.checkpoint_seq, at_ms);
        let json = serde_json::to_vec(&checkpoint).expect("checkpoints serialize");
        let mut batch = sled::Batch::default();
        batch.insert(checkpoint_key(workspace, head.seq), json);
        batch.insert(
            key(b'H', &[workspace.as_bytes()]),
            encode_head(head.seq, &head.hash, head.seq),
        );
        self.tree.apply_batch(batch).map_err(backend)?;
        self.flush()?;
        Ok(Some(checkpoint))
    }

    fn read_chain_blocking(
        &self,
        workspace: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let start = entry_key(workspace, from_seq);
        let end = entry_key(workspace, u64::MAX);
        let mut out = Vec::new();
        for item in self.tree.range(start..=end).take(limit) {
            let (k, v) = item.map_err(backend)?;
            let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
            let mut raw = decode_entry(workspace, seq, &v)?;
            // Both indexes must point at the entry under what it says.
            raw.index_ok = match serde_json::from_str::<crate::audit::AuditEvent>(&raw.event_json) {
                Ok(event) => {
                    self.tree
                        .contains_key(time_key(event.at_ms, workspace, seq))
                        .map_err(backend)?
                        && self
                            .tree
                            .contains_key(actor_key(event.actor.id(), event.at_ms, workspace, seq))
                            .map_err(backend)?
                }
                // Unreadable events are reported as such, not as an index fault.
                Err(_) => true,
            };
            out.push(raw);
        }
        Ok(out)
    }

    fn search_blocking(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = query.page_size();
        // The by-actor index when an actor is asked for (the GDPR access
        // report's query), else the time index; other filters are checked
        // on each entry.
        let prefix = match &query.actor {
            Some(actor) => actor_prefix(actor),
            None => vec![b'T'],
        };
        let from = query.from_ms.unwrap_or(0);
        let mut start = prefix.clone();
        start.extend_from_slice(&from.to_be_bytes());
        if let Some(after) = &query.after
            && after.at_ms >= from
        {
            start = prefix.clone();
            start.extend_from_slice(&time_key(after.at_ms, &after.workspace, after.seq)[1..]);
            // Strictly after: the smallest key greater than the cursor's.
            start.push(0);
        }
        let mut entries = Vec::new();
        for item in self.tree.range(start..) {
            let (k, _) = item.map_err(backend)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let position = parse_position(&k[prefix.len()..])
                .ok_or_else(|| corrupt("audit index", "malformed key"))?;
            if query.to_ms.is_some_and(|to| position.at_ms >= to) {
                break;
            }
            if query
                .workspace
                .as_ref()
                .is_some_and(|w| *w != position.workspace)
            {
                continue;
            }
            let Some(value) = self
                .tree
                .get(entry_key(&position.workspace, position.seq))
                .map_err(backend)?
            else {
                // Pruned between reading the index and the entry.
                continue;
            };
            let raw = decode_entry(&position.workspace, position.seq, &value)?;
            let entry = AuditEntry::from_raw(&raw)?;
            if query.matches(&entry) {
                entries.push(entry);
                if entries.len() == limit {
                    break;
                }
            }
        }
        let next = (entries.len() == limit)
            .then(|| entries.last().map(Cursor::after))
            .flatten();
        Ok(AuditPage { entries, next })
    }

    fn prune_blocking(&self, anchor: Anchor) -> Result<PruneOutcome, StoreError> {
        let ws = anchor.workspace.clone();
        let mut doomed = Vec::new();
        let mut count = 0u64;
        let most = usize::try_from(anchor.through_seq)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        for raw in self.read_chain_blocking(&ws, 0, most)? {
            if raw.seq > anchor.through_seq {
                break;
            }
            count += 1;
            doomed.push(entry_key(&ws, raw.seq));
            // An unreadable event (verification refuses to prune those,
            // so only a race with tampering) leaves index keys that point
            // nowhere; searches skip them.
            if let Ok(event) = serde_json::from_str::<crate::audit::AuditEvent>(&raw.event_json) {
                doomed.push(time_key(event.at_ms, &ws, raw.seq));
                doomed.push(actor_key(event.actor.id(), event.at_ms, &ws, raw.seq));
            }
        }
        let cp_start = checkpoint_key(&ws, 0);
        let cp_end = checkpoint_key(&ws, anchor.through_seq);
        for k in self.tree.range(cp_start..=cp_end).keys() {
            doomed.push(k.map_err(backend)?.to_vec());
        }
        let anchor_json = serde_json::to_vec(&anchor).expect("anchors serialize");
        let hold_key = setting_key(&ws, LEGAL_HOLD_KEY);
        let result = (&self.tree,).transaction(|(tree,)| {
            if tree.get(&hold_key)?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            for k in &doomed {
                tree.remove(k.as_slice())?;
            }
            tree.insert(key(b'P', &[ws.as_bytes()]), anchor_json.as_slice())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.flush()?;
                Ok(PruneOutcome::Pruned { entries: count })
            }
            Err(TransactionError::Abort(())) => Ok(PruneOutcome::Held),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn edges_blocking(&self, node_key: &str) -> Result<Vec<LineageEdge>, StoreError> {
        let mut prefix = node_key.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.lineage.scan_prefix(&prefix) {
            let (_, v) = item.map_err(backend)?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| corrupt(format!("lineage edge of {node_key}"), e.to_string()))?,
            );
        }
        Ok(out)
    }
}

/// Runs a method of the store on the blocking pool.
macro_rules! on_pool {
    ($self:ident, |$store:ident| $body:expr) => {{
        let $store = $self.clone_handles();
        blocking(move || $body).await
    }};
}

impl SledStore {
    /// A second handle on the same trees, to move into a blocking task.
    fn clone_handles(&self) -> SledStore {
        SledStore {
            db: self.db.clone(),
            tree: self.tree.clone(),
            lineage: self.lineage.clone(),
            fsync: self.fsync,
            write_lock: self.write_lock.clone(),
        }
    }
}

#[async_trait]
impl AuditStore for SledStore {
    fn kind(&self) -> &'static str {
        "sled"
    }

    async fn commit(&self, events: Vec<PreparedEvent>) -> Result<Committed, StoreError> {
        on_pool!(self, |store| store.commit_blocking(events))
    }

    async fn checkpoint(
        &self,
        workspace: &str,
        keys: &AuditKeys,
        at_ms: u64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let (workspace, keys) = (workspace.to_owned(), keys.clone());
        on_pool!(self, |store| store
            .checkpoint_blocking(&workspace, &keys, at_ms))
    }

    async fn head(&self, workspace: &str) -> Result<Option<ChainHead>, StoreError> {
        let workspace = workspace.to_owned();
        on_pool!(self, |store| Self::read_head(&store.tree, &workspace))
    }

    async fn workspaces(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, |store| {
            let mut out = Vec::new();
            for k in store.tree.scan_prefix(b"H").keys() {
                let k = k.map_err(backend)?;
                out.push(
                    String::from_utf8(k[1..].to_vec())
                        .map_err(|_| corrupt("chain heads", "workspace is not UTF-8"))?,
                );
            }
            Ok(out)
        })
    }

    async fn read_chain(
        &self,
        workspace: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<RawEntry>, StoreError> {
        let workspace = workspace.to_owned();
        on_pool!(self, |store| store
            .read_chain_blocking(&workspace, from_seq, limit))
    }

    async fn checkpoints(&self, workspace: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let workspace = workspace.to_owned();
        on_pool!(self, |store| {
            let mut out = Vec::new();
            let start = checkpoint_key(&workspace, 0);
            let end = checkpoint_key(&workspace, u64::MAX);
            for item in store.tree.range(start..=end) {
                let (k, v) = item.map_err(backend)?;
                let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
                let mut checkpoint: Checkpoint = serde_json::from_slice(&v).map_err(|e| {
                    corrupt(format!("checkpoint {workspace} #{seq}"), e.to_string())
                })?;
                // The key is where verification looks for it; a moved
                // checkpoint keeps its signed seq and fails to verify there.
                checkpoint.workspace.clone_from(&workspace);
                out.push(checkpoint);
            }
            Ok(out)
        })
    }

    async fn anchor(&self, workspace: &str) -> Result<Option<Anchor>, StoreError> {
        let workspace = workspace.to_owned();
        on_pool!(self, |store| {
            match store
                .tree
                .get(key(b'P', &[workspace.as_bytes()]))
                .map_err(backend)?
            {
                Some(v) => serde_json::from_slice(&v)
                    .map(Some)
                    .map_err(|e| corrupt(format!("anchor of {workspace}"), e.to_string())),
                None => Ok(None),
            }
        })
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let query = query.clone();
        on_pool!(self, |store| store.search_blocking(&query))
    }

    async fn prune(&self, anchor: Anchor) -> Result<PruneOutcome, StoreError> {
        on_pool!(self, |store| store.prune_blocking(anchor))
    }

    async fn settings(&self, workspace: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let workspace = workspace.to_owned();
        on_pool!(self, |store| {
            let prefix = key(b'S', &[workspace.as_bytes(), &[0]]);
            let mut out = BTreeMap::new();
            for item in store.tree.scan_prefix(&prefix) {
                let (k, v) = item.map_err(backend)?;
                let name = String::from_utf8(k[prefix.len()..].to_vec());
                let value = String::from_utf8(v.to_vec());
                match (name, value) {
                    (Ok(name), Ok(value)) => {
                        out.insert(name, value);
                    }
                    _ => return Err(corrupt(format!("settings of {workspace}"), "not UTF-8")),
                }
            }
            Ok(out)
        })
    }

    async fn set_setting(
        &self,
        workspace: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), StoreError> {
        let k = setting_key(workspace, name);
        on_pool!(self, |store| {
            match value {
                Some(v) => store.tree.insert(k, v.as_bytes()).map_err(backend)?,
                None => store.tree.remove(k).map_err(backend)?,
            };
            store.flush()
        })
    }

    async fn configured_workspaces(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, |store| {
            let mut out: Vec<String> = Vec::new();
            for k in store.tree.scan_prefix(b"S").keys() {
                let k = k.map_err(backend)?;
                let end = k.iter().position(|b| *b == 0).unwrap_or(k.len());
                let ws = String::from_utf8(k[1..end].to_vec())
                    .map_err(|_| corrupt("settings", "workspace is not UTF-8"))?;
                if out.last() != Some(&ws) {
                    out.push(ws);
                }
            }
            Ok(out)
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        on_pool!(self, |store| store
            .tree
            .get(b"H")
            .map(|_| ())
            .map_err(backend))
    }
}

#[async_trait]
impl LineageStore for SledStore {
    async fn record_edge(&self, edge: &LineageEdge) -> Result<(), StoreError> {
        let json = serde_json::to_vec(edge).expect("edges serialize");
        let (from, to) = (edge.from.key(), edge.to.key());
        on_pool!(self, |store| {
            let id = store.db.generate_id().map_err(backend)?.to_be_bytes();
            let mut batch = sled::Batch::default();
            for node in [&from, &to] {
                let mut k = node.as_bytes().to_vec();
                k.push(0);
                k.extend_from_slice(&id);
                batch.insert(k, json.as_slice());
            }
            store.lineage.apply_batch(batch).map_err(backend)?;
            store.flush()
        })
    }

    async fn edges_touching(&self, node_key: &str) -> Result<Vec<LineageEdge>, StoreError> {
        let node_key = node_key.to_owned();
        on_pool!(self, |store| store.edges_blocking(&node_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_positions_parse_back() {
        let k = time_key(5, "acme", 9);
        assert_eq!(
            parse_position(&k[1..]),
            Some(Cursor {
                at_ms: 5,
                workspace: "acme".into(),
                seq: 9
            })
        );
        let k = actor_key("alice", 5, "acme", 9);
        assert_eq!(
            parse_position(&k[actor_prefix("alice").len()..]).map(|c| c.seq),
            Some(9)
        );
    }
}
