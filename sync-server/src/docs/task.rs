//! The document task: the one owner of a document in memory.
//!
//! Every change to a document, every peer's session and presence run on
//! this task, so there are no locks around the CRDT and no creation race:
//! the registry hands every caller the same task. Connections decode frames
//! on their own tasks and send messages here; the task applies them, holds
//! what they reveal until it is durable (see [`super::batch`]), and fans
//! out coalesced frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crdt_core::{
    Applied, ApplyError, Change, Document, Effect, Encoding, FrameError, Presence, Scope, Session,
    SessionError, decode_with_references, wire,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{MissedTickBehavior, interval, sleep_until};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::DocName;
use super::batch::{Held, Pipeline};
use super::command::{Command, DocError, PresenceEntry, ReadKind, ReadOut};
use super::fanout::{self, Accepted};
use super::peer::{CloseReason, ConnId, PeerLink, SendError};
use super::registry::{DocShared, Registry};
use super::sequence::Sequence;
use crate::auth::Caller;
use crate::history::{ActivityKind, Bucket, NewActivity, VersionMeta};
use crate::store::{Appended, NewUpdate, Snapshot, StoreError, StoredDoc};

mod erasure;
mod history;
mod remote;

pub use self::erasure::{ERASURE_ORIGIN, EraseRequest, Erased};
pub use self::history::AutoVersions;

/// A batch this large is committed without waiting for its window: it
/// bounds the work (and the frame size) of one fan-out.
const MAX_BATCH_UPDATES: usize = 512;

struct Peer {
    link: PeerLink,
    session: Session,
}

/// Results of work the task started on other tasks.
enum Event {
    Committed(Result<Appended, StoreError>, Duration),
    Compacted(Result<(usize, usize), DocError>),
    ActivityStored(Result<(), Vec<NewActivity>>),
    AttributionStored(Result<(), Vec<Bucket>>),
    VersionStored {
        result: Result<VersionMeta, DocError>,
        restored: Option<u64>,
    },
    RestoreLoaded(Box<history::LoadedRestore>),
}

/// Why the task stops.
enum Stop {
    Idle,
    Shutdown,
    Failed(DocError),
}

pub(crate) struct DocTask {
    name: DocName,
    generation: u64,
    doc: Document,
    presence: Presence,
    peers: HashMap<ConnId, Peer>,
    pipeline: Pipeline,
    /// Log entries and bytes written since the last snapshot; compaction
    /// starts when either passes its threshold.
    log_entries: usize,
    log_bytes: usize,
    compacting: bool,
    /// Compactions asked for (after an erasure), and who waits for them.
    compaction: erasure::CompactionRequests,
    /// Held updates the document had dropped at the last housekeeping.
    held_dropped: u64,
    idle_since: Option<Instant>,
    /// Which log entries the document holds (see [`Sequence`]).
    sequence: Sequence,
    /// When the document last caught up from the store.
    caught_up_at: Instant,
    inbox: mpsc::Receiver<Command>,
    /// This task's own inbox, for the cluster to deliver to.
    inbox_tx: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    registry: Arc<Registry>,
    shared: Arc<DocShared>,
    history: history::History,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DocTask {
    pub(crate) fn new(
        name: DocName,
        generation: u64,
        (inbox_tx, inbox): (mpsc::Sender<Command>, mpsc::Receiver<Command>),
        registry: Arc<Registry>,
        shared: Arc<DocShared>,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            name,
            generation,
            doc: Document::new(shared.config.limits.clone()),
            presence: Presence::new(shared.config.presence_timeout.as_millis() as u64),
            peers: HashMap::new(),
            pipeline: Pipeline::default(),
            log_entries: 0,
            log_bytes: 0,
            compacting: false,
            compaction: erasure::CompactionRequests::default(),
            held_dropped: 0,
            idle_since: Some(Instant::now()),
            sequence: Sequence::new(0),
            caught_up_at: Instant::now(),
            inbox,
            inbox_tx,
            events,
            events_tx,
            registry,
            shared,
            history: history::History::default(),
        }
    }

    pub(crate) async fn run(mut self) {
        self.shared.metrics.documents_loaded.inc();
        let stop = match self.load().await {
            Ok(()) => self.serve().await,
            Err(error) => Stop::Failed(error),
        };
        self.finish(stop).await;
        self.shared.metrics.documents_loaded.dec();
    }

    /// Loads stored state; the inbox queues commands meanwhile.
    async fn load(&mut self) -> Result<(), DocError> {
        let stored = self.shared.store.load(&self.name).await?;
        self.log_entries = stored.log.len();
        self.log_bytes = stored.log_bytes();
        self.sequence = Sequence::new(stored.last_seq());
        self.doc = build(&self.shared, stored, Vec::new()).await?;
        if let Some(cluster) = &self.shared.cluster {
            cluster.join(&self.name, self.inbox_tx.clone());
            // Entries committed elsewhere between our read and the join
            // were announced to nobody here: read them.
            self.catch_up().await;
        }
        Ok(())
    }

    async fn serve(&mut self) -> Stop {
        let mut housekeeping = interval(self.shared.config.housekeeping_interval);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.shared.shutdown.clone();
        loop {
            let commit_at = self.commit_deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Stop::Shutdown,
                Some(event) = self.events.recv() => {
                    if let Err(error) = self.on_event(event).await {
                        return Stop::Failed(error);
                    }
                }
                command = self.inbox.recv() => {
                    let Some(command) = command else { return Stop::Idle };
                    self.handle(command).await;
                    // Take what else is queued before committing, so a busy
                    // document commits and fans out in larger batches.
                    for _ in 0..256 {
                        let Ok(command) = self.inbox.try_recv() else { break };
                        self.handle(command).await;
                    }
                }
                _ = sleep_until(commit_at.unwrap_or_else(Instant::now).into()), if commit_at.is_some() => {}
                _ = housekeeping.tick() => {
                    self.housekeep().await;
                    if self.idle_for() >= self.shared.config.idle_unload {
                        return Stop::Idle;
                    }
                }
            }
            self.commit_if_due();
        }
    }

    /// When the filling batch should be committed: its coalescing window
    /// grows with the audience, so a document with many peers sends fewer,
    /// larger frames (see `DocConfig::fanout_frames_per_sec`).
    fn commit_deadline(&self) -> Option<Instant> {
        if self.pipeline.committing.is_some() {
            return None;
        }
        let opened = self.pipeline.filling.opened?;
        if self.pipeline.filling.updates.len() >= MAX_BATCH_UPDATES {
            return Some(opened);
        }
        let config = &self.shared.config;
        let per_peer = Duration::from_secs(1) / config.fanout_frames_per_sec.max(1);
        let window = (per_peer * self.peers.len() as u32).min(config.coalesce_max);
        Some(opened + window)
    }

    fn commit_if_due(&mut self) {
        if self
            .commit_deadline()
            .is_some_and(|at| at <= Instant::now())
        {
            self.commit();
        }
    }

    fn commit(&mut self) {
        let Some(batch) = self.pipeline.start_commit() else {
            return;
        };
        let audit = std::mem::take(&mut batch.audit);
        let updates: Vec<NewUpdate> = batch
            .updates
            .iter()
            .map(|a| NewUpdate {
                update: a.update.clone(),
                origin: a.origin.to_string(),
                at_ms: a.at_ms,
            })
            .collect();
        let store = self.shared.store.clone();
        let name = self.name.clone();
        let events = self.events_tx.clone();
        let guard = self.shared.guard.clone();
        self.shared.tracker.spawn(async move {
            let started = Instant::now();
            // On record first: an update whose audit entry could not be
            // written is never stored, so it never happened.
            let result = match guard.record_batch(audit).await {
                Ok(()) => store.append(&name, updates).await,
                Err(error) => Err(StoreError::Backend(format!("audit trail: {error}"))),
            };
            let _task_gone = events.send(Event::Committed(result, started.elapsed()));
        });
    }

    async fn on_event(&mut self, event: Event) -> Result<(), DocError> {
        match event {
            Event::Committed(Ok(appended), took) => {
                let batch = self
                    .pipeline
                    .committing
                    .take()
                    .expect("a commit was running");
                let metrics = &self.shared.metrics;
                metrics.commit_latency.observe(took.as_secs_f64());
                self.log_entries += batch.updates.len();
                self.log_bytes += batch.bytes();
                self.sequence
                    .mark(appended.first_seq, appended.last_seq, Instant::now());
                for held in batch.held {
                    self.release(held);
                }
                let merged = self.fan_out(&batch.updates);
                self.announce_commit(appended, merged);
                self.compact_if_due();
                Ok(())
            }
            Event::Committed(Err(error), _) => {
                self.shared.metrics.store_errors.inc();
                tracing::error!(doc = %self.name, %error, "commit failed; closing the document");
                Err(DocError::Store(error))
            }
            Event::Compacted(result) => {
                self.compacting = false;
                self.compaction_finished(&result);
                match result {
                    Ok((entries, bytes)) => {
                        self.shared.metrics.compactions.inc();
                        self.log_entries = self.log_entries.saturating_sub(entries);
                        self.log_bytes = self.log_bytes.saturating_sub(bytes);
                        // Commits made meanwhile may already call for another.
                        self.compact_if_due();
                    }
                    Err(error) => {
                        self.shared.metrics.store_errors.inc();
                        tracing::warn!(doc = %self.name, %error, "compaction failed; will retry");
                    }
                }
                Ok(())
            }
            Event::ActivityStored(result) => {
                self.on_activity_stored(result);
                Ok(())
            }
            Event::AttributionStored(result) => {
                self.on_attribution_stored(result);
                Ok(())
            }
            Event::VersionStored { result, restored } => {
                self.on_version_stored(result, restored);
                Ok(())
            }
            Event::RestoreLoaded(loaded) => {
                self.restore(*loaded);
                Ok(())
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Join { peer, scope, reply } => {
                let session = Session::new(scope);
                self.record_activity(&peer.origin.clone(), ActivityKind::Join);
                for frame in session.greeting(&self.doc, &self.presence) {
                    // A fresh queue holds the greeting; if not, the peer is
                    // already gone or closing.
                    let _ = peer.reply(Bytes::from(frame));
                }
                self.peers.insert(
                    peer.id,
                    Peer {
                        link: peer,
                        session,
                    },
                );
                self.idle_since = None;
                let _gone = reply.send(Ok(()));
            }
            Command::Messages {
                conn,
                messages,
                frame,
                received_at,
            } => {
                if self.shared.config.relay {
                    self.relay(conn, frame, &messages);
                } else {
                    self.on_messages(conn, messages, received_at).await;
                }
            }
            Command::Leave { conn } => self.remove_peer(conn, None),
            Command::SetCaller { conn, caller } => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.link.caller = caller;
                }
            }
            Command::Rescope { origin, scope } => {
                for peer in self.peers.values_mut() {
                    if *peer.link.origin == *origin {
                        peer.session.set_scope(scope);
                    }
                }
            }
            Command::Write {
                update,
                encoding,
                origin,
                caller,
                reply,
            } => self.on_write(update, encoding, origin, caller, reply).await,
            Command::Read { what, reply } => self.on_read(what, reply),
            Command::Presence { reply } => {
                let _gone = reply.send(Ok(self.presence_entries()));
            }
            Command::Remote(remote) => self.on_remote(remote).await,
            Command::SaveVersion {
                request,
                author,
                reply,
            } => self.save_named(request, author, Some(reply)),
            Command::Restore {
                version,
                state,
                author,
                reply,
            } => self.load_restore(version, state, author, reply),
            Command::Erase { request, reply } => self.erase(request, reply).await,
            Command::Compact { reply } => self.request_compaction(reply),
        }
    }

    async fn on_messages(
        &mut self,
        conn: ConnId,
        messages: Vec<yrs::sync::Message>,
        received: Instant,
    ) {
        // The peer may have been removed while its messages were queued.
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let origin = peer.link.origin.clone();
        let caller = peer.link.caller.clone();
        // Policy decides writes before they touch the document; a denial
        // is answered like read-only access, naming the policy.
        let mut denied_by = None;
        if peer.session.scope() == Scope::ReadWrite && messages.iter().any(carries_update) {
            let denial = self.shared.guard.may_write(&caller, &self.name).err();
            peer.session
                .deny_writes(denial.as_ref().map(|d| d.message.clone()));
            denied_by = denial.map(|d| d.policy);
        }
        let mut effects = Vec::new();
        let mut failure = None;
        let now = now_ms();
        for message in messages {
            if let Err(error) = peer.session.receive(
                message,
                &mut self.doc,
                &mut self.presence,
                now,
                &mut effects,
            ) {
                failure = Some(error);
                break;
            }
        }
        for effect in effects {
            match effect {
                Effect::Reply(frame) => self.reply(conn, Bytes::from(frame)),
                Effect::ReplyWithContent(frames) => self.hold(Held::Frames { conn, frames }),
                Effect::Changed(change) => {
                    self.accept(Some(conn), origin.clone(), Some(&caller), change, received)
                }
                Effect::PresenceChanged(update) => {
                    let frame = Bytes::from(wire::awareness(&update));
                    self.announce_presence(&frame);
                    self.broadcast(Some(conn), frame);
                }
                Effect::Refused { reason } => {
                    self.shared.metrics.writes_refused.inc();
                    self.shared.guard.record_fact(
                        governance::audit::Action::UpdateRefused,
                        &caller,
                        &self.name,
                        governance::audit::Outcome::Denied {
                            policy: denied_by
                                .clone()
                                .unwrap_or_else(|| "access.read-only".into()),
                            reason: reason.clone(),
                        },
                        serde_json::json!({ "connection": conn.to_string() }),
                    );
                    tracing::debug!(doc = %self.name, %conn, %reason, "write refused");
                }
                Effect::PeerSynced => {}
                Effect::CreateVersion(request) => {
                    self.save_named(request, origin.to_string(), None);
                }
            }
        }
        if let Some(error) = failure {
            tracing::info!(doc = %self.name, %conn, %error, "closing connection");
            let poisoned = error.poisons_document();
            self.remove_peer(conn, Some(close_reason(&error)));
            if poisoned {
                self.rebuild().await;
            }
        }
    }

    /// Relay mode, a benchmark baseline: the same framing and fan-out path
    /// with no CRDT work. Updates and presence go to every other peer as
    /// they came; nothing is applied, stored or coalesced, and a step 1 is
    /// answered with an empty step 2 so clients consider themselves synced.
    fn relay(&mut self, conn: ConnId, frame: Bytes, messages: &[yrs::sync::Message]) {
        use yrs::sync::{Message, SyncMessage};
        let mut forward = false;
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(_)) => {
                    self.reply(conn, Bytes::from(wire::sync_step2(&[0, 0])));
                }
                Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u))
                    if u.len() > 2 =>
                {
                    self.shared.metrics.updates_in.inc();
                    forward = true;
                }
                Message::Awareness(_) => forward = true,
                _ => {}
            }
        }
        if forward {
            let peers = self.peers.len().saturating_sub(1) as u64;
            self.shared.metrics.updates_delivered.inc_by(peers);
            self.broadcast(Some(conn), frame);
        }
    }

    async fn on_write(
        &mut self,
        bytes: Vec<u8>,
        encoding: Encoding,
        origin: String,
        caller: Arc<Caller>,
        reply: oneshot::Sender<Result<(), DocError>>,
    ) {
        if let Err(denial) = self.shared.guard.may_write(&caller, &self.name) {
            self.shared.guard.record_fact(
                governance::audit::Action::UpdateRefused,
                &caller,
                &self.name,
                governance::audit::Outcome::Denied {
                    policy: denial.policy,
                    reason: denial.message.clone(),
                },
                serde_json::json!({ "bytes": bytes.len() }),
            );
            let _gone = reply.send(Err(DocError::Forbidden(denial.message)));
            return;
        }
        let decoded = match decode_with_references(&bytes, encoding, self.doc.limits()) {
            Ok(update) => update,
            Err(error) => {
                let _gone = reply.send(Err(DocError::Invalid(error.into())));
                return;
            }
        };
        // Peers and the log speak v1.
        let v1 = match encoding {
            Encoding::V1 => bytes,
            Encoding::V2 => decoded.update.encode_v1(),
        };
        let change = Change::new(v1, &decoded.update);
        match self.doc.apply_decoded(decoded) {
            Ok(Applied::Changed) => {
                self.accept(
                    None,
                    Arc::from(origin),
                    Some(&caller),
                    change,
                    Instant::now(),
                );
                self.hold(Held::Written(reply));
            }
            Ok(Applied::Empty) => {
                let _gone = reply.send(Ok(()));
            }
            Err(error) => {
                let poisoned = matches!(error, ApplyError::Integrate(_) | ApplyError::Panicked);
                let _gone = reply.send(Err(DocError::Invalid(error)));
                if poisoned {
                    self.rebuild().await;
                }
            }
        }
    }

    fn on_read(&mut self, what: ReadKind, reply: oneshot::Sender<Result<ReadOut, DocError>>) {
        if self.peers.is_empty() && self.doc.state_vector().is_empty() && !self.doc.has_pending() {
            let _gone = reply.send(Err(DocError::NotFound));
            return;
        }
        let out = match what {
            ReadKind::Json => match self.doc.to_json() {
                Ok(json) => ReadOut::Json(json),
                Err(error) => {
                    let _gone = reply.send(Err(error.into()));
                    return;
                }
            },
            ReadKind::State(encoding) => ReadOut::State(self.doc.encode_state(encoding)),
        };
        self.hold(Held::Read(reply, out));
    }

    /// Takes an applied update into the filling batch. `caller` is who is
    /// audited for it; `None` for changes the server makes itself (a
    /// restore, audited by its own request).
    fn accept(
        &mut self,
        from: Option<ConnId>,
        origin: Arc<str>,
        caller: Option<&Caller>,
        change: Change,
        received: Instant,
    ) {
        let metrics = &self.shared.metrics;
        metrics.updates_in.inc();
        metrics.update_bytes_in.inc_by(change.update.len() as u64);
        let at_ms = now_ms();
        if let Some(caller) = caller {
            let event = self
                .shared
                .guard
                .update_event(caller, &self.name, &change.update, at_ms);
            self.pipeline.filling.audit.push(event);
        }
        self.record_edit(&origin, &change, at_ms);
        self.pipeline.filling.push(Accepted {
            from,
            update: Bytes::from(change.update),
            clocks: change.clocks,
            origin,
            at_ms,
            received,
        });
    }

    /// Takes a change the server made itself (a restore, an erasure), as
    /// `origin`, into the filling batch like a peer's. Fails only if the
    /// update does not decode, which yrs's own encoding always does.
    fn accept_own(&mut self, origin: &str, update: Vec<u8>) -> Result<(), String> {
        let decoded = yrs::Update::decode_v1(&update).map_err(|e| e.to_string())?;
        let change = Change::new(update, &decoded);
        self.accept(None, origin.into(), None, change, Instant::now());
        Ok(())
    }

    fn hold(&mut self, held: Held) {
        if let Some(now) = self.pipeline.hold(held) {
            self.release(now);
        }
    }

    fn release(&mut self, held: Held) {
        match held {
            Held::Frames { conn, frames } => self.reply_all(conn, frames),
            Held::Written(reply) => {
                let _gone = reply.send(Ok(()));
            }
            Held::Read(reply, out) => {
                let _gone = reply.send(Ok(out));
            }
            Held::Version(pending) => self.store_version(*pending),
        }
    }

    fn reply(&mut self, conn: ConnId, frame: Bytes) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let len = frame.len();
        match peer.link.reply(frame) {
            Ok(()) => self.count_sent(len),
            Err(_) => self.remove_peer(conn, None),
        }
    }

    fn reply_all(&mut self, conn: ConnId, frames: Vec<Bytes>) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let lens: Vec<usize> = frames.iter().map(Bytes::len).collect();
        match peer.link.reply_all(frames) {
            Ok(()) => lens.into_iter().for_each(|len| self.count_sent(len)),
            Err(_) => self.remove_peer(conn, None),
        }
    }

    fn count_sent(&self, len: usize) {
        self.shared.metrics.frames_out.inc();
        self.shared.metrics.bytes_out.inc_by(len as u64);
    }

    /// Sends a durable batch's updates to every peer, coalesced.
    /// Returns the batch merged into one update, for other nodes.
    fn fan_out(&mut self, updates: &[Accepted]) -> Option<Bytes> {
        if updates.is_empty() {
            return None;
        }
        let metrics = self.shared.metrics.clone();
        let now = Instant::now();
        for update in updates {
            metrics
                .fanout_latency
                .observe(now.duration_since(update.received).as_secs_f64());
        }
        let plan = fanout::plan(updates);
        let mut dropped = Vec::new();
        for (&id, peer) in &self.peers {
            let (frames, delivered) = plan.frames_for(id);
            let mut ok = true;
            for frame in frames {
                match peer.link.broadcast(frame.clone()) {
                    Ok(()) => self.count_sent(frame.len()),
                    Err(SendError::Overflow | SendError::Gone) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                metrics.updates_delivered.inc_by(delivered as u64);
            } else {
                dropped.push(id);
            }
        }
        for id in dropped {
            self.remove_peer(id, None);
        }
        plan.merged
    }

    /// Sends a frame to every peer but `except`; peers that cannot take it
    /// are closed as slow consumers (never silently skipped).
    fn broadcast(&mut self, except: Option<ConnId>, frame: Bytes) {
        let mut dropped = Vec::new();
        for (&id, peer) in &self.peers {
            if Some(id) == except {
                continue;
            }
            match peer.link.broadcast(frame.clone()) {
                Ok(()) => self.count_sent(frame.len()),
                Err(_) => dropped.push(id),
            }
        }
        for id in dropped {
            self.remove_peer(id, None);
        }
    }

    /// Removes a peer, closing its connection with `reason` if given, and
    /// tells the others its presence is gone.
    fn remove_peer(&mut self, conn: ConnId, reason: Option<CloseReason>) {
        let Some(mut peer) = self.peers.remove(&conn) else {
            return;
        };
        if let Some(reason) = reason {
            peer.link.close(reason);
        }
        self.record_activity(&peer.link.origin.clone(), ActivityKind::Leave);
        if let Some(removal) = peer.session.close(&mut self.presence) {
            let frame = Bytes::from(wire::awareness(&removal));
            self.announce_presence(&frame);
            self.broadcast(None, frame);
        }
        if self.peers.is_empty() {
            self.idle_since = Some(Instant::now());
        }
    }

    /// Rebuilds the document from storage plus the updates not yet durable,
    /// after an update failed part-way and poisoned it. Peers stay
    /// connected: their sessions hold no document internals.
    async fn rebuild(&mut self) {
        self.shared.metrics.document_reloads.inc();
        let undurable: Vec<Bytes> = self
            .pipeline
            .undurable()
            .map(|a| a.update.clone())
            .collect();
        let result = match self.shared.store.load(&self.name).await {
            Ok(stored) => build(&self.shared, stored, undurable).await,
            Err(error) => Err(error.into()),
        };
        match result {
            Ok(doc) => {
                tracing::warn!(doc = %self.name, "document rebuilt after a failed update");
                self.doc = doc;
                self.held_dropped = 0;
            }
            Err(error) => {
                // The poisoned replica refuses all writes; closing everyone
                // makes clients reconnect to a fresh task once storage heals.
                tracing::error!(doc = %self.name, %error, "rebuild failed; closing peers");
                self.close_all(CloseReason::StorageUnavailable(error.to_string()));
            }
        }
    }

    fn close_all(&mut self, reason: CloseReason) {
        for (_, peer) in self.peers.drain() {
            peer.link.close(reason.clone());
        }
    }

    fn compact_if_due(&mut self) {
        let config = &self.shared.config;
        if self.compacting
            || (self.log_entries < config.compact_after_updates
                && self.log_bytes < config.compact_after_bytes)
        {
            return;
        }
        self.start_compaction();
    }

    async fn housekeep(&mut self) {
        let dropped = self.doc.dropped_updates();
        if dropped > self.held_dropped {
            let new = dropped - self.held_dropped;
            tracing::warn!(doc = %self.name, dropped = new, "held updates could not integrate and were dropped");
            self.shared.metrics.held_updates_dropped.inc_by(new);
            self.held_dropped = dropped;
        }
        if let Some((removal, _)) = self.presence.expire(now_ms()) {
            self.broadcast(None, Bytes::from(wire::awareness(&removal)));
        }
        self.presence.prune(now_ms());
        self.retry_history();
        self.auto_version_if_due();
        if self.shared.cluster.is_some() && self.catch_up_due() {
            self.catch_up().await;
        }
    }

    fn idle_for(&self) -> Duration {
        match self.idle_since {
            Some(since)
                if self.peers.is_empty()
                    && self.pipeline.is_idle()
                    && !self.compacting
                    && !self.history_pending() =>
            {
                since.elapsed()
            }
            _ => Duration::ZERO,
        }
    }

    fn presence_entries(&self) -> Vec<PresenceEntry> {
        let owner: HashMap<yrs::ClientID, ConnId> = self
            .peers
            .iter()
            .flat_map(|(id, p)| p.session.presence_clients().map(move |c| (c, *id)))
            .collect();
        self.presence
            .states()
            .map(|(client, state)| PresenceEntry {
                client_id: client.get(),
                connection: owner.get(&client).map(|c| c.to_string()),
                state: serde_json::from_str(state).unwrap_or(serde_json::Value::Null),
            })
            .collect()
    }

    /// Ends the task: makes accepted updates durable (or fails their
    /// waiters), closes peers, leaves the registry and answers whatever is
    /// still queued.
    async fn finish(&mut self, stop: Stop) {
        let failure = match stop {
            Stop::Idle => {
                self.flush_history().await;
                None
            }
            Stop::Shutdown => {
                self.close_all(CloseReason::GoingAway);
                let drained = self.drain_commits().await.err();
                if drained.is_none() {
                    self.flush_history().await;
                }
                drained
            }
            Stop::Failed(error) => Some(error),
        };
        if let Some(error) = &failure {
            let reason = match error {
                DocError::Store(e) => CloseReason::StorageUnavailable(e.to_string()),
                DocError::Load(e) => CloseReason::StorageUnavailable(e.to_string()),
                other => CloseReason::StorageUnavailable(other.to_string()),
            };
            self.close_all(reason);
            self.pipeline.fail_all(error);
        }
        self.registry.unregister(&self.name, self.generation);
        if let Some(cluster) = &self.shared.cluster {
            cluster.leave(&self.name);
        }
        self.inbox.close();
        let answer = failure.unwrap_or(DocError::Closed);
        while let Ok(command) = self.inbox.try_recv() {
            refuse(command, &answer);
        }
    }

    /// Commits everything accepted and waits for it (shutdown).
    async fn drain_commits(&mut self) -> Result<(), DocError> {
        loop {
            if self.pipeline.committing.is_none() {
                if self.pipeline.filling.is_empty() {
                    // Nothing left to commit: release any waiting reads.
                    let held = std::mem::take(&mut self.pipeline.filling.held);
                    for h in held {
                        self.release(h);
                    }
                    return Ok(());
                }
                self.commit();
            }
            match self.events.recv().await {
                Some(event) => self.on_event(event).await?,
                None => return Err(DocError::Closed),
            }
        }
    }
}

/// Answers a command the task will not serve.
/// Whether a message may change the document.
fn carries_update(message: &yrs::sync::Message) -> bool {
    use yrs::sync::{Message, SyncMessage};
    matches!(
        message,
        Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) if u.len() > 2
    )
}

fn refuse(command: Command, error: &DocError) {
    match command {
        Command::Join { reply, .. } | Command::Write { reply, .. } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::Read { reply, .. } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::Presence { reply } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::Erase { reply, .. } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::Compact { reply } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::SaveVersion { reply, .. } | Command::Restore { reply, .. } => {
            let _gone = reply.send(Err(error.clone()));
        }
        Command::Messages { .. }
        | Command::Leave { .. }
        | Command::Rescope { .. }
        | Command::SetCaller { .. }
        | Command::Remote(_) => {}
    }
}

fn close_reason(error: &SessionError) -> CloseReason {
    match error {
        SessionError::Frame(
            e @ (FrameError::TooLarge { .. } | FrameError::UpdateTooLarge { .. }),
        ) => CloseReason::FrameTooLarge(e.to_string()),
        SessionError::Frame(e) => CloseReason::BadFrame(e.to_string()),
        SessionError::Update(e @ ApplyError::TooManyWaiting { .. }) => {
            CloseReason::PolicyViolation(e.to_string())
        }
        SessionError::Update(e) => CloseReason::InvalidUpdate(e.to_string()),
        SessionError::TooManyPresenceClients { .. } => {
            CloseReason::PolicyViolation(error.to_string())
        }
    }
}

/// Builds a document from stored state plus `extra` v1 updates, off the
/// runtime (large documents take a while).
async fn build(
    shared: &DocShared,
    stored: StoredDoc,
    extra: Vec<Bytes>,
) -> Result<Document, DocError> {
    let limits = shared.config.limits.clone();
    tokio::task::spawn_blocking(move || {
        let (snapshot, log) = stored.parts();
        let mut doc = Document::load(limits, snapshot, log)?;
        for update in extra {
            doc.apply(&update, Encoding::V1)?;
        }
        Ok(doc)
    })
    .await
    .map_err(|e| DocError::Store(StoreError::Backend(format!("load task failed: {e}"))))?
}

/// Folds a document's log into a new snapshot; returns the entries and bytes
/// folded. Reads the store afresh, so it never blocks the document task.
async fn compact(shared: &DocShared, name: &DocName) -> Result<(usize, usize), DocError> {
    let stored = shared.store.load(name).await?;
    if stored.log.is_empty() {
        return Ok((0, 0));
    }
    let through_seq = stored.last_seq();
    let folded = (stored.log.len(), stored.log_bytes());
    let limits = shared.config.limits.clone();
    let state = tokio::task::spawn_blocking(move || {
        let (snapshot, log) = stored.parts();
        crdt_core::compact(&limits, snapshot, log, Encoding::V2)
    })
    .await
    .map_err(|e| DocError::Store(StoreError::Backend(format!("compaction task failed: {e}"))))??;
    let snapshot = Snapshot {
        through_seq,
        encoding: Encoding::V2,
        state,
    };
    shared.store.compact(name, snapshot).await?;
    Ok(folded)
}
