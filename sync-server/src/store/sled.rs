//! The embedded default store, on `sled`, with group commit.
//!
//! Trees: `log` maps `name 0x00 seq(u64 BE)` to a log entry, `snapshots`
//! maps `name` to the latest snapshot, `docs` lists names ever written.
//! Document names cannot contain `0x00`, so prefixes never collide.
//!
//! All appends go through one writer thread. It takes every append queued
//! while the previous commit was syncing, writes them as one atomic batch and
//! syncs once: under load, one fsync covers many documents' updates, and no
//! caller is told "durable" before the sync that covers it returned.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use crdt_core::Encoding;
use tokio::sync::oneshot;

use super::entry::{decode_snapshot, decode_update, encode_snapshot, encode_update};
use super::sled_history::SledHistory;
use super::{Appended, DocStore, NewUpdate, Snapshot, StoreError, StoredDoc};
use crate::docs::DocName;

/// Settings of the sled store.
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// Directory of the database.
    pub path: PathBuf,
    /// sled's page cache, in bytes. sled's own default (1 GiB) is far more
    /// than a sync server's working set, which lives in document tasks.
    pub cache_bytes: u64,
    /// Sync to disk before acknowledging an append. Without it sled holds
    /// appends in process memory until its background flush (every 500 ms),
    /// so even a process crash can lose acknowledged updates.
    pub fsync: bool,
    /// Extra time the writer waits to gather more appends into one commit.
    /// Zero commits as soon as the previous commit finished.
    pub commit_delay: Duration,
}

struct Job {
    doc: DocName,
    updates: Vec<NewUpdate>,
    ack: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The sled-backed [`DocStore`].
pub struct SledStore {
    trees: Trees,
    history: SledHistory,
    /// `None` once closed.
    writer: Mutex<Option<(std_mpsc::Sender<Job>, JoinHandle<()>)>>,
}

/// The database and its trees: cheap reference-counted handles, cloned into
/// blocking tasks rather than borrowed across threads.
#[derive(Clone)]
struct Trees {
    db: sled::Db,
    log: sled::Tree,
    snapshots: sled::Tree,
    docs: sled::Tree,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn prefix(doc: &DocName) -> Vec<u8> {
    let mut key = Vec::with_capacity(doc.as_str().len() + 9);
    key.extend_from_slice(doc.as_str().as_bytes());
    key.push(0);
    key
}

fn log_key(doc: &DocName, seq: u64) -> Vec<u8> {
    let mut key = prefix(doc);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[tail..].try_into().ok()?))
}

impl SledStore {
    /// Opens (or creates) the database and starts the writer thread.
    pub fn open(config: SledConfig) -> Result<Arc<Self>, StoreError> {
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            .open()
            .map_err(backend)?;
        let log = db.open_tree("log").map_err(backend)?;
        let snapshots = db.open_tree("snapshots").map_err(backend)?;
        let docs = db.open_tree("docs").map_err(backend)?;
        let trees = Trees {
            db,
            log,
            snapshots,
            docs,
        };
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            trees: trees.clone(),
            fsync: config.fsync,
            commit_delay: config.commit_delay,
            next_seq: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("sled-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Arc::new(Self {
            history: SledHistory::open(&trees.db)?,
            trees,
            writer: Mutex::new(Some((tx, thread))),
        }))
    }

    pub(super) fn history(&self) -> &SledHistory {
        &self.history
    }

    fn sender(&self) -> Result<std_mpsc::Sender<Job>, StoreError> {
        let guard = self.writer.lock().expect("writer lock poisoned");
        guard
            .as_ref()
            .map(|(tx, _)| tx.clone())
            .ok_or(StoreError::Closed)
    }
}

impl Trees {
    fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            doc: doc.to_string(),
            reason,
        };
        let snapshot = match self.snapshots.get(doc.as_str()).map_err(backend)? {
            Some(bytes) => Some(decode_snapshot(&bytes).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        let through = snapshot.as_ref().map_or(0, |s| s.through_seq);
        // Entries at or below the snapshot are leftovers of a compaction
        // that stopped between writing the snapshot and trimming the log.
        let start = log_key(doc, through.saturating_add(1));
        let end = log_key(doc, u64::MAX);
        let mut log = Vec::new();
        for item in self.log.range(start..=end) {
            let (key, value) = item.map_err(backend)?;
            let seq = seq_of(&key).ok_or_else(|| corrupt("bad log key".into()))?;
            log.push(decode_update(seq, &value).map_err(|e| corrupt(format!("entry {seq}: {e}")))?);
        }
        Ok(StoredDoc { snapshot, log })
    }

    fn compact(&self, doc: &DocName, snapshot: &Snapshot) -> Result<(), StoreError> {
        // Snapshot first and synced: a crash before the trim below leaves
        // old entries that loading skips, never a gap.
        self.snapshots
            .insert(doc.as_str(), encode_snapshot(snapshot))
            .map_err(backend)?;
        self.db.flush().map_err(backend)?;
        let mut trim = sled::Batch::default();
        for key in self
            .log
            .range(log_key(doc, 0)..=log_key(doc, snapshot.through_seq))
            .keys()
        {
            trim.remove(key.map_err(backend)?);
        }
        self.log.apply_batch(trim).map_err(backend)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

#[async_trait]
impl DocStore for SledStore {
    fn kind(&self) -> &'static str {
        "sled"
    }

    async fn load(&self, doc: &DocName) -> Result<StoredDoc, StoreError> {
        let trees = self.trees.clone();
        let doc = doc.clone();
        blocking(move || trees.load(&doc)).await
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
        let trees = self.trees.clone();
        let doc = doc.clone();
        blocking(move || trees.compact(&doc, &snapshot)).await
    }

    async fn list(&self) -> Result<Vec<DocName>, StoreError> {
        let docs = self.trees.docs.clone();
        blocking(move || {
            let mut names = Vec::new();
            for key in docs.iter().keys() {
                let key = key.map_err(backend)?;
                if let Ok(name) = std::str::from_utf8(&key).map(DocName::parse)
                    && let Ok(name) = name
                {
                    names.push(name);
                }
            }
            Ok(names)
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let guard = self.writer.lock().expect("writer lock poisoned");
        match guard.as_ref() {
            Some((_, thread)) if !thread.is_finished() => Ok(()),
            Some(_) => Err(StoreError::Backend("writer thread stopped".into())),
            None => Err(StoreError::Closed),
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        let writer = self.writer.lock().expect("writer lock poisoned").take();
        let db = self.trees.db.clone();
        blocking(move || {
            if let Some((tx, thread)) = writer {
                // Dropping the sender lets the writer finish queued commits and exit.
                drop(tx);
                thread
                    .join()
                    .map_err(|_| StoreError::Backend("writer thread panicked".into()))?;
            }
            db.flush().map(|_| ()).map_err(backend)
        })
        .await
    }
}

/// The single thread that commits appends.
struct Writer {
    trees: Trees,
    fsync: bool,
    commit_delay: Duration,
    /// Next sequence number per document seen since start.
    next_seq: HashMap<DocName, u64>,
}

/// Most appends folded into one commit; bounds the batch's memory.
const MAX_JOBS_PER_COMMIT: usize = 4096;

impl Writer {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            if !self.commit_delay.is_zero() {
                std::thread::sleep(self.commit_delay);
            }
            let mut batch = vec![first];
            while batch.len() < MAX_JOBS_PER_COMMIT {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            match self.commit(&batch) {
                Ok(ranges) => {
                    for (job, range) in batch.into_iter().zip(ranges) {
                        // A caller that gave up waiting no longer needs the answer.
                        let _ignored = job.ack.send(Ok(range));
                    }
                }
                Err(error) => {
                    for job in batch {
                        // Sequence numbers handed out in a failed batch were
                        // never written; re-read them from disk next time.
                        self.next_seq.remove(&job.doc);
                        let _ignored = job.ack.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Writes `jobs` as one batch; returns each job's sequence range.
    fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Appended>, StoreError> {
        let mut batch = sled::Batch::default();
        let mut ranges = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut seq = self.next_seq_for(&job.doc)?;
            ranges.push(Appended {
                first_seq: seq,
                last_seq: seq + job.updates.len() as u64 - 1,
            });
            for update in &job.updates {
                let entry =
                    encode_update(Encoding::V1, update.at_ms, &update.origin, &update.update);
                batch.insert(log_key(&job.doc, seq), entry);
                seq += 1;
            }
            self.next_seq.insert(job.doc.clone(), seq);
        }
        self.trees.log.apply_batch(batch).map_err(backend)?;
        if self.fsync {
            self.trees.db.flush().map_err(backend)?;
        }
        Ok(ranges)
    }

    fn next_seq_for(&mut self, doc: &DocName) -> Result<u64, StoreError> {
        if let Some(&seq) = self.next_seq.get(doc) {
            return Ok(seq);
        }
        let in_log = self
            .trees
            .log
            .scan_prefix(prefix(doc))
            .keys()
            .next_back()
            .transpose()
            .map_err(backend)?
            .and_then(|k| seq_of(&k))
            .unwrap_or(0);
        let in_snapshot = match self.trees.snapshots.get(doc.as_str()).map_err(backend)? {
            Some(bytes) => decode_snapshot(&bytes).map_or(0, |s| s.through_seq),
            None => 0,
        };
        if in_log == 0 && in_snapshot == 0 {
            self.trees.docs.insert(doc.as_str(), &[]).map_err(backend)?;
        }
        Ok(in_log.max(in_snapshot) + 1)
    }
}
