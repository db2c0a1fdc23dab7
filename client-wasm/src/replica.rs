//! The client's half of the y-websocket protocol, with no I/O: a local
//! replica of one document that talks to one peer, the server.
//!
//! crdt-core's [`Session`](crdt_core::Session) is the server's view of a
//! peer: it caps the presence clients a peer may introduce (a server
//! connection carries everyone's), sends the presence it knows in its
//! greeting (a client must send only its own) and ignores permission-denied
//! messages (a client must report them). This module reuses the same
//! pieces, [`Document`], [`Presence`] and [`wire`], from the client's side.
//!
//! The host (the TypeScript SDK) keeps a `Y.Doc` for the application and
//! mirrors it here: every local update goes through
//! [`Replica::local_update`], and every update the server sends comes back
//! from [`Replica::receive`] for the host to apply to the `Y.Doc`. Edits made
//! while no connection is open are counted; when the server's sync step 1
//! arrives, everything it lacks, offline edits included, goes back in one
//! reply computed from its state vector.

use std::collections::HashMap;

use crdt_core::update::UpdateError;
use crdt_core::wire::{self, FrameError};
use crdt_core::yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use crdt_core::yrs::updates::decoder::Decode;
use crdt_core::yrs::updates::encoder::Encode;
use crdt_core::yrs::{ClientID, StateVector};
use crdt_core::{ApplyError, Document, Encoding, JsonError, Limits, Presence, decode_state_vector};

/// Why the replica refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A frame from the server did not decode.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An update (from the server, from storage, or local) did not apply.
    #[error(transparent)]
    Update(#[from] ApplyError),
    /// A local awareness update did not decode.
    #[error("malformed awareness update: {0}")]
    Awareness(String),
    /// A state vector did not decode.
    #[error(transparent)]
    StateVector(#[from] UpdateError),
    /// The content nests too deeply to render as JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
}

/// Whether a connection is open, as far as the replica knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection: local edits are counted as pending.
    Offline,
    /// A connection is open; `synced` once the server's step 2 arrived.
    Open { synced: bool },
}

/// What one frame from the server asks the host to do. Effects recorded
/// before an error are kept: the host carries them out, then handles
/// `error`, so an update the replica applied always reaches the `Y.Doc`.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Frames to send back to the server, in order.
    pub replies: Vec<Vec<u8>>,
    /// v1 updates from the server, applied here; apply them to the `Y.Doc`.
    pub updates: Vec<Vec<u8>>,
    /// Accepted awareness entries, in the y-protocols encoding
    /// (`applyAwarenessUpdate`).
    pub awareness: Option<Vec<u8>>,
    /// The server's first step 2 on this connection arrived: the replica
    /// holds everything the server held.
    pub synced: bool,
    /// Every pending edit is in `replies`: the pending count is now zero.
    pub flushed: bool,
    /// The server asked for our awareness state.
    pub awareness_queried: bool,
    /// Reasons of permission-denied messages.
    pub denied: Vec<String>,
    /// The input that stopped the frame, if one did.
    pub error: Option<ReplicaError>,
}

/// A local replica of one document and its link to the server.
pub struct Replica {
    doc: Document,
    presence: Presence,
    /// The `Y.Doc`'s client id: its own awareness entries are handed to the
    /// host (y-protocols renews a state the server says is gone) but never
    /// counted as someone else who is here.
    local_client: ClientID,
    link: Link,
    /// Local edits made while no connection was open.
    pending: usize,
    /// The state vector when the replica last went offline (or was created):
    /// what changed after it is what the offline edits wrote.
    offline_since: Option<StateVector>,
}

impl Replica {
    /// An empty replica for the `Y.Doc` whose client id is `local_client`.
    pub fn new(local_client: u64, limits: Limits) -> Self {
        Self {
            doc: Document::new(limits),
            presence: Presence::default(),
            local_client: ClientID::new(local_client),
            link: Link::Offline,
            pending: 0,
            offline_since: Some(StateVector::default()),
        }
    }

    /// Applies an update that did not come from the application: read back
    /// from storage, or fetched over HTTP. It is not a pending edit.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<(), ReplicaError> {
        self.doc.apply_stored(update, Encoding::V1)?;
        Ok(())
    }

    /// Applies an edit the application made. Returns the frame to send when
    /// a connection is open; otherwise the edit counts as pending until the
    /// next connection's handshake sends it.
    pub fn local_update(&mut self, update: &[u8]) -> Result<Option<Vec<u8>>, ReplicaError> {
        if self.doc.apply_stored(update, Encoding::V1)? == crdt_core::Applied::Empty {
            return Ok(None);
        }
        match self.link {
            Link::Open { .. } => Ok(Some(wire::sync_update(update))),
            Link::Offline => {
                self.pending += 1;
                Ok(None)
            }
        }
    }

    /// A connection opened: the frame to send first, our sync step 1 (the
    /// host follows it with its own awareness state).
    pub fn open(&mut self) -> Vec<u8> {
        self.link = Link::Open { synced: false };
        wire::sync_step1(&self.doc.state_vector())
    }

    /// The connection closed. Returns the remote awareness clients to drop:
    /// without a connection nobody is known to be here.
    pub fn close(&mut self) -> Vec<u64> {
        if self.link != Link::Offline && self.offline_since.is_none() {
            self.offline_since = Some(self.doc.state_vector());
        }
        self.link = Link::Offline;
        let remote = self.remote_clients();
        self.presence
            .remove(remote.iter().map(|&c| ClientID::new(c)));
        remote
    }

    /// Handles one frame from the server at `now_ms` (for presence expiry).
    pub fn receive(&mut self, frame: &[u8], now_ms: u64) -> Inbound {
        let mut inbound = Inbound::default();
        let mut awareness: Option<AwarenessUpdate> = None;
        let messages = match wire::decode_frame(frame, self.doc.limits()) {
            Ok(messages) => messages,
            Err(error) => {
                inbound.error = Some(error.into());
                return inbound;
            }
        };
        for message in messages {
            if let Err(error) = self.handle(message, now_ms, &mut inbound, &mut awareness) {
                inbound.error = Some(error);
                break;
            }
        }
        inbound.awareness = awareness.map(|update| update.encode_v1());
        inbound
    }

    fn handle(
        &mut self,
        message: Message,
        now_ms: u64,
        inbound: &mut Inbound,
        awareness: &mut Option<AwarenessUpdate>,
    ) -> Result<(), ReplicaError> {
        match message {
            Message::Sync(SyncMessage::SyncStep1(state_vector)) => {
                // Everything the server lacks, offline edits included, in
                // replies of bounded size.
                let frames = self.doc.sync_reply(&state_vector);
                inbound.replies.extend(frames.into_iter().map(Vec::from));
                if self.pending > 0 {
                    inbound.flushed = true;
                }
                self.pending = 0;
                self.offline_since = None;
            }
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.remote(update, inbound)?;
                if self.link == (Link::Open { synced: false }) {
                    self.link = Link::Open { synced: true };
                    inbound.synced = true;
                }
            }
            Message::Sync(SyncMessage::Update(update)) => self.remote(update, inbound)?,
            Message::Awareness(update) => {
                let change = self.presence.apply(update, now_ms);
                if !change.is_empty() {
                    awareness
                        .get_or_insert_with(|| AwarenessUpdate {
                            clients: HashMap::new(),
                        })
                        .clients
                        .extend(change.accepted.clients);
                }
            }
            Message::AwarenessQuery => inbound.awareness_queried = true,
            Message::Auth(Some(reason)) => inbound.denied.push(reason),
            Message::Auth(None) => {}
            Message::Custom(tag, _) => return Err(FrameError::UnknownType(tag).into()),
        }
        Ok(())
    }

    fn remote(&mut self, update: Vec<u8>, inbound: &mut Inbound) -> Result<(), ReplicaError> {
        if self.doc.apply(&update, Encoding::V1)? == crdt_core::Applied::Changed {
            inbound.updates.push(update);
        }
        Ok(())
    }

    /// Wraps a local awareness update (y-protocols encoding) in a frame,
    /// after the checks the server applies to it.
    pub fn awareness_frame(&self, update: &[u8]) -> Result<Vec<u8>, ReplicaError> {
        let update = AwarenessUpdate::decode_v1(update)
            .map_err(|e| ReplicaError::Awareness(e.to_string()))?;
        wire::validate_awareness(&update, self.doc.limits())?;
        Ok(wire::awareness(&update))
    }

    /// Drops remote awareness states not renewed within 30 s; returns the
    /// clients dropped.
    pub fn expire_presence(&mut self, now_ms: u64) -> Vec<u64> {
        let gone = self
            .presence
            .expire(now_ms)
            .map(|(_, clients)| clients)
            .unwrap_or_default();
        self.presence.prune(now_ms);
        gone.into_iter()
            .filter(|c| *c != self.local_client)
            .map(|c| c.get())
            .collect()
    }

    /// Remote awareness clients known to be here.
    pub fn remote_clients(&self) -> Vec<u64> {
        let mut clients: Vec<u64> = self
            .presence
            .states()
            .filter(|(c, _)| *c != self.local_client)
            .map(|(c, _)| c.get())
            .collect();
        clients.sort_unstable();
        clients
    }

    /// Whether a connection is open.
    pub fn is_open(&self) -> bool {
        matches!(self.link, Link::Open { .. })
    }

    /// Whether the server's step 2 arrived on the open connection.
    pub fn is_synced(&self) -> bool {
        self.link == (Link::Open { synced: true })
    }

    /// Local edits not yet handed to a connection.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The offline edits merged into one v1 update, computed from the state
    /// vector at the time the replica went offline; `None` when nothing is
    /// pending.
    pub fn pending_update(&self) -> Option<Vec<u8>> {
        if self.pending == 0 {
            return None;
        }
        self.offline_since.as_ref().map(|sv| self.doc.diff_v1(sv))
    }

    /// Restores the pending count and the offline state vector persisted by
    /// a previous page (see [`Replica::offline_since`]), after its state was
    /// loaded with [`Replica::apply_update`].
    pub fn restore_pending(
        &mut self,
        pending: usize,
        offline_since: &[u8],
    ) -> Result<(), ReplicaError> {
        if self.is_open() {
            return Ok(());
        }
        self.pending = pending;
        self.offline_since = Some(decode_state_vector(offline_since)?);
        Ok(())
    }

    /// The state vector when the replica went offline, v1-encoded, to
    /// persist beside the pending count.
    pub fn offline_since(&self) -> Option<Vec<u8>> {
        self.offline_since.as_ref().map(Encode::encode_v1)
    }

    /// The replica's state vector, v1-encoded.
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.state_vector().encode_v1()
    }

    /// What a peer at `state_vector` (v1-encoded) lacks, as one v1 update.
    pub fn diff(&self, state_vector: &[u8]) -> Result<Vec<u8>, ReplicaError> {
        Ok(self.doc.diff_v1(&decode_state_vector(state_vector)?))
    }

    /// The whole state as one v1 update (held updates included), for
    /// compacting what storage keeps.
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc.encode_state(Encoding::V1)
    }

    /// The content as a JSON object keyed by root name.
    pub fn to_json(&self) -> Result<String, ReplicaError> {
        Ok(self.doc.to_json()?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::yrs::sync::awareness::AwarenessUpdateEntry;
    use crdt_core::yrs::{Doc, GetString, ReadTxn, Text, Transact};
    use crdt_core::{Effect, Scope, Session};
    use std::sync::Arc;

    /// The server's side: a document, presence and a session for us.
    struct Server {
        doc: Document,
        presence: Presence,
        session: Session,
    }

    impl Server {
        fn new() -> Self {
            Self {
                doc: Document::new(Limits::default()),
                presence: Presence::default(),
                session: Session::new(Scope::ReadWrite),
            }
        }

        /// Delivers client frames; returns the frames the server sends back.
        fn deliver(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            for frame in frames {
                let mut effects = Vec::new();
                self.session
                    .receive_frame(frame, &mut self.doc, &mut self.presence, 0, &mut effects)
                    .unwrap();
                for effect in effects {
                    match effect {
                        Effect::Reply(f) => out.push(f),
                        Effect::ReplyWithContent(fs) => out.extend(fs.into_iter().map(Vec::from)),
                        _ => {}
                    }
                }
            }
            out
        }

        fn text(&self) -> String {
            let t = self.doc.yrs().get_or_insert_text("t");
            t.get_string(&self.doc.yrs().transact())
        }
    }

    fn edit(doc: &Doc, at: u32, s: &str) -> Vec<u8> {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, at, s);
        txn.encode_update_v1()
    }

    /// Connects `replica` to `server` and runs the handshake to the end.
    fn connect(replica: &mut Replica, server: &mut Server) -> Vec<Inbound> {
        let greeting = vec![replica.open()];
        let mut to_server = greeting;
        let mut inbounds = Vec::new();
        // The server greets too: its step 1.
        let mut to_client = server.session.greeting(&server.doc, &server.presence);
        while !to_server.is_empty() || !to_client.is_empty() {
            to_client.extend(server.deliver(&std::mem::take(&mut to_server)));
            for frame in std::mem::take(&mut to_client) {
                let inbound = replica.receive(&frame, 0);
                assert_eq!(inbound.error, None);
                to_server.extend(inbound.replies.iter().cloned());
                inbounds.push(inbound);
            }
        }
        inbounds
    }

    #[test]
    fn offline_edits_are_counted_and_sent_by_the_handshake() {
        let app = Doc::with_client_id(1);
        let mut replica = Replica::new(1, Limits::default());
        assert_eq!(replica.local_update(&edit(&app, 0, "hello")).unwrap(), None);
        assert_eq!(
            replica.local_update(&edit(&app, 5, " world")).unwrap(),
            None
        );
        assert_eq!(replica.pending(), 2);

        // The merged offline edits, computed from the state vector.
        let merged = replica.pending_update().unwrap();
        let copy = Doc::new();
        copy.transact_mut()
            .apply_update(crdt_core::yrs::Update::decode_v1(&merged).unwrap())
            .unwrap();
        assert_eq!(
            copy.get_or_insert_text("t").get_string(&copy.transact()),
            "hello world"
        );

        let mut server = Server::new();
        let inbounds = connect(&mut replica, &mut server);
        assert!(inbounds.iter().any(|i| i.flushed));
        assert!(inbounds.iter().any(|i| i.synced));
        assert_eq!(replica.pending(), 0);
        assert!(replica.is_synced());
        assert_eq!(server.text(), "hello world");

        // Online, an edit becomes a frame at once.
        let frame = replica.local_update(&edit(&app, 0, ">")).unwrap().unwrap();
        server.deliver(&[frame]);
        assert_eq!(server.text(), ">hello world");
        assert_eq!(replica.pending(), 0);
    }

    #[test]
    fn server_updates_come_back_for_the_app_and_survive_a_reconnect() {
        let mut server = Server::new();
        let other = Doc::with_client_id(9);
        server
            .doc
            .apply(&edit(&other, 0, "from the server"), Encoding::V1)
            .unwrap();

        let mut replica = Replica::new(1, Limits::default());
        let inbounds = connect(&mut replica, &mut server);
        let updates: Vec<_> = inbounds.iter().flat_map(|i| i.updates.clone()).collect();
        assert_eq!(updates.len(), 1);
        let app = Doc::with_client_id(1);
        for u in &updates {
            app.transact_mut()
                .apply_update(crdt_core::yrs::Update::decode_v1(u).unwrap())
                .unwrap();
        }
        assert_eq!(
            app.get_or_insert_text("t").get_string(&app.transact()),
            "from the server"
        );

        // Offline: the base state vector is taken, edits pile up.
        assert!(replica.close().is_empty());
        replica.local_update(&edit(&app, 0, "A")).unwrap();
        let since = replica.offline_since().unwrap();
        // A new page restores the state and the pending count from storage.
        let mut reloaded = Replica::new(1, Limits::default());
        reloaded.apply_update(&replica.encode_state()).unwrap();
        reloaded.restore_pending(1, &since).unwrap();
        let merged = reloaded.pending_update().unwrap();
        assert!(
            merged.len() < 40,
            "only the offline edit: {} bytes",
            merged.len()
        );

        connect(&mut reloaded, &mut server);
        assert_eq!(server.text(), "Afrom the server");
        assert_eq!(reloaded.pending(), 0);
    }

    #[test]
    fn presence_is_tracked_and_dropped_on_close() {
        let mut replica = Replica::new(1, Limits::default());
        replica.open();
        let entries = |clients: &[(u64, u32, &str)]| AwarenessUpdate {
            clients: clients
                .iter()
                .map(|&(c, clock, json)| {
                    (
                        ClientID::new(c),
                        AwarenessUpdateEntry {
                            clock,
                            json: Arc::from(json),
                        },
                    )
                })
                .collect(),
        };
        // Twenty people, more than crdt-core's Session lets one peer own.
        let many: Vec<(u64, u32, &str)> = (2..22).map(|c| (c, 1, "{}")).collect();
        let inbound = replica.receive(&wire::awareness(&entries(&many)), 0);
        assert_eq!(inbound.error, None);
        assert!(inbound.awareness.is_some());
        // Our own state echoed back is handed on but is not someone else.
        replica.receive(&wire::awareness(&entries(&[(1, 3, "{}")])), 0);
        assert_eq!(replica.remote_clients().len(), 20);
        // Stale: same clock again changes nothing.
        let again = replica.receive(&wire::awareness(&entries(&[(2, 1, "{}")])), 0);
        assert!(again.awareness.is_none());

        replica.receive(&wire::awareness(&entries(&[(2, 2, "{}")])), 20_000);
        let expired = replica.expire_presence(31_000);
        assert_eq!(expired.len(), 19, "all but client 2, renewed at 20 s");
        assert_eq!(replica.close(), vec![2]);
        assert!(replica.remote_clients().is_empty());
    }

    #[test]
    fn denials_queries_and_bad_frames_are_reported() {
        let mut replica = Replica::new(1, Limits::default());
        replica.open();
        let mut frame = wire::permission_denied("read-only access");
        frame.push(3); // query-awareness, packed in the same frame
        let inbound = replica.receive(&frame, 0);
        assert_eq!(inbound.denied, vec!["read-only access".to_owned()]);
        assert!(inbound.awareness_queried);

        let inbound = replica.receive(&[9, 1, 0], 0);
        assert_eq!(
            inbound.error,
            Some(ReplicaError::Frame(FrameError::UnknownType(9)))
        );
    }

    #[test]
    fn an_update_before_a_bad_one_in_the_same_frame_still_reaches_the_app() {
        let other = Doc::with_client_id(9);
        let good = edit(&other, 0, "ok");
        let mut frame = wire::sync_update(&good);
        frame.extend(wire::sync_update(&[1, 2, 3]));
        let mut replica = Replica::new(1, Limits::default());
        let inbound = replica.receive(&frame, 0);
        assert_eq!(inbound.updates, vec![good]);
        assert!(matches!(inbound.error, Some(ReplicaError::Update(_))));
    }

    #[test]
    fn local_awareness_is_checked_like_the_server_checks_it() {
        let replica = Replica::new(1, Limits::default());
        let update = AwarenessUpdate {
            clients: HashMap::from([(
                ClientID::new(1),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: Arc::from(r#"{"user":{"name":"Ada"}}"#),
                },
            )]),
        };
        let frame = replica.awareness_frame(&update.encode_v1()).unwrap();
        assert_eq!(frame[0], 1, "awareness message type");
        let bad = AwarenessUpdate {
            clients: HashMap::from([(
                ClientID::new(1),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: Arc::from("{nope"),
                },
            )]),
        };
        assert!(matches!(
            replica.awareness_frame(&bad.encode_v1()),
            Err(ReplicaError::Frame(
                FrameError::AwarenessStateNotJson { .. }
            ))
        ));
        assert!(replica.awareness_frame(&[5]).is_err());
    }

    #[test]
    fn json_and_state_vectors() {
        let app = Doc::with_client_id(4);
        let mut replica = Replica::new(4, Limits::default());
        replica.local_update(&edit(&app, 0, "hi")).unwrap();
        assert_eq!(replica.to_json().unwrap(), r#"{"t":"hi"}"#);
        let sv = replica.state_vector();
        assert_eq!(
            decode_state_vector(&sv).unwrap(),
            app.transact().state_vector()
        );
        let nothing = replica.diff(&sv).unwrap();
        assert!(
            crdt_core::yrs::Update::decode_v1(&nothing)
                .unwrap()
                .is_empty()
        );
    }
}
