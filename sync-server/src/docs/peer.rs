//! How a document task reaches one connection: a bounded outbound queue and
//! a way to close the connection with a reason even when the queue is full.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::Caller;

/// A connection's id, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn:{}", self.0)
    }
}

/// Why the server closed a connection. Each maps to a WebSocket close code
/// and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down.
    GoingAway,
    /// The peer sent a frame that is not a valid y-websocket message.
    BadFrame(String),
    /// The peer sent a frame larger than the limit.
    FrameTooLarge(String),
    /// The peer sent an update the document refused.
    InvalidUpdate(String),
    /// The peer sent a text frame; the protocol is binary.
    TextFrame,
    /// The peer's outbound queue overflowed: it reads slower than the
    /// document changes. It should reconnect and resync.
    SlowConsumer {
        /// Frames queued when the limit was hit.
        frames: usize,
        /// Bytes queued when the limit was hit.
        bytes: usize,
    },
    /// The peer sent nothing (not even a pong) for too long.
    Timeout,
    /// Storage failed; the update could not be made durable.
    StorageUnavailable(String),
    /// The peer broke a protocol rule of this server (too many presence
    /// clients, for example), or went over a rate limit.
    PolicyViolation(String),
    /// The peer's access was revoked (removed from the workspace, key
    /// revoked, token expired) while connected. Code 4403 is in the range
    /// y-websocket does not reconnect after.
    AccessRevoked(String),
}

impl CloseReason {
    /// The WebSocket close code. 1xxx codes are standard. Stable y-websocket
    /// clients reconnect after every code outside 4400–4499, which is right
    /// for all of these: the client resyncs and loses nothing.
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::GoingAway => 1001,
            CloseReason::BadFrame(_) => 1002,
            CloseReason::TextFrame => 1003,
            CloseReason::InvalidUpdate(_) => 1007,
            CloseReason::PolicyViolation(_) => 1008,
            CloseReason::FrameTooLarge(_) => 1009,
            CloseReason::StorageUnavailable(_) => 1011,
            CloseReason::SlowConsumer { .. } => 1013,
            CloseReason::Timeout => 1001,
            CloseReason::AccessRevoked(_) => 4403,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::GoingAway => "shutdown",
            CloseReason::BadFrame(_) => "bad_frame",
            CloseReason::FrameTooLarge(_) => "frame_too_large",
            CloseReason::InvalidUpdate(_) => "invalid_update",
            CloseReason::TextFrame => "text_frame",
            CloseReason::SlowConsumer { .. } => "slow_consumer",
            CloseReason::Timeout => "timeout",
            CloseReason::StorageUnavailable(_) => "storage_unavailable",
            CloseReason::PolicyViolation(_) => "policy_violation",
            CloseReason::AccessRevoked(_) => "access_revoked",
        }
    }

    /// The reason text, clipped to what a close frame can carry (123 bytes).
    pub fn text(&self) -> String {
        let full = match self {
            CloseReason::GoingAway => "server shutting down".to_owned(),
            CloseReason::BadFrame(why) => why.clone(),
            CloseReason::FrameTooLarge(why) => why.clone(),
            CloseReason::InvalidUpdate(why) => why.clone(),
            CloseReason::TextFrame => {
                "text frames are not supported; send binary y-websocket messages".to_owned()
            }
            CloseReason::SlowConsumer { frames, bytes } => {
                format!(
                    "outbound queue overflow ({frames} frames, {bytes} bytes); reconnect to resync"
                )
            }
            CloseReason::Timeout => "no message or pong received in time".to_owned(),
            CloseReason::StorageUnavailable(why) => format!("storage unavailable: {why}"),
            CloseReason::PolicyViolation(why) => why.clone(),
            CloseReason::AccessRevoked(why) => format!("access revoked: {why}"),
        };
        clip(full, 123)
    }
}

fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Shared between a connection task and the document tasks it joined.
#[derive(Debug, Default)]
pub struct Control {
    closed: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// Bytes sitting in the outbound queue. The queue bounds frames; this
    /// bounds memory, since one frame may be large.
    queued_bytes: AtomicUsize,
}

impl Control {
    /// Asks the connection to close with `reason`. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _first_wins = self.reason.set(reason);
        self.closed.cancel();
    }

    /// Resolves when someone asked the connection to close.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    /// The reason given to [`Control::close`], if any.
    pub fn reason(&self) -> Option<&CloseReason> {
        self.reason.get()
    }

    /// Records that the connection wrote `len` queued bytes to its socket.
    pub fn written(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

/// One item of a connection's outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A frame.
    Frame(Bytes),
    /// The frames of one sync reply, written in order. A large document's
    /// reply is many bounded frames; they take one queue slot, so a queue
    /// sized for broadcasts never refuses a reply.
    Reply(Vec<Bytes>),
}

impl Outbound {
    /// Bytes the item holds.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.len(),
            Outbound::Reply(frames) => frames.iter().map(Bytes::len).sum(),
        }
    }

    /// Whether the item holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The queue is over its frame or byte bound; the connection has been
    /// asked to close.
    Overflow,
    /// The connection is gone.
    Gone,
}

/// A document task's handle on one connection.
#[derive(Debug, Clone)]
pub struct PeerLink {
    /// The connection's id.
    pub id: ConnId,
    /// Who the peer is, for attribution: a user id or the connection id.
    pub origin: Arc<str>,
    /// Who signed in on this connection, for policy and audit.
    pub caller: Arc<Caller>,
    outbound: mpsc::Sender<Outbound>,
    control: Arc<Control>,
    max_queued_bytes: usize,
}

impl PeerLink {
    /// A link and the receiving end of its outbound queue.
    pub fn new(
        id: ConnId,
        origin: Arc<str>,
        queue_frames: usize,
        max_queued_bytes: usize,
    ) -> (Self, mpsc::Receiver<Outbound>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(queue_frames);
        let control = Arc::new(Control::default());
        let link = Self {
            id,
            origin,
            caller: Arc::new(Caller::anonymous(None, None)),
            outbound: tx,
            control: control.clone(),
            max_queued_bytes,
        };
        (link, rx, control)
    }

    /// The same link, for `caller`.
    pub fn with_caller(mut self, caller: Arc<Caller>) -> Self {
        self.caller = caller;
        self
    }

    /// Queues a frame the peer asked for (a sync reply). Bounded by frame
    /// count only: replies are as large as the document, and refusing them
    /// would leave the peer unable to ever sync.
    pub fn reply(&self, frame: Bytes) -> Result<(), SendError> {
        self.enqueue(Outbound::Frame(frame), false)
    }

    /// Queues the frames of one sync reply as one item (see
    /// [`Outbound::Reply`]).
    pub fn reply_all(&self, frames: Vec<Bytes>) -> Result<(), SendError> {
        self.enqueue(Outbound::Reply(frames), false)
    }

    /// Queues a broadcast frame. Over either bound, the connection is closed
    /// as a slow consumer: it will reconnect and resync rather than miss an
    /// update silently.
    pub fn broadcast(&self, frame: Bytes) -> Result<(), SendError> {
        self.enqueue(Outbound::Frame(frame), true)
    }

    fn enqueue(&self, frame: Outbound, bounded_bytes: bool) -> Result<(), SendError> {
        let len = frame.len();
        let queued = self.control.queued_bytes.load(Ordering::Relaxed);
        if bounded_bytes && queued > 0 && queued + len > self.max_queued_bytes {
            self.overflow(queued);
            return Err(SendError::Overflow);
        }
        self.control.queued_bytes.fetch_add(len, Ordering::Relaxed);
        match self.outbound.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.control.written(len);
                self.overflow(queued);
                Err(SendError::Overflow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.control.written(len);
                Err(SendError::Gone)
            }
        }
    }

    fn overflow(&self, bytes: usize) {
        let frames = self.outbound.max_capacity() - self.outbound.capacity();
        self.control
            .close(CloseReason::SlowConsumer { frames, bytes });
    }

    /// Asks the connection to close.
    pub fn close(&self, reason: CloseReason) {
        self.control.close(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_with_a_reason_instead_of_dropping() {
        let (link, mut rx, control) = PeerLink::new(ConnId(1), Arc::from("conn:1"), 2, 1 << 20);
        assert!(link.broadcast(Bytes::from_static(b"a")).is_ok());
        assert!(link.broadcast(Bytes::from_static(b"b")).is_ok());
        assert_eq!(
            link.broadcast(Bytes::from_static(b"c")),
            Err(SendError::Overflow)
        );
        assert!(matches!(
            control.reason(),
            Some(CloseReason::SlowConsumer { frames: 2, .. })
        ));
        assert_eq!(
            rx.try_recv().unwrap(),
            Outbound::Frame(Bytes::from_static(b"a"))
        );
    }

    #[test]
    fn byte_bound_applies_to_broadcasts_not_replies() {
        let (link, _rx, control) = PeerLink::new(ConnId(1), Arc::from("conn:1"), 100, 10);
        assert!(link.reply(Bytes::from(vec![0; 50])).is_ok());
        assert!(
            link.reply_all(vec![Bytes::from(vec![0; 50]); 300]).is_ok(),
            "one slot"
        );
        assert_eq!(
            link.broadcast(Bytes::from(vec![0; 1])),
            Err(SendError::Overflow)
        );
        assert!(control.reason().is_some());
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        let long = CloseReason::InvalidUpdate("é".repeat(200));
        assert!(long.text().len() <= 123);
        assert_eq!(
            CloseReason::SlowConsumer {
                frames: 1,
                bytes: 2
            }
            .code(),
            1013
        );
    }
}
