//! Bounded, panic-guarded decoding of Yjs updates.
//!
//! yrs decodes updates well, but it trusts its input in two ways that a
//! server must not: lib0 `Any` values are decoded recursively with no depth
//! limit (a few kilobytes of `[117, 1, 117, 1, ...]` overflow the stack and
//! abort the process), and some malformed inputs reach an `unwrap` deep in the
//! decoder. This module wraps yrs's own decoders so that both become typed
//! errors. Everything else about the encoding is yrs's.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use yrs::Update;
use yrs::encoding::read::{Cursor, Read};
use yrs::updates::decoder::{Decode, Decoder, DecoderV1, DecoderV2};

use crate::Limits;
use crate::guard::{Guarded, count_fits};

/// The lib0 encoding of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The first lib0 encoding: what the y-websocket protocol carries.
    V1,
    /// The second lib0 encoding: column-oriented, smaller for whole states;
    /// what the stores keep.
    V2,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::V1 => "v1",
            Encoding::V2 => "v2",
        })
    }
}

/// Why an update was refused before it reached a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The update is larger than [`Limits::max_update_bytes`].
    #[error("update of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused update.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not a valid update in the given encoding.
    #[error("malformed {encoding} update: {reason}")]
    Malformed {
        /// The encoding the bytes were read as.
        encoding: Encoding,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The update decodes to more blocks than the largest v1 update
    /// [`Limits::max_update_bytes`] admits could carry. v2 packs runs of
    /// blocks into a few bytes: without this bound, 25 bytes can decode to
    /// gigabytes.
    #[error("update decodes to more than {limit} blocks")]
    TooManyBlocks {
        /// The bound derived from the limits.
        limit: usize,
    },
    /// A value inside the update nests deeper than [`Limits::max_any_depth`].
    #[error("update nests values deeper than {limit} levels")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// yrs panicked while decoding; the input is malformed in a way yrs does
    /// not check for.
    #[error("malformed {encoding} update: the decoder rejected it")]
    DecoderPanicked {
        /// The encoding the bytes were read as.
        encoding: Encoding,
    },
}

/// Decodes an update with every bound in `limits` applied.
///
/// Never panics: a panic inside yrs becomes [`UpdateError::DecoderPanicked`].
pub fn decode_update(
    bytes: &[u8],
    encoding: Encoding,
    limits: &Limits,
) -> Result<Update, UpdateError> {
    decode_with_references(bytes, encoding, limits).map(|d| d.update)
}

/// An update decoded with what it depends on.
#[derive(Debug)]
pub struct DecodedUpdate {
    /// The update.
    pub update: Update,
    /// Item ids its structs point at (origins and parent items).
    pub references: Vec<yrs::ID>,
}

impl DecodedUpdate {
    /// Whether the update carries nothing.
    pub fn is_empty(&self) -> bool {
        self.update.is_empty()
    }
}

/// [`decode_update`], also reporting the item ids the update refers to, so
/// a document can tell whether everything it depends on has arrived.
pub fn decode_with_references(
    bytes: &[u8],
    encoding: Encoding,
    limits: &Limits,
) -> Result<DecodedUpdate, UpdateError> {
    if bytes.len() > limits.max_update_bytes {
        return Err(UpdateError::TooLarge {
            size: bytes.len(),
            limit: limits.max_update_bytes,
        });
    }
    // An update's main stream opens with its number of clients, which yrs
    // reserves a hash table for (writing a byte per entry). Each client
    // takes at least three bytes of it in v1 (block count, client id,
    // clock) and two in v2 (the ids have a column of their own).
    let count_honest = match encoding {
        Encoding::V1 => count_fits(bytes, 3),
        Encoding::V2 => v2_main_stream(bytes).is_none_or(|main| count_fits(main, 2)),
    };
    if !count_honest {
        return Err(UpdateError::Malformed {
            encoding,
            reason: "client count exceeds the update's length".into(),
        });
    }
    // Every v1 block takes at least two bytes (its info and a length or a
    // parent), so this bound never refuses a v1 update within the size limit.
    let bounds = Bounds {
        max_depth: limits.max_any_depth,
        max_blocks: limits.max_update_bytes / 2,
    };
    catch_unwind(AssertUnwindSafe(|| match encoding {
        Encoding::V1 => {
            let guard = Guarded::v1(DecoderV1::new(Cursor::new(bytes)), bounds.max_depth);
            bounds.decode(guard, encoding)
        }
        Encoding::V2 => match DecoderV2::new(Cursor::new(bytes)) {
            Ok(inner) => bounds.decode(Guarded::v2(inner, bounds.max_depth), encoding),
            Err(e) => Err(UpdateError::Malformed {
                encoding,
                reason: e.to_string(),
            }),
        },
    }))
    .unwrap_or(Err(UpdateError::DecoderPanicked { encoding }))
}

fn has_empty_delete_range(update: &Update) -> bool {
    update
        .delete_set()
        .iter()
        .any(|(_, ranges)| ranges.iter().any(|range| range.is_empty()))
}

/// What follows a v2 update's feature flag and its nine column buffers, as
/// yrs's `DecoderV2::new` splits it; `None` if that fails (the decoder then
/// names the error).
fn v2_main_stream(bytes: &[u8]) -> Option<&[u8]> {
    let mut cursor = Cursor::new(bytes);
    if !bytes.is_empty() {
        cursor.read_u8().ok()?;
    }
    for _ in 0..9 {
        cursor.read_buf().ok()?;
    }
    Some(&bytes[cursor.next..])
}

struct Bounds {
    max_depth: usize,
    max_blocks: usize,
}

impl Bounds {
    /// Decodes through `guard`, naming the bound that stopped it if one did.
    fn decode<D: Decoder>(
        &self,
        guard: Guarded<D>,
        encoding: Encoding,
    ) -> Result<DecodedUpdate, UpdateError> {
        let mut guard = guard.with_max_blocks(self.max_blocks);
        let decoded = Update::decode(&mut guard).map(|update| DecodedUpdate {
            update,
            references: std::mem::take(&mut guard.references),
        });
        if let Ok(decoded) = &decoded
            && has_empty_delete_range(&decoded.update)
        {
            // v1 carries a delete range's length as is, so it can be 0;
            // yrs keeps such a range, and encoding the document as v2 later
            // writes its length minus one (a debug assertion, and in release
            // a range of 2^32 - 1 in the stored snapshot).
            return Err(UpdateError::Malformed {
                encoding,
                reason: "delete set holds an empty range".into(),
            });
        }
        decoded.map_err(|e| {
            if guard.too_deep {
                UpdateError::TooDeep {
                    limit: self.max_depth,
                }
            } else if guard.too_many_blocks {
                UpdateError::TooManyBlocks {
                    limit: self.max_blocks,
                }
            } else {
                UpdateError::Malformed {
                    encoding,
                    reason: e.to_string(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Any, Array, Doc, Transact};

    fn nested_any_update(depth: usize) -> Vec<u8> {
        // A real update holding one ContentAny value, with the value's bytes
        // replaced by a deeper nesting than any sane client produces.
        let doc = Doc::with_client_id(7);
        let arr = doc.get_or_insert_array("a");
        let mut txn = doc.transact_mut();
        arr.push_back(&mut txn, Any::Null);
        let mut bytes = txn.encode_update_v1();
        let at = bytes.iter().rposition(|&b| b == 126).expect("null marker");
        let mut nested = Vec::new();
        for _ in 0..depth {
            nested.extend_from_slice(&[117, 1]);
        }
        nested.push(126);
        bytes.splice(at..at + 1, nested);
        bytes
    }

    #[test]
    fn an_empty_delete_range_is_refused() {
        // No structs; a delete set of one client (5) with one range at
        // clock 0 of length 0.
        let bytes = [0, 1, 5, 1, 0, 0];
        let error = decode_update(&bytes, Encoding::V1, &Limits::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed v1 update: delete set holds an empty range"
        );
        // A range of length 1 is fine.
        assert!(decode_update(&[0, 1, 5, 1, 0, 1], Encoding::V1, &Limits::default()).is_ok());
    }

    #[test]
    fn accepts_a_real_update_in_both_encodings() {
        let doc = Doc::with_client_id(1);
        let arr = doc.get_or_insert_array("a");
        let mut txn = doc.transact_mut();
        arr.push_back(&mut txn, Any::from(vec![Any::from("x"), Any::from(1.5)]));
        let v1 = txn.encode_update_v1();
        let v2 = txn.encode_update_v2();
        let limits = Limits::default();
        let a = decode_update(&v1, Encoding::V1, &limits).unwrap();
        let b = decode_update(&v2, Encoding::V2, &limits).unwrap();
        assert_eq!(a.encode_v1(), b.encode_v1());
    }

    #[test]
    fn refuses_deep_nesting_without_recursing() {
        let limits = Limits::default();
        let shallow = nested_any_update(limits.max_any_depth - 1);
        assert!(decode_update(&shallow, Encoding::V1, &limits).is_ok());
        // Half a million levels would overflow any thread's stack in yrs.
        let deep = nested_any_update(500_000);
        assert_eq!(
            decode_update(&deep, Encoding::V1, &limits).unwrap_err(),
            UpdateError::TooDeep {
                limit: limits.max_any_depth
            }
        );
    }

    #[test]
    fn refuses_a_client_listed_twice() {
        // Client 1 twice, both runs starting at clock 1: a deleted item in
        // root "" and a GC block over the same clock. yrs would free the
        // item while root "" still starts with it.
        let update = [2, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0];
        let err = decode_update(&update, Encoding::V1, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, UpdateError::Malformed { reason, .. } if reason.contains("listed twice")),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_legacy_json_content() {
        // Yjs's encoding of a JSON block holding `[1]` at the start of root
        // "a". yrs would read a second string, here the delete set.
        let update = [1, 1, 5, 0, 2, 1, 1, b'a', 1, 1, b'1', 0];
        let err = decode_update(&update, Encoding::V1, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, UpdateError::Malformed { reason, .. } if reason.contains("JSON content")),
            "{err:?}"
        );
    }

    #[test]
    fn v2_cannot_decode_to_more_blocks_than_v1_could_carry() {
        // One client with a thousand one-clock GC blocks: two bytes each in
        // v1, a run-length-encoded column of a few bytes in v2.
        let mut v1 = vec![1, 0xe8, 0x07, 5, 0];
        for _ in 0..1000 {
            v1.extend([0, 1]);
        }
        v1.push(0);
        let v2 = Update::decode_v1(&v1).unwrap().encode_v2();
        assert!(v2.len() < 30, "{} bytes", v2.len());
        let limits = Limits {
            max_update_bytes: 1998,
            ..Limits::default()
        };
        assert_eq!(
            decode_update(&v2, Encoding::V2, &limits).unwrap_err(),
            UpdateError::TooManyBlocks { limit: 999 }
        );
        // The same blocks in v1 are refused by size; a larger limit takes both.
        assert!(matches!(
            decode_update(&v1, Encoding::V1, &limits),
            Err(UpdateError::TooLarge { .. })
        ));
        let limits = Limits {
            max_update_bytes: 2006,
            ..Limits::default()
        };
        assert!(decode_update(&v1, Encoding::V1, &limits).is_ok());
        assert!(decode_update(&v2, Encoding::V2, &limits).is_ok());
    }

    #[test]
    fn refuses_lying_client_counts_in_both_encodings() {
        // 2^29-1 clients: yrs would write half a gigabyte of hash table
        // control bytes before finding the input ends.
        let count = [0xff, 0xff, 0xff, 0xff, 0x01];
        let v1 = [&count[..], &[0]].concat();
        let empty_v2 = Update::EMPTY_V2;
        let v2 = [&empty_v2[..empty_v2.len() - 2], &count, &[0]].concat();
        for (bytes, encoding) in [(v1, Encoding::V1), (v2, Encoding::V2)] {
            let err = decode_update(&bytes, encoding, &Limits::default()).unwrap_err();
            assert!(
                format!("{err}").contains("client count"),
                "{encoding}: {err}"
            );
        }
        assert!(decode_update(Update::EMPTY_V2, Encoding::V2, &Limits::default()).is_ok());
    }

    #[test]
    fn refuses_oversize_before_decoding() {
        let limits = Limits {
            max_update_bytes: 8,
            ..Limits::default()
        };
        let err = decode_update(&[0u8; 9], Encoding::V1, &limits).unwrap_err();
        assert_eq!(err, UpdateError::TooLarge { size: 9, limit: 8 });
    }

    #[test]
    fn truncated_input_is_malformed() {
        let doc = Doc::with_client_id(1);
        let arr = doc.get_or_insert_array("a");
        let mut txn = doc.transact_mut();
        arr.push_back(&mut txn, Any::from("hello"));
        let v1 = txn.encode_update_v1();
        let err = decode_update(&v1[..v1.len() - 3], Encoding::V1, &Limits::default());
        assert!(matches!(err, Err(UpdateError::Malformed { .. })), "{err:?}");
    }
}
