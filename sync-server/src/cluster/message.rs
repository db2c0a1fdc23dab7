//! What nodes tell each other about a document, on the wire.
//!
//! `[version=1][kind][node: u64 BE]` then, for updates,
//! `[first_seq: u64 BE][last_seq: u64 BE][v1 update]`, for presence
//! `[v1 awareness update]`, and for an access change
//! `[workspace length: u32 BE][workspace utf8][user utf8]`. Decoding checks
//! every length (and the text of an access change) and never panics: a
//! document message that does not decode is counted and dropped, and the
//! gap it leaves is healed from the store like any lost message; an access
//! change that does not decode makes every connection re-check.
//!
//! Nodes from before access changes reject kind 3 as an unknown kind; they
//! never hear one, as they do not subscribe to the access channel.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;
const KIND_UPDATES: u8 = 1;
const KIND_PRESENCE: u8 = 2;
const KIND_ACCESS: u8 = 3;

/// A message from one node about one document, or about access.
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
    /// Who may do what changed: live connections of `user` to
    /// `workspace` must re-check (see `crate::auth::AccessChange`).
    Access {
        /// The workspace (`*`: every workspace).
        workspace: String,
        /// The user id (`*`: every user).
        user: String,
    },
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
    /// A length that runs past the end of the message.
    #[error("cluster message {field} of {declared} bytes has only {available} left")]
    Length {
        /// What the length is of.
        field: &'static str,
        /// The length the message declares.
        declared: usize,
        /// The bytes that follow it.
        available: usize,
    },
    /// Text that is not UTF-8.
    #[error("cluster message {0} is not UTF-8")]
    NotUtf8(&'static str),
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
            Body::Access { workspace, user } => {
                out.put_u8(KIND_ACCESS);
                out.put_u64(self.node);
                // A workspace comes from a URL path, far shorter than
                // 4 GiB. Were one longer, the length would not match and
                // receivers would re-check every connection: safe.
                out.put_u32(u32::try_from(workspace.len()).unwrap_or(u32::MAX));
                out.extend_from_slice(workspace.as_bytes());
                out.extend_from_slice(user.as_bytes());
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
            KIND_ACCESS => decode_access(bytes)?,
            other => return Err(EnvelopeError::Kind(other)),
        };
        Ok(Self { node, body })
    }
}

/// `[workspace length: u32 BE][workspace][user]`, both UTF-8.
fn decode_access(mut bytes: Bytes) -> Result<Body, EnvelopeError> {
    if bytes.len() < 4 {
        return Err(EnvelopeError::Length {
            field: "workspace length",
            declared: 4,
            available: bytes.len(),
        });
    }
    let declared = bytes.get_u32() as usize;
    if declared > bytes.len() {
        return Err(EnvelopeError::Length {
            field: "workspace",
            declared,
            available: bytes.len(),
        });
    }
    let workspace = bytes.split_to(declared);
    let text = |field, bytes: Bytes| {
        String::from_utf8(bytes.to_vec()).map_err(|_| EnvelopeError::NotUtf8(field))
    };
    Ok(Body::Access {
        workspace: text("workspace", workspace)?,
        user: text("user", bytes)?,
    })
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
            Body::Access {
                workspace: "acme".into(),
                user: "https://idp|ada".into(),
            },
            Body::Access {
                workspace: "*".into(),
                user: "*".into(),
            },
            Body::Access {
                workspace: String::new(),
                user: String::new(),
            },
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

    /// The header of an access change from node 1, then `rest`.
    fn access(rest: &[u8]) -> Bytes {
        let mut bytes = vec![VERSION, KIND_ACCESS];
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(rest);
        Bytes::from(bytes)
    }

    #[test]
    fn bad_access_changes_are_named() {
        assert_eq!(
            Envelope::decode(access(&[0, 0])),
            Err(EnvelopeError::Length {
                field: "workspace length",
                declared: 4,
                available: 2
            })
        );
        assert_eq!(
            Envelope::decode(access(&[0, 0, 0, 5, b'a', b'c'])),
            Err(EnvelopeError::Length {
                field: "workspace",
                declared: 5,
                available: 2
            })
        );
        assert_eq!(
            Envelope::decode(access(&[0, 0, 0, 2, 0xc3, 0x28, b'u'])),
            Err(EnvelopeError::NotUtf8("workspace"))
        );
        assert_eq!(
            Envelope::decode(access(&[0, 0, 0, 1, b'w', 0xff])),
            Err(EnvelopeError::NotUtf8("user"))
        );
        // A length that fills the message exactly leaves an empty user.
        assert_eq!(
            Envelope::decode(access(&[0, 0, 0, 1, b'w'])),
            Ok(Envelope {
                node: 1,
                body: Body::Access {
                    workspace: "w".into(),
                    user: String::new()
                }
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Envelope::decode(Bytes::from(bytes));
        }

        #[test]
        fn arbitrary_access_bodies_never_panic(rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Envelope::decode(access(&rest));
        }

        #[test]
        fn access_changes_round_trip(node in any::<u64>(), workspace in ".{0,24}", user in ".{0,24}") {
            let message = Envelope { node, body: Body::Access { workspace, user } };
            prop_assert_eq!(Envelope::decode(message.encode()), Ok(message));
        }
    }
}
