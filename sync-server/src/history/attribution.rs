//! Attribution: collecting who wrote what while a document is edited, and
//! resolving item ids back to people when two versions are compared.

use std::collections::HashMap;

use crdt_core::Change;
use yrs::{ClientID, ID, IdSet};

use super::Bucket;

/// One document's attribution since the last flush.
#[derive(Debug, Default)]
pub struct Attribution {
    /// (origin, minute) → what it did since the last flush.
    pending: HashMap<(String, u64), Bucket>,
    /// The minute each origin last edited in: an edit in a new minute is an
    /// activity event.
    last_minute: HashMap<String, u64>,
}

impl Attribution {
    /// Records an accepted change; returns whether it is this author's first
    /// edit of the minute (worth an activity event).
    pub fn record(&mut self, origin: &str, change: &Change, at_ms: u64) -> bool {
        let minute = at_ms / 60_000;
        let bucket = self
            .pending
            .entry((origin.to_owned(), minute))
            .or_insert_with(|| Bucket {
                origin: origin.to_owned(),
                minute,
                updates: 0,
                bytes: 0,
                inserted: IdSet::default(),
                deleted: IdSet::default(),
            });
        bucket.updates += 1;
        bucket.bytes += change.update.len() as u64;
        bucket.inserted.merge_with(change.inserted.clone());
        bucket.deleted.merge_with(change.deleted.clone());
        let first = self.last_minute.insert(origin.to_owned(), minute) != Some(minute);
        if self.last_minute.len() > 10_000 {
            self.last_minute.retain(|_, m| *m == minute);
        }
        first
    }

    /// Takes what was recorded since the last call, to store.
    pub fn take(&mut self) -> Vec<Bucket> {
        self.pending.drain().map(|(_, bucket)| bucket).collect()
    }

    /// Puts back buckets whose write failed, merged with what was recorded
    /// meanwhile, so the next write carries both.
    pub fn restore(&mut self, buckets: Vec<Bucket>) {
        for bucket in buckets {
            match self.pending.entry((bucket.origin.clone(), bucket.minute)) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(bucket);
                }
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    slot.get_mut().absorb(bucket);
                }
            }
        }
    }

    /// Items `origin` inserted in what awaits storing.
    pub fn inserted_by(&self, origin: &str) -> IdSet {
        let mut items = IdSet::default();
        for bucket in self.pending.values().filter(|b| b.origin == origin) {
            items.merge_with(bucket.inserted.clone());
        }
        items
    }

    /// Names `to` instead of `from` in what awaits storing.
    pub fn rename(&mut self, from: &str, to: &str) {
        let theirs: Vec<_> = self
            .pending
            .keys()
            .filter(|(origin, _)| origin == from)
            .cloned()
            .collect();
        let renamed = theirs
            .into_iter()
            .filter_map(|key| self.pending.remove(&key))
            .map(|bucket| Bucket {
                origin: to.to_owned(),
                ..bucket
            })
            .collect();
        self.restore(renamed);
        if let Some(minute) = self.last_minute.remove(from) {
            self.last_minute.insert(to.to_owned(), minute);
        }
    }

    /// Whether anything awaits storing.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Who wrote and who deleted which items, from stored buckets.
#[derive(Debug, Default)]
pub struct Authors {
    /// A Yjs client id belongs to one connection of one author.
    writers: HashMap<ClientID, String>,
    /// Deletions by author, with the minute.
    deletions: Vec<(String, u64, IdSet)>,
}

impl Authors {
    /// Builds the lookup from a document's buckets.
    pub fn from_buckets(buckets: &[Bucket]) -> Self {
        let mut authors = Self::default();
        for bucket in buckets {
            for client in bucket.inserted.client_ids() {
                authors
                    .writers
                    .entry(client)
                    .or_insert_with(|| bucket.origin.clone());
            }
            if !bucket.deleted.is_empty() {
                authors.deletions.push((
                    bucket.origin.clone(),
                    bucket.minute,
                    bucket.deleted.clone(),
                ));
            }
        }
        authors
    }

    /// Who wrote the item `(client, clock)`.
    pub fn writer(&self, client: u64) -> Option<&str> {
        self.writers.get(&ClientID::new(client)).map(String::as_str)
    }

    /// Who deleted the item, between two times (milliseconds).
    pub fn deleter(&self, client: u64, clock: u32, after_ms: u64, until_ms: u64) -> Option<&str> {
        let id = ID::new(ClientID::new(client), clock);
        let (from, to) = (after_ms / 60_000, until_ms / 60_000);
        self.deletions
            .iter()
            .filter(|(_, minute, _)| (from..=to).contains(minute))
            .find(|(_, _, deleted)| deleted.contains(&id))
            .map(|(origin, _, _)| origin.as_str())
    }
}
