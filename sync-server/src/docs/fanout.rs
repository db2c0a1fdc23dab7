//! Coalescing: the updates of one durable batch become as few frames as
//! possible, and no peer is sent its own updates back.
//!
//! Stable y-websocket clients read exactly one message per frame, so
//! coalescing merges updates into one update rather than packing messages.
//! A peer that sent nothing in the batch gets one shared frame holding all of
//! it; a peer that sent some gets a frame of the others' updates only.
//!
//! The batch is merged once. A sender's frame is that merge diffed against a
//! state vector marking the sender's own structs as known: linear in the
//! batch, where merging "all but yours" afresh for each sender cost 170 ms
//! for a batch of 265 updates (yrs's merge is superlinear) and let a busy
//! document fall further behind with every batch.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crdt_core::change::known_through;
use crdt_core::wire;
use yrs::ClientID;
use yrs::updates::encoder::Encode;

use super::peer::ConnId;

/// An update accepted into a batch.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The connection that sent it; `None` for HTTP writes.
    pub from: Option<ConnId>,
    /// The update (v1) as the peer sent it.
    pub update: Bytes,
    /// The clock past the last struct the update writes, per client.
    pub clocks: Vec<(ClientID, u32)>,
    /// Who sent it, for the log.
    pub origin: Arc<str>,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// When its frame arrived, for latency accounting.
    pub received: Instant,
}

/// The frames of one batch and how many updates each carries.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// For peers that sent nothing in the batch.
    pub everyone: Vec<Bytes>,
    /// For peers that sent something: everything but their own. An empty
    /// list means there is nothing to send them.
    pub senders: HashMap<ConnId, Vec<Bytes>>,
    /// Updates in the batch, for delivery accounting.
    pub updates: usize,
    /// The batch merged into one v1 update, if merging worked.
    pub merged: Option<Bytes>,
    /// Updates each sender contributed.
    own: HashMap<ConnId, usize>,
}

impl Plan {
    /// The frames for `peer`, and how many updates they carry.
    pub fn frames_for(&self, peer: ConnId) -> (&[Bytes], usize) {
        match self.senders.get(&peer) {
            Some(frames) => (frames, self.updates - self.own_count(peer)),
            None => (&self.everyone, self.updates),
        }
    }

    fn own_count(&self, peer: ConnId) -> usize {
        self.own.get(&peer).copied().unwrap_or(0)
    }
}

/// Builds the frames for a batch.
pub fn plan(batch: &[Accepted]) -> Plan {
    let mut own: HashMap<ConnId, usize> = HashMap::new();
    for update in batch {
        if let Some(from) = update.from {
            *own.entry(from).or_default() += 1;
        }
    }
    let Some(merged) = merge(batch) else {
        return plan_unmerged(batch, own);
    };
    let everyone = vec![Bytes::from(wire::sync_update(&merged))];
    let merged = Bytes::from(merged);
    let senders = own
        .iter()
        .map(|(&sender, &count)| {
            if count == batch.len() {
                return (sender, Vec::new());
            }
            let theirs = batch
                .iter()
                .filter(|a| a.from == Some(sender))
                .map(|a| a.clocks.as_slice());
            let known = known_through(theirs).encode_v1();
            let frames = match guarded(|| yrs::diff_updates_v1(&merged, &known)) {
                Some(rest) => vec![Bytes::from(wire::sync_update(&rest))],
                None => others_one_by_one(batch, sender),
            };
            (sender, frames)
        })
        .collect();
    Plan {
        everyone,
        senders,
        updates: batch.len(),
        merged: Some(merged),
        own,
    }
}

/// The batch as one update; `None` if merging fails (it cannot for
/// updates a document already accepted, but frames one by one are the safe
/// answer if it ever does).
fn merge(batch: &[Accepted]) -> Option<Vec<u8>> {
    match batch {
        [] => None,
        [one] => Some(one.update.to_vec()),
        many => guarded(|| yrs::merge_updates_v1(many.iter().map(|a| a.update.as_ref()))),
    }
}

fn guarded<E>(f: impl FnOnce() -> Result<Vec<u8>, E>) -> Option<Vec<u8>> {
    catch_unwind(AssertUnwindSafe(f)).ok()?.ok()
}

fn others_one_by_one(batch: &[Accepted], sender: ConnId) -> Vec<Bytes> {
    batch
        .iter()
        .filter(|a| a.from != Some(sender))
        .map(|a| Bytes::from(wire::sync_update(&a.update)))
        .collect()
}

fn plan_unmerged(batch: &[Accepted], own: HashMap<ConnId, usize>) -> Plan {
    let everyone = batch
        .iter()
        .map(|a| Bytes::from(wire::sync_update(&a.update)))
        .collect();
    let senders = own
        .keys()
        .map(|&s| (s, others_one_by_one(batch, s)))
        .collect();
    Plan {
        everyone,
        senders,
        updates: batch.len(),
        merged: None,
        own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::{Document, Encoding, Limits};
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Text, Transact};

    fn accepted(from: Option<u64>, update: Bytes) -> Accepted {
        let decoded = yrs::Update::decode_v1(&update).unwrap();
        Accepted {
            from: from.map(ConnId),
            clocks: crdt_core::Change::new(update.to_vec(), &decoded).clocks,
            update,
            origin: Arc::from("test"),
            at_ms: 0,
            received: Instant::now(),
        }
    }

    fn edit(client: u64, text: &str) -> Bytes {
        let doc = yrs::Doc::with_client_id(client);
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.push(&mut txn, text);
        Bytes::from(txn.encode_update_v1())
    }

    fn text_after(frames: &[Bytes]) -> String {
        let mut doc = Document::new(Limits::default());
        for frame in frames {
            let message = yrs::sync::Message::decode_v1(frame).unwrap();
            let yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(u)) = message else {
                panic!("not an update frame");
            };
            doc.apply(&u, Encoding::V1).unwrap();
        }
        let mut chars: Vec<char> = doc
            .yrs()
            .get_or_insert_text("t")
            .get_string(&doc.yrs().transact())
            .chars()
            .collect();
        chars.sort();
        chars.into_iter().collect()
    }

    #[test]
    fn merges_and_never_echoes() {
        let batch = vec![
            accepted(Some(1), edit(1, "a")),
            accepted(Some(2), edit(2, "b")),
            accepted(None, edit(3, "c")),
        ];
        let plan = plan(&batch);
        assert_eq!(plan.everyone.len(), 1, "one merged frame for bystanders");
        assert_eq!(text_after(plan.frames_for(ConnId(9)).0), "abc");
        let (frames, n) = plan.frames_for(ConnId(1));
        assert_eq!((text_after(frames), n), ("bc".to_owned(), 2));
        assert_eq!(text_after(plan.frames_for(ConnId(2)).0), "ac");
    }

    #[test]
    fn a_lone_sender_gets_nothing_back() {
        let plan = plan(&[accepted(Some(1), edit(1, "a"))]);
        let (frames, n) = plan.frames_for(ConnId(1));
        assert!(frames.is_empty());
        assert_eq!(n, 0);
    }
}
