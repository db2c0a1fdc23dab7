//! The y-websocket wire format: a frame in, validated messages out, and the
//! frames a peer sends.
//!
//! Message types and their encoding are yrs's (`yrs::sync`); this module adds
//! the bounds a server needs before it trusts a frame: sizes, counts, a clean
//! end of input, and awareness states that other clients can parse.

use std::panic::{AssertUnwindSafe, catch_unwind};

use yrs::StateVector;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::protocol::{
    MSG_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2, MSG_SYNC_UPDATE,
};
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};

use crate::Limits;
use crate::guard::{Guarded, count_fits};

/// Why a frame was refused. Each variant names the problem so that a close
/// reason built from it tells the peer what it did wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame has no bytes.
    #[error("empty frame")]
    Empty,
    /// The frame is larger than [`Limits::max_frame_bytes`].
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused frame.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes do not decode as y-websocket messages.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame packs more messages than [`Limits::max_messages_per_frame`].
    #[error("frame packs more than {limit} messages")]
    TooManyMessages {
        /// The configured limit.
        limit: usize,
    },
    /// A message type this server does not speak.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A sync payload is larger than [`Limits::max_update_bytes`].
    #[error("update of {size} bytes exceeds the limit of {limit} bytes")]
    UpdateTooLarge {
        /// Size of the refused update.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An awareness message carries more entries than
    /// [`Limits::max_awareness_entries`].
    #[error("awareness message has {count} entries; the limit is {limit}")]
    TooManyAwarenessEntries {
        /// Entries in the refused message.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// One awareness state is larger than [`Limits::max_awareness_state_bytes`].
    #[error("awareness state of client {client} is {size} bytes; the limit is {limit}")]
    AwarenessStateTooLarge {
        /// The awareness client id.
        client: u64,
        /// Size of its state.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An awareness state is not JSON; other clients would fail to parse it.
    #[error("awareness state of client {client} is not valid JSON: {reason}")]
    AwarenessStateNotJson {
        /// The awareness client id.
        client: u64,
        /// What the JSON parser found wrong.
        reason: String,
    },
}

/// Decodes one WebSocket frame into the messages it carries.
///
/// Stable Yjs clients send one message per frame; newer ones may pack
/// several back to back, which is accepted up to
/// [`Limits::max_messages_per_frame`]. Unknown message types, truncated
/// messages and trailing bytes are errors, never silently skipped. Never
/// panics.
pub fn decode_frame(frame: &[u8], limits: &Limits) -> Result<Vec<Message>, FrameError> {
    if frame.is_empty() {
        return Err(FrameError::Empty);
    }
    if frame.len() > limits.max_frame_bytes {
        return Err(FrameError::TooLarge {
            size: frame.len(),
            limit: limits.max_frame_bytes,
        });
    }
    catch_unwind(AssertUnwindSafe(|| decode_messages(frame, limits)))
        .unwrap_or_else(|_| Err(FrameError::Malformed("the decoder rejected it".into())))
}

fn decode_messages(frame: &[u8], limits: &Limits) -> Result<Vec<Message>, FrameError> {
    let mut decoder = Guarded::v1(DecoderV1::new(Cursor::new(frame)), limits.max_any_depth);
    let mut messages = Vec::with_capacity(1);
    while decoder.consumed < frame.len() {
        if messages.len() == limits.max_messages_per_frame {
            return Err(FrameError::TooManyMessages {
                limit: limits.max_messages_per_frame,
            });
        }
        preflight(&frame[decoder.consumed..])?;
        let message =
            Message::decode(&mut decoder).map_err(|e| FrameError::Malformed(e.to_string()))?;
        validate(&message, limits)?;
        messages.push(message);
    }
    Ok(messages)
}

/// Refuses counts that claim more entries than the bytes that follow could
/// hold, before yrs reserves memory for them.
fn preflight(rest: &[u8]) -> Result<(), FrameError> {
    let mut cursor = Cursor::new(rest);
    let lie = |what: &str| FrameError::Malformed(format!("{what} count exceeds the frame"));
    match cursor.read_var::<u8>() {
        Ok(MSG_SYNC) => {
            if let (Ok(MSG_SYNC_STEP_1), Ok(sv)) = (cursor.read_var::<u8>(), cursor.read_buf()) {
                // A state vector entry is a client id and a clock.
                if !count_fits(sv, 2) {
                    return Err(lie("state vector"));
                }
            }
        }
        Ok(MSG_AWARENESS) => {
            // An entry is a client id, a clock and a JSON string.
            if let Ok(body) = cursor.read_buf()
                && !count_fits(body, 3)
            {
                return Err(lie("awareness entry"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn validate(message: &Message, limits: &Limits) -> Result<(), FrameError> {
    match message {
        Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update))
            if update.len() > limits.max_update_bytes =>
        {
            Err(FrameError::UpdateTooLarge {
                size: update.len(),
                limit: limits.max_update_bytes,
            })
        }
        Message::Sync(_) | Message::AwarenessQuery | Message::Auth(_) => Ok(()),
        Message::Awareness(update) => validate_awareness(update, limits),
        Message::Custom(MSG_VERSION, body) => VersionRequest::parse(body).map(drop),
        Message::Custom(tag, _) => Err(FrameError::UnknownType(*tag)),
    }
}

/// Message type of a named-version request, an extension of this server:
/// `[100, varUint8Array(JSON {"label": .., "description": ..})]`. Stock
/// y-websocket clients never send it; the SDK does.
pub const MSG_VERSION: u8 = 100;

/// Longest named-version request body, in bytes.
const MAX_VERSION_REQUEST: usize = 4096;

/// A peer's request to save the current state as a named version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct VersionRequest {
    /// A short name, shown in lists.
    pub label: String,
    /// Optional longer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl VersionRequest {
    /// Parses a request body, bounded.
    pub fn parse(body: &[u8]) -> Result<Self, FrameError> {
        if body.len() > MAX_VERSION_REQUEST {
            return Err(FrameError::Malformed(format!(
                "version request of {} bytes exceeds {MAX_VERSION_REQUEST}",
                body.len()
            )));
        }
        let request: Self = serde_json::from_slice(body).map_err(|e| {
            FrameError::Malformed(format!("version request is not valid JSON: {e}"))
        })?;
        if request.label.trim().is_empty() || request.label.len() > 200 {
            return Err(FrameError::Malformed(
                "version label must be 1-200 characters".into(),
            ));
        }
        Ok(request)
    }

    /// The frame a client sends.
    pub fn frame(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("a version request serializes");
        Message::Custom(MSG_VERSION, body).encode_v1()
    }
}

/// Checks an awareness update against the limits, and that every state is
/// JSON: y-protocols clients `JSON.parse` each state, so one bad state
/// relayed by the server would throw in every other client.
pub fn validate_awareness(update: &AwarenessUpdate, limits: &Limits) -> Result<(), FrameError> {
    if update.clients.len() > limits.max_awareness_entries {
        return Err(FrameError::TooManyAwarenessEntries {
            count: update.clients.len(),
            limit: limits.max_awareness_entries,
        });
    }
    for (client, entry) in &update.clients {
        let client = client.get();
        if entry.json.len() > limits.max_awareness_state_bytes {
            return Err(FrameError::AwarenessStateTooLarge {
                client,
                size: entry.json.len(),
                limit: limits.max_awareness_state_bytes,
            });
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&entry.json) {
            return Err(FrameError::AwarenessStateNotJson {
                client,
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

/// A sync step 1 frame carrying `state_vector`.
pub fn sync_step1(state_vector: &StateVector) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep1(state_vector.clone())).encode_v1()
}

/// A sync step 2 frame carrying a v1 update.
pub fn sync_step2(update_v1: &[u8]) -> Vec<u8> {
    sync_frame(MSG_SYNC_STEP_2, update_v1)
}

/// A sync update frame carrying a v1 update.
pub fn sync_update(update_v1: &[u8]) -> Vec<u8> {
    sync_frame(MSG_SYNC_UPDATE, update_v1)
}

fn sync_frame(kind: u8, update_v1: &[u8]) -> Vec<u8> {
    // Written directly rather than through `Message`, which would first copy
    // the (possibly large) update into an owned buffer.
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(kind);
    encoder.write_buf(update_v1);
    encoder.to_vec()
}

/// An awareness frame.
pub fn awareness(update: &AwarenessUpdate) -> Vec<u8> {
    Message::Awareness(update.clone()).encode_v1()
}

/// An awareness frame with no entries. Clients apply it as a no-op, but it
/// counts as a message received: stable y-websocket clients drop a
/// connection that has carried no message for 30 seconds, and WebSocket
/// pings are invisible to browser code.
pub fn keepalive() -> Vec<u8> {
    awareness(&AwarenessUpdate {
        clients: Default::default(),
    })
}

/// A permission-denied frame (`auth` message) carrying a reason. Stable
/// y-websocket clients log it and keep the connection.
pub fn permission_denied(reason: &str) -> Vec<u8> {
    Message::Auth(Some(reason.to_owned())).encode_v1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use yrs::ClientID;
    use yrs::sync::awareness::AwarenessUpdateEntry;

    fn awareness_with(json: &str) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: HashMap::from([(
                ClientID::new(5),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: Arc::from(json),
                },
            )]),
        }
    }

    #[test]
    fn empty_document_step1_is_the_documented_bytes() {
        assert_eq!(sync_step1(&StateVector::default()), vec![0, 0, 1, 0]);
        let messages = decode_frame(&[0, 0, 1, 0], &Limits::default()).unwrap();
        assert_eq!(
            messages,
            vec![Message::Sync(
                SyncMessage::SyncStep1(StateVector::default())
            )]
        );
    }

    #[test]
    fn several_messages_in_one_frame() {
        let mut frame = sync_step1(&StateVector::default());
        frame.extend(sync_update(&[0, 0]));
        frame.extend(keepalive());
        let messages = decode_frame(&frame, &Limits::default()).unwrap();
        assert_eq!(messages.len(), 3);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        let frame = sync_update(&[0, 0, 0, 0]);
        assert!(matches!(
            decode_frame(&frame[..frame.len() - 1], &Limits::default()),
            Err(FrameError::Malformed(_))
        ));
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(decode_frame(&trailing, &Limits::default()).is_err());
    }

    #[test]
    fn unknown_types_and_bad_awareness_are_named() {
        assert_eq!(
            decode_frame(&[9, 1, 0], &Limits::default()),
            Err(FrameError::UnknownType(9))
        );
        let frame = awareness(&awareness_with("{not json"));
        assert!(matches!(
            decode_frame(&frame, &Limits::default()),
            Err(FrameError::AwarenessStateNotJson { client: 5, .. })
        ));
        let frame = awareness(&awareness_with("null"));
        assert!(decode_frame(&frame, &Limits::default()).is_ok());
    }

    #[test]
    fn lying_counts_are_refused_before_allocation() {
        // A state vector claiming 2^32-1 entries in six bytes.
        let frame = [0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decode_frame(&frame, &Limits::default()),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_frame_bytes: 10,
            max_update_bytes: 4,
            ..Limits::default()
        };
        assert_eq!(
            decode_frame(&[0; 11], &limits),
            Err(FrameError::TooLarge {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(
            decode_frame(&sync_update(&[0; 5]), &limits),
            Err(FrameError::UpdateTooLarge { size: 5, limit: 4 })
        );
    }
}
