//! Size and shape bounds applied to every untrusted input.

/// Bounds applied while decoding frames and updates from a peer.
///
/// Every field is a hard ceiling: input beyond it is refused with a typed
/// error naming the limit, before any allocation proportional to the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Largest single Yjs update (the payload of a sync step 2 or update
    /// message, or an HTTP update body), in bytes.
    pub max_update_bytes: usize,
    /// Largest awareness state of one client (a JSON document), in bytes.
    /// Presence carries cursors and names, never content.
    pub max_awareness_state_bytes: usize,
    /// Most awareness entries accepted in one awareness message.
    pub max_awareness_entries: usize,
    /// Most protocol messages packed into one frame.
    pub max_messages_per_frame: usize,
    /// Deepest nesting of a lib0 `Any` value inside an update. yrs decodes
    /// `Any` recursively, so an unbounded depth would overflow the stack.
    pub max_any_depth: usize,
    /// Largest update in a sync reply: a bigger reply travels as several
    /// valid updates, so no single frame trips a client's timeout.
    pub max_sync_chunk_bytes: usize,
    /// Most updates a document holds while their dependencies have not
    /// arrived (see [`crate::Document::apply_decoded`]).
    pub max_waiting_updates: usize,
    /// Most bytes of such updates a document holds.
    pub max_waiting_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024 * 1024,
            max_update_bytes: 16 * 1024 * 1024,
            max_awareness_state_bytes: 64 * 1024,
            max_awareness_entries: 1024,
            max_messages_per_frame: 64,
            max_any_depth: 64,
            max_sync_chunk_bytes: 1024 * 1024,
            max_waiting_updates: 1024,
            max_waiting_bytes: 16 * 1024 * 1024,
        }
    }
}
