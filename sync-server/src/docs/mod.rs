//! Documents in memory: one task per loaded document, found through the
//! registry.

pub(crate) mod batch;
pub mod command;
pub mod fanout;
mod name;
pub mod peer;
pub mod registry;
mod sequence;
mod task;

use std::time::Duration;

use crdt_core::Limits;

pub use self::command::{Command, DocError, PresenceEntry, ReadKind, ReadOut};
pub use self::name::{DocName, MAX_NAME_LEN, NameError};
pub use self::peer::{CloseReason, ConnId, Control, Outbound, PeerLink};
pub use self::registry::{DocHandle, DocShared, Registry};
pub use self::task::{AutoVersions, ERASURE_ORIGIN, EraseRequest, Erased};

/// How documents behave.
#[derive(Debug, Clone)]
pub struct DocConfig {
    /// Bounds on peer input.
    pub limits: Limits,
    /// Longest a batch of updates waits before it is committed and fanned
    /// out.
    pub coalesce_max: Duration,
    /// Frames per second one document aims to send at most. The coalescing
    /// window is `peers / fanout_frames_per_sec`, capped at `coalesce_max`:
    /// a document with few peers sends at once, a crowded one batches.
    pub fanout_frames_per_sec: u32,
    /// How long a document with no peers stays loaded.
    pub idle_unload: Duration,
    /// How long a presence state lives without renewal.
    pub presence_timeout: Duration,
    /// How often presence expiry and idle checks run.
    pub housekeeping_interval: Duration,
    /// Log entries since the last snapshot that start a compaction.
    pub compact_after_updates: usize,
    /// Log bytes since the last snapshot that start a compaction.
    pub compact_after_bytes: usize,
    /// Benchmark baseline: forward frames without CRDT work or storage.
    pub relay: bool,
    /// When automatic versions are taken.
    pub versions: AutoVersions,
}

impl Default for DocConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            coalesce_max: Duration::from_millis(50),
            fanout_frames_per_sec: 25_000,
            idle_unload: Duration::from_secs(30),
            presence_timeout: Duration::from_secs(30),
            housekeeping_interval: Duration::from_secs(1),
            compact_after_updates: 1000,
            compact_after_bytes: 4 * 1024 * 1024,
            relay: false,
            versions: AutoVersions::default(),
        }
    }
}
