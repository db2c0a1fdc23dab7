//! What nodes tell each other about a document, on the wire.
//!
//! `[version=1][kind][node: u64 BE]` then, for updates,
//! `[first_seq: u64 BE][last_seq: u64 BE][v1 update]`, and for presence
//! `[v1 awareness update]`. Decoding checks every length and never panics:
//! a message that does not decode is counted and dropped, and the gap it
//! leaves is healed from the store like any lost message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;
const KIND_UPDATES: u8 = 1;
const KIND_PRESENCE: u8 = 2;

/// A message from one node about one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The node that sent it.
    pub node: u64,
    /// What it says.
    pub body: Body,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Updates the sender committed: log entries `first_seq..=last_seq`,
    /// merged into one v1 update.
    Updates {
        /// First log entry covered.
        first_seq: u64,
        /// Last log entry covered.
        last_seq: u64,
        /// The entries, merged.
        update: Bytes,
    },
    /// A presence change of the sender's peers (a v1 awareness update).
    Presence(Bytes),
}

/// Why a message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than its header.
    #[error("cluster message is truncated")]
    Truncated,
    /// From a newer node.
    #[error("unknown cluster message version {0}")]
    Version(u8),
    /// An unknown kind.
    #[error("unknown cluster message kind {0}")]
    Kind(u8),
    /// A sequence range that runs backwards.
    #[error("cluster message covers entries {first}..={last}")]
    Range {
        /// First entry.
        first: u64,
        /// Last entry.
        last: u64,
    },
}

impl Envelope {
    /// Encodes the message.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        out.put_u8(VERSION);
        match &self.body {
            Body::Updates {
                first_seq,
                last_seq,
                update,
            } => {
                out.put_u8(KIND_UPDATES);
                out.put_u64(self.node);
                out.put_u64(*first_seq);
                out.put_u64(*last_seq);
                out.extend_from_slice(update);
            }
            Body::Presence(update) => {
                out.put_u8(KIND_PRESENCE);
                out.put_u64(self.node);
                out.extend_from_slice(update);
            }
        }
        out.freeze()
    }

    /// Decodes a message.
    pub fn decode(mut bytes: Bytes) -> Result<Self, EnvelopeError> {
        if bytes.len() < 10 {
            return Err(EnvelopeError::Truncated);
        }
        let version = bytes.get_u8();
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let kind = bytes.get_u8();
        let node = bytes.get_u64();
        let body = match kind {
            KIND_UPDATES => {
                if bytes.len() < 16 {
                    return Err(EnvelopeError::Truncated);
                }
                let first_seq = bytes.get_u64();
                let last_seq = bytes.get_u64();
                if first_seq > last_seq || first_seq == 0 {
                    return Err(EnvelopeError::Range {
                        first: first_seq,
                        last: last_seq,
                    });
                }
                Body::Updates {
                    first_seq,
                    last_seq,
                    update: bytes,
                }
            }
            KIND_PRESENCE => Body::Presence(bytes),
            other => return Err(EnvelopeError::Kind(other)),
        };
        Ok(Self { node, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        for body in [
            Body::Updates {
                first_seq: 3,
                last_seq: 9,
                update: Bytes::from_static(&[1, 2, 3]),
            },
            Body::Presence(Bytes::from_static(&[0])),
        ] {
            let message = Envelope { node: 42, body };
            assert_eq!(Envelope::decode(message.encode()), Ok(message));
        }
    }

    #[test]
    fn bad_messages_are_named() {
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[1])),
            Err(EnvelopeError::Truncated)
        );
        let mut wrong = Envelope {
            node: 1,
            body: Body::Presence(Bytes::new()),
        }
        .encode()
        .to_vec();
        wrong[0] = 9;
        assert_eq!(
            Envelope::decode(wrong.into()),
            Err(EnvelopeError::Version(9))
        );
        let backwards = Envelope {
            node: 1,
            body: Body::Updates {
                first_seq: 5,
                last_seq: 4,
                update: Bytes::new(),
            },
        };
        assert!(matches!(
            Envelope::decode(backwards.encode()),
            Err(EnvelopeError::Range { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Envelope::decode(Bytes::from(bytes));
        }
    }
}
