//! Cross-node fan-out: several nodes serve the same documents at once.
//!
//! Every node stores to the same PostgreSQL log, which numbers each
//! document's entries without gaps, in commit order. Redis pub/sub only
//! carries the news: a node that commits a batch publishes it with its
//! sequence range on the document's channel; other nodes holding the
//! document apply it and fan it out to their own clients.
//!
//! Why pub/sub, not streams: the durable, ordered, replayable log already
//! exists in PostgreSQL, and a second one in Redis would need trimming (a
//! stream left untrimmed once grew to 844 MB in y-redis) and could disagree
//! with the first. With pub/sub Redis holds nothing, so it has nothing to
//! trim or lose; a node that misses a message sees the gap in the sequence
//! numbers (or knows it missed some, after a Redis outage) and reads what it
//! lacks from PostgreSQL, which is the source of truth for every node.

mod message;
mod redis;

use bytes::Bytes;

pub use self::message::{Body, Envelope, EnvelopeError};
pub use self::redis::{Cluster, ClusterConfig};

/// What other nodes tell a document task.
#[derive(Debug, Clone)]
pub enum Remote {
    /// Updates another node committed: log entries `first_seq..=last_seq`.
    Updates {
        /// First log entry covered.
        first_seq: u64,
        /// Last log entry covered.
        last_seq: u64,
        /// The entries merged into one v1 update.
        update: Bytes,
    },
    /// A presence change of another node's peers (v1 awareness update).
    Presence(Bytes),
    /// The bus reconnected; messages may have been lost. Catch up from the
    /// store.
    Resync,
}
