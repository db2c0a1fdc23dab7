//! What connections and HTTP handlers ask of a document task.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crdt_core::wire::VersionRequest;
use crdt_core::{ApplyError, Encoding, JsonError, LoadError, Scope, VersionError};
use tokio::sync::oneshot;
use yrs::sync::Message;

use super::peer::{ConnId, PeerLink};
use crate::cluster::Remote;
use crate::history::VersionMeta;
use crate::store::StoreError;

/// A request to a document task. Replies travel on the enclosed channels.
pub enum Command {
    /// A connection joins; its greeting is queued before the reply.
    Join {
        /// How to reach the connection.
        peer: PeerLink,
        /// What it may do.
        scope: Scope,
        /// Answered once the peer is registered.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// Messages a joined connection sent (decoded on its own task).
    Messages {
        /// The connection.
        conn: ConnId,
        /// The decoded messages, in order.
        messages: Vec<Message>,
        /// The frame as received (forwarded as is in relay mode).
        frame: Bytes,
        /// When the frame arrived, for latency accounting.
        received_at: Instant,
    },
    /// A connection left.
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// Changes the scope of every connection whose origin matches, for
    /// example after a role change. Takes effect at their next message.
    Rescope {
        /// The origin (user id) whose connections change.
        origin: String,
        /// The new scope.
        scope: Scope,
    },
    /// Who is on a connection changed (a new role, after a membership
    /// change): policy decides its next writes with this caller.
    SetCaller {
        /// The connection.
        conn: ConnId,
        /// Who it is now.
        caller: Arc<crate::auth::Caller>,
    },
    /// An update from the HTTP API; answered once durable.
    Write {
        /// The update bytes.
        update: Vec<u8>,
        /// Their encoding.
        encoding: Encoding,
        /// Who sent it.
        origin: String,
        /// Who sent it, for policy and audit.
        caller: Arc<crate::auth::Caller>,
        /// Answered once the update is durable, or with why it was refused.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// A read of the document's content.
    Read {
        /// What to read.
        what: ReadKind,
        /// Answered once everything the answer reflects is durable.
        reply: oneshot::Sender<Result<ReadOut, DocError>>,
    },
    /// News from another node.
    Remote(Remote),
    /// Saves the current state as a version, once what it reflects is
    /// durable.
    SaveVersion {
        /// What to save.
        request: VersionRequest,
        /// Who asks.
        author: String,
        /// Answered with the stored version.
        reply: oneshot::Sender<Result<VersionMeta, DocError>>,
    },
    /// Edits the document so its content equals a stored version's.
    Restore {
        /// The version's id.
        version: u64,
        /// Its stored state (v2); the task loads it off its own thread.
        state: Arc<Vec<u8>>,
        /// Who asks.
        author: String,
        /// Answered with the version recording the restore.
        reply: oneshot::Sender<Result<VersionMeta, DocError>>,
    },
    /// Erases a user (GDPR): closes their connections, names their
    /// pseudonym in history not yet stored, and deletes their content when
    /// asked. Answered once the delete is durable.
    Erase {
        /// What to do.
        request: super::task::EraseRequest,
        /// Answered with what was done.
        reply: oneshot::Sender<Result<super::task::Erased, DocError>>,
    },
    /// Compacts the log now; answered once a compaction that started after
    /// the request finished.
    Compact {
        /// Answered when done.
        reply: oneshot::Sender<Result<(), DocError>>,
    },
    /// Who is present now.
    Presence {
        /// The answer.
        reply: oneshot::Sender<Result<Vec<PresenceEntry>, DocError>>,
    },
}

/// What a [`Command::Read`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The content as JSON.
    Json,
    /// The whole state as one update in the given encoding.
    State(Encoding),
}

/// The answer to a [`Command::Read`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOut {
    /// The content as JSON.
    Json(serde_json::Value),
    /// The whole state as one update.
    State(Vec<u8>),
}

/// One present client.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PresenceEntry {
    /// The awareness client id (the client's Yjs `clientID`).
    pub client_id: u64,
    /// The connection that introduced it, if it is still connected here.
    pub connection: Option<String>,
    /// Its awareness state.
    pub state: serde_json::Value,
}

/// Why a document task could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    /// The task is unloading or stopped; ask the registry again.
    #[error("document is unloading")]
    Closed,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored state could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An HTTP update was refused.
    #[error(transparent)]
    Invalid(#[from] ApplyError),
    /// Nothing is stored under this name and nobody is connected.
    #[error("document does not exist")]
    NotFound,
    /// The content cannot be rendered as JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A version could not be restored.
    #[error("restore failed: {0}")]
    Restore(String),
    /// An erasure could not be carried out.
    #[error("erasure failed: {0}")]
    Erase(String),
    /// A policy refused the operation; names the policy.
    #[error("{0}")]
    Forbidden(String),
}

impl From<VersionError> for DocError {
    fn from(error: VersionError) -> Self {
        Self::Restore(error.to_string())
    }
}
