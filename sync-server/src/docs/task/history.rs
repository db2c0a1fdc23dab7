//! A document task's history work: attribution of every accepted change,
//! automatic and named versions, restores, and activity events.
//!
//! Versions are encoded from the document when asked for and held behind
//! the durability pipeline like any other output, so a stored version
//! never reflects an update the log could still lose. Attribution and
//! activity are batched: at most one store write of each is in flight per
//! document, and what arrives meanwhile joins the next one. A write that
//! fails is put back and retried after [`RETRY_AFTER`]; a document does not
//! unload while history waits to be stored. Neither grows without bound
//! while the store is down: the update log fails too, so edits stop being
//! accepted, and attribution is kept per author and minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crdt_core::wire::VersionRequest;
use crdt_core::{Change, Document, Encoding};
use tokio::sync::oneshot;

use super::{DocTask, Event, now_ms};
use crate::docs::batch::{Held, PendingVersion};
use crate::docs::command::DocError;
use crate::history::{
    ActivityKind, Attribution, Bucket, NewActivity, NewVersion, VersionKind, VersionMeta,
};

/// Author of automatic versions.
const SYSTEM: &str = "system";

/// How long after a failed history write the next one is tried.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// History state of one document task.
#[derive(Default)]
pub(super) struct History {
    attribution: Attribution,
    /// Edits accepted since the last version.
    edits_since_version: u64,
    /// When the last edit was accepted.
    last_edit: Option<Instant>,
    /// Activity waiting to be stored.
    activity: Vec<NewActivity>,
    /// An activity write is in flight.
    storing_activity: bool,
    /// An attribution write is in flight.
    storing_attribution: bool,
    /// A history write failed: no new one before this.
    retry_at: Option<Instant>,
    /// An automatic version is held or being stored.
    auto_pending: bool,
}

/// A version loaded for a restore.
pub(super) struct LoadedRestore {
    version: u64,
    target: Document,
    author: String,
    reply: oneshot::Sender<Result<VersionMeta, DocError>>,
}

/// When automatic versions are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoVersions {
    /// After edits stop for this long.
    pub idle: Duration,
    /// After this many edits, even while editing goes on.
    pub every_edits: u64,
}

impl Default for AutoVersions {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(300),
            every_edits: 1000,
        }
    }
}

impl History {
    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }
}

impl DocTask {
    /// Records an accepted change for attribution and activity.
    pub(super) fn record_edit(&mut self, origin: &str, change: &Change, at_ms: u64) {
        if self.history.attribution.record(origin, change, at_ms) {
            self.record_activity(origin, ActivityKind::Edit);
        }
        self.history.edits_since_version += 1;
        self.history.last_edit = Some(Instant::now());
    }

    /// Queues an activity event; stores it now unless a write is in flight.
    pub(super) fn record_activity(&mut self, actor: &str, kind: ActivityKind) {
        if self.shared.config.relay {
            return;
        }
        self.history.activity.push(NewActivity {
            document: self.name.to_string(),
            actor: actor.to_owned(),
            at_ms: now_ms(),
            kind,
        });
        self.store_activity();
    }

    fn store_activity(&mut self) {
        if self.history.storing_activity
            || self.history.activity.is_empty()
            || self.history.backing_off()
        {
            return;
        }
        self.history.storing_activity = true;
        let events = std::mem::take(&mut self.history.activity);
        let shared = self.shared.clone();
        let done = self.events_tx.clone();
        self.shared.tracker.spawn(async move {
            let result = match shared.store.add_activity(events.clone()).await {
                Ok(stored) => {
                    shared.activity.publish(&stored);
                    Ok(())
                }
                Err(error) => {
                    shared.metrics.store_errors.inc();
                    tracing::warn!(%error, "activity events could not be stored; will retry");
                    Err(events)
                }
            };
            let _task_gone = done.send(Event::ActivityStored(result));
        });
    }

    pub(super) fn on_activity_stored(&mut self, result: Result<(), Vec<NewActivity>>) {
        self.history.storing_activity = false;
        match result {
            Ok(()) => self.history.retry_at = None,
            Err(mut events) => {
                events.append(&mut self.history.activity);
                self.history.activity = events;
                self.history.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
        self.store_activity();
    }

    /// Stores attribution recorded since the last flush (one write at a
    /// time; a failed one is merged back and retried).
    pub(super) fn flush_attribution(&mut self) {
        if self.history.storing_attribution
            || self.history.attribution.is_empty()
            || self.history.backing_off()
        {
            return;
        }
        self.history.storing_attribution = true;
        let buckets = self.history.attribution.take();
        let shared = self.shared.clone();
        let name = self.name.clone();
        let done = self.events_tx.clone();
        self.shared.tracker.spawn(async move {
            let result = match shared.store.add_attribution(&name, buckets.clone()).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    shared.metrics.store_errors.inc();
                    tracing::warn!(doc = %name, %error, "attribution could not be stored; will retry");
                    Err(buckets)
                }
            };
            let _task_gone = done.send(Event::AttributionStored(result));
        });
    }

    pub(super) fn on_attribution_stored(&mut self, result: Result<(), Vec<Bucket>>) {
        self.history.storing_attribution = false;
        match result {
            Ok(()) => self.history.retry_at = None,
            Err(buckets) => {
                self.history.attribution.restore(buckets);
                self.history.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// Whether history is written or waiting to be: the document stays
    /// loaded until it is stored.
    pub(super) fn history_pending(&self) -> bool {
        let h = &self.history;
        h.storing_activity
            || h.storing_attribution
            || !h.activity.is_empty()
            || !h.attribution.is_empty()
    }

    /// Retries history writes that failed, once their wait is over.
    pub(super) fn retry_history(&mut self) {
        self.store_activity();
        self.flush_attribution();
    }

    /// Takes an automatic version when edits stopped for long enough or
    /// enough of them piled up.
    pub(super) fn auto_version_if_due(&mut self) {
        let auto = self.shared.config.versions;
        let history = &self.history;
        let due = history.edits_since_version > 0
            && !history.auto_pending
            && (history.edits_since_version >= auto.every_edits
                || history
                    .last_edit
                    .is_some_and(|at| at.elapsed() >= auto.idle));
        if due {
            self.history.auto_pending = true;
            let label = format!("{} edits", self.history.edits_since_version);
            self.save_version(
                VersionKind::Auto,
                label,
                None,
                SYSTEM.to_owned(),
                None,
                None,
            );
        }
    }

    /// A named version asked for over WebSocket or HTTP.
    pub(super) fn save_named(
        &mut self,
        request: VersionRequest,
        author: String,
        reply: Option<oneshot::Sender<Result<VersionMeta, DocError>>>,
    ) {
        let VersionRequest { label, description } = request;
        self.save_version(VersionKind::Named, label, description, author, reply, None);
    }

    /// Encodes the current state as a version, stored once durable.
    fn save_version(
        &mut self,
        kind: VersionKind,
        label: String,
        description: Option<String>,
        author: String,
        reply: Option<oneshot::Sender<Result<VersionMeta, DocError>>>,
        restored: Option<u64>,
    ) {
        self.history.edits_since_version = 0;
        let version = NewVersion {
            kind,
            label,
            description,
            author,
            created_ms: now_ms(),
            seq: 0,
            state: self.doc.encode_state(Encoding::V2),
        };
        self.hold(Held::Version(Box::new(PendingVersion {
            version,
            reply,
            restored,
        })));
    }

    /// Stores a version whose updates are durable.
    pub(super) fn store_version(&mut self, pending: PendingVersion) {
        let PendingVersion {
            mut version,
            reply,
            restored,
        } = pending;
        version.seq = self.sequence.watermark();
        let shared = self.shared.clone();
        let name = self.name.clone();
        let done = self.events_tx.clone();
        self.shared.tracker.spawn(async move {
            let result = shared.store.add_version(&name, version).await;
            let _task_gone = done.send(Event::VersionStored {
                result: result.clone().map_err(DocError::from),
                restored,
            });
            if let Some(reply) = reply {
                let _gone = reply.send(result.map_err(DocError::from));
            }
        });
    }

    pub(super) fn on_version_stored(
        &mut self,
        result: Result<VersionMeta, DocError>,
        restored: Option<u64>,
    ) {
        let Ok(meta) = result else {
            self.shared.metrics.store_errors.inc();
            tracing::warn!(doc = %self.name, "a version could not be stored");
            self.history.auto_pending = false;
            return;
        };
        if meta.kind == VersionKind::Auto {
            self.history.auto_pending = false;
        }
        self.shared.metrics.versions_saved.inc();
        let kind = match restored {
            Some(version) => ActivityKind::Restore { version },
            None => ActivityKind::Version {
                version: meta.id,
                kind: meta.kind,
                label: meta.label.clone(),
            },
        };
        self.record_activity(&meta.author, kind);
    }

    /// Loads a version's state off the task, to restore it.
    pub(super) fn load_restore(
        &mut self,
        version: u64,
        state: Arc<Vec<u8>>,
        author: String,
        reply: oneshot::Sender<Result<VersionMeta, DocError>>,
    ) {
        let limits = self.shared.config.limits.clone();
        let done = self.events_tx.clone();
        self.shared.tracker.spawn(async move {
            let loaded = tokio::task::spawn_blocking(move || {
                Document::load(limits, Some((Encoding::V2, state.as_slice())), [])
            })
            .await;
            let target = match loaded {
                Ok(Ok(target)) => target,
                Ok(Err(error)) => {
                    let _gone = reply.send(Err(DocError::Load(error)));
                    return;
                }
                Err(error) => {
                    let _gone = reply.send(Err(DocError::Restore(error.to_string())));
                    return;
                }
            };
            let loaded = LoadedRestore {
                version,
                target,
                author,
                reply,
            };
            let _task_gone = done.send(Event::RestoreLoaded(Box::new(loaded)));
        });
    }

    /// Edits the document back to the loaded version's content, as its
    /// author, and records the result as a restore version.
    pub(super) fn restore(&mut self, loaded: LoadedRestore) {
        let LoadedRestore {
            version,
            target,
            author,
            reply,
        } = loaded;
        let edit = match self.doc.restore_to(&target) {
            Ok(edit) => edit,
            Err(error) => {
                let _gone = reply.send(Err(error.into()));
                return;
            }
        };
        if let Some(update) = edit
            && let Err(error) = self.accept_own(&author, update)
        {
            let _gone = reply.send(Err(DocError::Restore(error)));
            return;
        }
        let label = format!("Restored version {version}");
        self.save_version(
            VersionKind::Restore,
            label,
            None,
            author,
            Some(reply),
            Some(version),
        );
    }

    /// Items `origin` inserted whose attribution is not stored yet.
    pub(super) fn pending_inserted_by(&self, origin: &str) -> yrs::IdSet {
        self.history.attribution.inserted_by(origin)
    }

    /// Names `to` instead of `from` in attribution and activity not yet
    /// stored (an erasure renames what is stored).
    pub(super) fn rename_pending_history(&mut self, from: &str, to: &str) {
        self.history.attribution.rename(from, to);
        for event in &mut self.history.activity {
            if event.actor == from {
                event.actor = to.to_owned();
            }
        }
    }

    /// Before the task unloads: store what history is still in memory. The
    /// pipeline is idle, so the version can be stored directly.
    /// The last history writes of a task that stops. Writes still in
    /// flight finish on their own; what fails here cannot be retried, so it
    /// is logged as an error with what was lost.
    pub(super) async fn flush_history(&mut self) {
        if !self.history.attribution.is_empty() {
            let buckets = self.history.attribution.take();
            let count = buckets.len();
            if let Err(error) = self.shared.store.add_attribution(&self.name, buckets).await {
                self.shared.metrics.store_errors.inc();
                tracing::error!(doc = %self.name, %error, buckets = count, "attribution lost at close");
            }
        }
        if self.history.edits_since_version > 0 && !self.history.auto_pending {
            let version = NewVersion {
                kind: VersionKind::Auto,
                label: format!("{} edits", self.history.edits_since_version),
                description: None,
                author: SYSTEM.to_owned(),
                created_ms: now_ms(),
                seq: self.sequence.watermark(),
                state: self.doc.encode_state(Encoding::V2),
            };
            match self.shared.store.add_version(&self.name, version).await {
                Ok(meta) => {
                    self.history.edits_since_version = 0;
                    self.on_version_stored(Ok(meta), None);
                }
                Err(error) => {
                    tracing::warn!(doc = %self.name, %error, "final version could not be stored");
                }
            }
        }
        if !self.history.activity.is_empty() {
            let events = std::mem::take(&mut self.history.activity);
            match self.shared.store.add_activity(events).await {
                Ok(stored) => self.shared.activity.publish(&stored),
                Err(error) => {
                    self.shared.metrics.store_errors.inc();
                    tracing::error!(doc = %self.name, %error, "activity events lost at close")
                }
            }
        }
    }
}
