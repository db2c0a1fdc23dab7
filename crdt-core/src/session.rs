//! The per-peer sync session: messages in, effects out, no I/O.
//!
//! A host (the server's document task, or a browser client) owns one
//! [`Document`], one [`Presence`] and a [`Session`] per connected peer. It
//! feeds each frame from a peer to [`Session::receive_frame`] and carries out
//! the returned [`Effect`]s: sending frames, storing and forwarding updates.

use std::collections::HashSet;

use bytes::Bytes;
use yrs::ClientID;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};

use crate::change::Change;
use crate::doc::{Applied, ApplyError, Document};
use crate::presence::Presence;
use crate::update::{Encoding, decode_with_references};
use crate::wire::{self, FrameError};

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read the document and write to it.
    ReadWrite,
    /// Read the document and share presence; writes are refused.
    ReadOnly,
}

/// Something the host must do after a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this frame to the peer.
    Reply(Vec<u8>),
    /// Send these frames to the peer, in order. They carry document content:
    /// a host that promises durability sends them only once every change
    /// applied before them is durable. Shared, not copied, between peers
    /// that join together.
    ReplyWithContent(Vec<Bytes>),
    /// The peer changed the document: store the update, then forward it to
    /// the other peers.
    Changed(Change),
    /// The peer changed presence: forward this update to the other peers.
    PresenceChanged(AwarenessUpdate),
    /// A write was refused; the peer has been sent a permission-denied
    /// message carrying `reason` (see [`Effect::Reply`] before this one).
    Refused {
        /// Why the write was refused.
        reason: String,
    },
    /// The peer completed its half of the handshake (it sent a step 2).
    PeerSynced,
    /// The peer asked to save the current state as a named version.
    CreateVersion(wire::VersionRequest),
}

/// Why a session must end. Every variant is the peer's fault and names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The frame could not be decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An update from the peer was invalid.
    #[error(transparent)]
    Update(#[from] ApplyError),
    /// The peer announced more presence clients than one connection may own.
    #[error("connection announced more than {limit} presence clients")]
    TooManyPresenceClients {
        /// The limit.
        limit: usize,
    },
}

impl SessionError {
    /// Whether the document was left poisoned and must be rebuilt by the
    /// host before anyone uses it again.
    pub fn poisons_document(&self) -> bool {
        matches!(
            self,
            SessionError::Update(ApplyError::Integrate(_) | ApplyError::Panicked)
        )
    }
}

/// One peer's view of the sync protocol.
#[derive(Debug, Clone)]
pub struct Session {
    scope: Scope,
    /// Set while the host's policy refuses this peer's writes, with the
    /// reason the peer is told.
    write_denial: Option<String>,
    /// Awareness clients this peer introduced: removed and announced as
    /// gone when it disconnects, so others do not see ghosts for 30 s.
    owned: HashSet<ClientID>,
    /// Most awareness clients one peer may introduce. A browser tab owns one.
    max_owned: usize,
    synced: bool,
}

/// Most awareness clients a single connection may own by default.
pub const DEFAULT_MAX_PRESENCE_PER_PEER: usize = 16;

impl Session {
    /// A session for a peer with the given scope.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            write_denial: None,
            owned: HashSet::new(),
            max_owned: DEFAULT_MAX_PRESENCE_PER_PEER,
            synced: false,
        }
    }

    /// The peer's scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Refuses the peer's writes with `reason` until called with `None`,
    /// without changing its scope: for a policy that denies writing now
    /// (outside business hours, say) while the peer keeps its role.
    pub fn deny_writes(&mut self, reason: Option<String>) {
        self.write_denial = reason;
    }

    /// Changes the peer's scope, for example when its role changes while it
    /// is connected. Takes effect at the next message.
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    /// Whether the peer has sent its step 2.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Awareness clients this peer introduced.
    pub fn presence_clients(&self) -> impl Iterator<Item = ClientID> + '_ {
        self.owned.iter().copied()
    }

    /// Frames to send when the peer connects: our state vector (so a peer
    /// that may write sends what we lack), then who is present.
    ///
    /// A read-only peer is not asked for its state: it could not send it.
    pub fn greeting(&self, doc: &Document, presence: &Presence) -> Vec<Vec<u8>> {
        let mut frames = Vec::with_capacity(2);
        if self.scope == Scope::ReadWrite {
            frames.push(wire::sync_step1(&doc.state_vector()));
        }
        if let Some(states) = presence.snapshot() {
            frames.push(wire::awareness(&states));
        }
        frames
    }

    /// Decodes a frame and handles each message in it.
    pub fn receive_frame(
        &mut self,
        frame: &[u8],
        doc: &mut Document,
        presence: &mut Presence,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        for message in wire::decode_frame(frame, doc.limits())? {
            self.receive(message, doc, presence, now_ms, effects)?;
        }
        Ok(())
    }

    /// Handles one decoded message, pushing what the host must do onto
    /// `effects`. On error the host closes the connection with the error as
    /// the reason; effects pushed before the error are still valid.
    pub fn receive(
        &mut self,
        message: Message,
        doc: &mut Document,
        presence: &mut Presence,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        match message {
            Message::Sync(SyncMessage::SyncStep1(state_vector)) => {
                effects.push(Effect::ReplyWithContent(doc.sync_reply(&state_vector)));
            }
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.write(update, doc, effects)?;
                if !self.synced {
                    self.synced = true;
                    effects.push(Effect::PeerSynced);
                }
            }
            Message::Sync(SyncMessage::Update(update)) => self.write(update, doc, effects)?,
            Message::Awareness(update) => self.presence(update, presence, now_ms, effects)?,
            Message::AwarenessQuery => {
                if let Some(states) = presence.snapshot() {
                    effects.push(Effect::Reply(wire::awareness(&states)));
                }
            }
            // Clients never need to tell a server it denied them; ignore.
            Message::Auth(_) => {}
            Message::Custom(wire::MSG_VERSION, body) => {
                let request = wire::VersionRequest::parse(&body)?;
                if self.scope == Scope::ReadOnly {
                    let reason = "read-only access: saving versions is not permitted".to_owned();
                    effects.push(Effect::Reply(wire::permission_denied(&reason)));
                    effects.push(Effect::Refused { reason });
                } else {
                    effects.push(Effect::CreateVersion(request));
                }
            }
            Message::Custom(tag, _) => return Err(FrameError::UnknownType(tag).into()),
        }
        Ok(())
    }

    fn write(
        &mut self,
        update: Vec<u8>,
        doc: &mut Document,
        effects: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let decoded = decode_with_references(&update, Encoding::V1, doc.limits())
            .map_err(ApplyError::from)?;
        let denial = match (&self.write_denial, self.scope) {
            (Some(reason), _) => Some(reason.clone()),
            (None, Scope::ReadOnly) => {
                Some("read-only access: document updates are not permitted".to_owned())
            }
            (None, Scope::ReadWrite) => None,
        };
        if let Some(reason) = denial {
            // Every y-websocket client answers a step 1 with a step 2, even
            // when it has nothing: refusing those would only be noise.
            if !decoded.is_empty() {
                effects.push(Effect::Reply(wire::permission_denied(&reason)));
                effects.push(Effect::Refused { reason });
            }
            return Ok(());
        }
        let change = Change::new(update, &decoded.update);
        if doc.apply_decoded(decoded)? == Applied::Changed {
            effects.push(Effect::Changed(change));
        }
        Ok(())
    }

    fn presence(
        &mut self,
        update: AwarenessUpdate,
        presence: &mut Presence,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let change = presence.apply(update, now_ms);
        for client in &change.removed {
            self.owned.remove(client);
        }
        for client in &change.added {
            self.owned.insert(*client);
        }
        if self.owned.len() > self.max_owned {
            return Err(SessionError::TooManyPresenceClients {
                limit: self.max_owned,
            });
        }
        if !change.is_empty() {
            effects.push(Effect::PresenceChanged(change.accepted));
        }
        Ok(())
    }

    /// Ends the session: removes the peer's presence clients and returns the
    /// update that tells the other peers they left.
    pub fn close(&mut self, presence: &mut Presence) -> Option<AwarenessUpdate> {
        presence.remove(self.owned.drain())
    }
}
