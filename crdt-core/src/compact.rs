//! Compaction: a snapshot and the update log written after it become one
//! state update.
//!
//! Merging many updates with `yrs::merge_updates_v1` takes a quadratic path
//! (128k keystroke updates of a real trace took 136 s). Applying them to a
//! document and encoding its state once is linear: the whole 260k-update
//! `automerge-paper` log compacts in well under a second.

use crate::Limits;
use crate::doc::{Document, LoadError};
use crate::update::Encoding;

/// Replays `snapshot` and `log` into a fresh document and returns its whole
/// state in `output` encoding. Linear in the total input size.
pub fn compact<'a>(
    limits: &Limits,
    snapshot: Option<(Encoding, &'a [u8])>,
    log: impl IntoIterator<Item = (Encoding, &'a [u8])>,
    output: Encoding,
) -> Result<Vec<u8>, LoadError> {
    let doc = Document::load(limits.clone(), snapshot, log)?;
    Ok(doc.encode_state(output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, Text, Transact};

    #[test]
    fn compaction_keeps_content_and_shrinks() {
        let source = Doc::with_client_id(1);
        let text = source.get_or_insert_text("t");
        let mut log = Vec::new();
        for i in 0..500 {
            let mut txn = source.transact_mut();
            text.insert(&mut txn, i, "x");
            log.push(txn.encode_update_v1());
        }
        let entries = log.iter().map(|u| (Encoding::V1, u.as_slice()));
        let state = compact(&Limits::default(), None, entries, Encoding::V2).unwrap();
        let total: usize = log.iter().map(Vec::len).sum();
        assert!(state.len() * 10 < total, "{} vs {total}", state.len());

        let doc = Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
        let t = doc.yrs().get_or_insert_text("t");
        assert_eq!(t.get_string(&doc.yrs().transact()), "x".repeat(500));
    }
}
