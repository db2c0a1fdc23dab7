//! The byte layout of a log entry and a snapshot in key-value stores.
//!
//! Log entry: `[version=1][encoding][at_ms: u64 BE][origin_len: u16 BE][origin][update]`.
//! Snapshot:  `[version=1][encoding][through_seq: u64 BE][state]`.
//! Encoding bytes: 1 = lib0 v1, 2 = lib0 v2.

use crdt_core::Encoding;

use super::{Snapshot, StoredUpdate};

const VERSION: u8 = 1;

/// Why stored bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Shorter than its header says.
    #[error("entry is truncated")]
    Truncated,
    /// Written by a newer format version.
    #[error("unknown entry format version {0}")]
    Version(u8),
    /// An encoding byte this build does not know.
    #[error("unknown update encoding {0}")]
    Encoding(u8),
    /// The origin is not UTF-8.
    #[error("entry origin is not UTF-8")]
    Origin,
}

fn encoding_byte(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::V1 => 1,
        Encoding::V2 => 2,
    }
}

fn encoding_of(byte: u8) -> Result<Encoding, EntryError> {
    match byte {
        1 => Ok(Encoding::V1),
        2 => Ok(Encoding::V2),
        other => Err(EntryError::Encoding(other)),
    }
}

fn header(bytes: &[u8], len: usize) -> Result<(Encoding, &[u8]), EntryError> {
    if bytes.len() < len {
        return Err(EntryError::Truncated);
    }
    if bytes[0] != VERSION {
        return Err(EntryError::Version(bytes[0]));
    }
    Ok((encoding_of(bytes[1])?, &bytes[2..]))
}

/// Encodes a log entry.
pub(crate) fn encode_update(
    encoding: Encoding,
    at_ms: u64,
    origin: &str,
    update: &[u8],
) -> Vec<u8> {
    // Origins are ids, never long; clip rather than fail an append.
    let origin = &origin.as_bytes()[..origin.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(12 + origin.len() + update.len());
    out.extend_from_slice(&[VERSION, encoding_byte(encoding)]);
    out.extend_from_slice(&at_ms.to_be_bytes());
    out.extend_from_slice(&(origin.len() as u16).to_be_bytes());
    out.extend_from_slice(origin);
    out.extend_from_slice(update);
    out
}

/// Decodes a log entry stored under `seq`.
pub(crate) fn decode_update(seq: u64, bytes: &[u8]) -> Result<StoredUpdate, EntryError> {
    let (encoding, rest) = header(bytes, 12)?;
    let at_ms = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let origin_len = u16::from_be_bytes([rest[8], rest[9]]) as usize;
    let rest = &rest[10..];
    if rest.len() < origin_len {
        return Err(EntryError::Truncated);
    }
    let origin = std::str::from_utf8(&rest[..origin_len]).map_err(|_| EntryError::Origin)?;
    Ok(StoredUpdate {
        seq,
        encoding,
        update: rest[origin_len..].to_vec(),
        origin: origin.to_owned(),
        at_ms,
    })
}

/// Encodes a snapshot.
pub(crate) fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + snapshot.state.len());
    out.extend_from_slice(&[VERSION, encoding_byte(snapshot.encoding)]);
    out.extend_from_slice(&snapshot.through_seq.to_be_bytes());
    out.extend_from_slice(&snapshot.state);
    out
}

/// Decodes a snapshot.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, EntryError> {
    let (encoding, rest) = header(bytes, 10)?;
    Ok(Snapshot {
        through_seq: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
        encoding,
        state: rest[8..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let bytes = encode_update(Encoding::V1, 42, "conn:7", &[1, 2, 3]);
        let entry = decode_update(9, &bytes).unwrap();
        assert_eq!(
            (entry.seq, entry.at_ms, entry.origin.as_str(), entry.update),
            (9, 42, "conn:7", vec![1, 2, 3])
        );
        let snap = Snapshot {
            through_seq: 5,
            encoding: Encoding::V2,
            state: vec![0; 13],
        };
        assert_eq!(decode_snapshot(&encode_snapshot(&snap)).unwrap(), snap);
    }

    #[test]
    fn corrupt_entries_are_errors() {
        assert_eq!(decode_update(1, &[1, 1, 0]), Err(EntryError::Truncated));
        let mut bytes = encode_update(Encoding::V1, 0, "x", &[]);
        bytes[0] = 9;
        assert_eq!(decode_update(1, &bytes), Err(EntryError::Version(9)));
        bytes[0] = 1;
        bytes[1] = 7;
        assert_eq!(decode_update(1, &bytes), Err(EntryError::Encoding(7)));
    }
}
