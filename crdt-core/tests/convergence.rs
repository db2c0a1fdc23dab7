//! Property tests: replicas converge whatever order updates arrive in, and
//! encodings round-trip.

use std::collections::HashMap;
use std::sync::Arc;

use crdt_core::wire::decode_frame;
use crdt_core::{Document, Encoding, Limits, wire};
use proptest::prelude::*;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, ID, IdSet, Map, ReadTxn, StateVector, Text, Transact, Update};

#[derive(Debug, Clone)]
enum Op {
    /// Insert at a fraction of the current length.
    Insert(f64, String),
    /// Delete up to `n` characters at a fraction of the current length.
    Delete(f64, u32),
    /// Set a key in the `meta` map.
    Set(u8, i64),
    /// Pull everything from another peer (a partial sync).
    Pull(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0.0..=1.0f64, "[a-z ]{1,5}").prop_map(|(at, s)| Op::Insert(at, s)),
        2 => (0.0..=1.0f64, 1..4u32).prop_map(|(at, n)| Op::Delete(at, n)),
        1 => (0..4u8, any::<i64>()).prop_map(|(k, v)| Op::Set(k, v)),
        1 => (0..3usize).prop_map(Op::Pull),
    ]
}

/// Like [`op`], with long multi-byte insertions that chunking must cut.
fn long_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => op(),
        1 => (0.0..=1.0f64, "[a-zé😀中 ]{20,300}").prop_map(|(at, s)| Op::Insert(at, s)),
    ]
}

/// Runs the ops on three peers; returns every update they produced (in
/// the order made) and the peers.
fn run(ops: &[(usize, Op)]) -> (Vec<Vec<u8>>, Vec<Doc>) {
    let peers: Vec<Doc> = (1..=3).map(Doc::with_client_id).collect();
    let mut updates = Vec::new();
    for (peer, op) in ops {
        let doc = &peers[*peer];
        let text = doc.get_or_insert_text("text");
        let meta = doc.get_or_insert_map("meta");
        let mut txn = doc.transact_mut();
        // Positions are byte offsets (yrs's default): pick them on
        // character boundaries.
        let current = text.get_string(&txn);
        let chars = current.chars().count();
        let byte_at = |char_index: usize| -> u32 {
            current
                .char_indices()
                .nth(char_index)
                .map_or(current.len(), |(b, _)| b) as u32
        };
        match op {
            Op::Insert(at, s) => {
                let pos = byte_at((at * chars as f64) as usize);
                text.insert(&mut txn, pos, s)
            }
            Op::Delete(at, n) if chars > 0 => {
                let first = ((at * chars as f64) as usize).min(chars - 1);
                let last = (first + *n as usize).min(chars);
                let start = byte_at(first);
                text.remove_range(&mut txn, start, byte_at(last) - start);
            }
            Op::Delete(..) => {}
            Op::Set(k, v) => {
                meta.insert(&mut txn, format!("k{k}"), *v);
            }
            Op::Pull(other) => {
                // Release this peer's transaction before reading another
                // doc (or this one): yrs transactions are exclusive.
                let sv = txn.state_vector();
                drop(txn);
                if *other != *peer {
                    let diff = peers[*other].transact().encode_state_as_update_v1(&sv);
                    let update = yrs::updates::decoder::Decode::decode_v1(&diff).unwrap();
                    doc.transact_mut().apply_update(update).unwrap();
                }
                continue;
            }
        }
        updates.push(txn.encode_update_v1());
    }
    (updates, peers)
}

/// Items inserted and not deleted.
fn visible(doc: &Document) -> IdSet {
    let state = doc.encode_state(Encoding::V1);
    let update = Update::decode_v1(&state).unwrap();
    update.insertions(false).diff(update.delete_set())
}

fn replica(updates: impl IntoIterator<Item = Vec<u8>>) -> Document {
    let mut doc = Document::new(Limits::default());
    for update in updates {
        doc.apply(&update, Encoding::V1).unwrap();
    }
    doc
}

/// A deterministic shuffle from a seed.
fn shuffled<T: Clone>(items: &[T], mut seed: u64) -> Vec<T> {
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_delivery_order_converges(
        ops in prop::collection::vec((0..3usize, op()), 1..60),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
    ) {
        let (updates, peers) = run(&ops);
        let a = replica(shuffled(&updates, seed_a));
        let b = replica(shuffled(&updates, seed_b));
        if a.to_json().unwrap() != b.to_json().unwrap() || a.has_pending() || b.has_pending() {
            let info = |d: &Document| {
                let t = d.yrs().transact();
                format!("sv={:?} missing={:?} ds={:?}", t.state_vector(), t.store().pending_update().map(|p| p.missing.clone()), t.store().pending_ds())
            };
            eprintln!("A {}\nB {}", info(&a), info(&b));
        }
        prop_assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
        prop_assert!(!a.has_pending() && !b.has_pending());
        prop_assert_eq!(a.state_vector(), b.state_vector());

        // The replicas equal the peers merged by state exchange.
        let merged = Document::new(Limits::default());
        let mut merged = merged;
        for peer in &peers {
            let state = peer.transact().encode_state_as_update_v1(&StateVector::default());
            merged.apply(&state, Encoding::V1).unwrap();
        }
        prop_assert_eq!(merged.to_json().unwrap(), a.to_json().unwrap());
    }

    #[test]
    fn erasing_one_peer_converges_and_leaves_nothing_of_theirs_visible(
        ops in prop::collection::vec((0..3usize, op()), 1..60),
        seed in any::<u64>(),
    ) {
        let (updates, _) = run(&ops);
        let mut a = replica(updates.iter().cloned());
        let mut b = replica(shuffled(&updates, seed));
        let mut theirs = IdSet::default();
        theirs.insert(ID::new(ClientID::new(1), 0), u32::MAX / 2);

        let Some(erasure) = a.erase(&theirs).unwrap() else {
            prop_assert!(visible(&a).get(&ClientID::new(1)).is_none());
            return Ok(());
        };
        prop_assert!(visible(&a).get(&ClientID::new(1)).is_none(), "peer 1 still visible");
        prop_assert_eq!(a.erase(&theirs).unwrap(), None, "idempotent");
        // Another replica converges on the delete alone.
        b.apply(&erasure.update, Encoding::V1).unwrap();
        prop_assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
        // Others' items are untouched: what is visible of peers 2 and 3 is
        // what was visible before.
        let before = visible(&replica(updates.iter().cloned()));
        let after = visible(&a);
        for client in [2, 3] {
            let client = ClientID::new(client);
            prop_assert_eq!(before.get(&client), after.get(&client));
        }
    }

    #[test]
    fn chunked_states_rebuild_the_document_in_any_order(
        ops in prop::collection::vec((0..3usize, long_op()), 1..40),
        max_bytes in 24..400usize,
        seed in any::<u64>(),
    ) {
        let (updates, _) = run(&ops);
        let doc = replica(updates);
        let chunks = crdt_core::chunk::state_chunked(doc.yrs(), max_bytes);
        let copy = replica(shuffled(&chunks, seed));
        prop_assert_eq!(copy.to_json().unwrap(), doc.to_json().unwrap());
        prop_assert_eq!(copy.state_vector(), doc.state_vector());
        prop_assert!(!copy.has_pending());
        // Only a single character can outgrow a chunk.
        for chunk in &chunks {
            prop_assert!(chunk.len() <= max_bytes.max(64), "{} > {}", chunk.len(), max_bytes);
        }
    }

    #[test]
    fn states_round_trip_through_both_encodings(
        ops in prop::collection::vec((0..3usize, op()), 1..40),
    ) {
        let (updates, _) = run(&ops);
        let doc = replica(updates);
        for encoding in [Encoding::V1, Encoding::V2] {
            let state = doc.encode_state(encoding);
            let copy = Document::load(Limits::default(), Some((encoding, &state)), []).unwrap();
            prop_assert_eq!(copy.to_json().unwrap(), doc.to_json().unwrap());
            prop_assert_eq!(copy.state_vector(), doc.state_vector());
        }
    }

    #[test]
    fn frames_round_trip(
        sv in prop::collection::hash_map(1..(1u64 << 53), any::<u32>(), 0..20),
        update in prop::collection::vec(any::<u8>(), 0..200),
        presence in prop::collection::hash_map(1..(1u64 << 53), (any::<u32>(), "[a-z]{0,8}"), 0..10),
    ) {
        let limits = Limits::default();
        let mut state_vector = StateVector::default();
        for (client, clock) in &sv {
            state_vector.set_max(ClientID::new(*client), *clock);
        }
        let step1 = wire::sync_step1(&state_vector);
        prop_assert_eq!(
            decode_frame(&step1, &limits).unwrap(),
            vec![Message::Sync(SyncMessage::SyncStep1(state_vector))]
        );
        prop_assert_eq!(
            decode_frame(&wire::sync_update(&update), &limits).unwrap(),
            vec![Message::Sync(SyncMessage::Update(update.clone()))]
        );
        prop_assert_eq!(
            decode_frame(&wire::sync_step2(&update), &limits).unwrap(),
            vec![Message::Sync(SyncMessage::SyncStep2(update))]
        );
        let awareness = AwarenessUpdate {
            clients: presence
                .into_iter()
                .map(|(c, (clock, name))| {
                    let json: Arc<str> = Arc::from(serde_json::json!({ "name": name }).to_string());
                    (ClientID::new(c), AwarenessUpdateEntry { clock, json })
                })
                .collect::<HashMap<_, _>>(),
        };
        prop_assert_eq!(
            decode_frame(&wire::awareness(&awareness), &limits).unwrap(),
            vec![Message::Awareness(awareness)]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_corrupt(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut doc = replica([{
            let d = Doc::with_client_id(9);
            let t = d.get_or_insert_text("text");
            let mut txn = d.transact_mut();
            t.insert(&mut txn, 0, "intact");
            txn.encode_update_v1()
        }]);
        let before = doc.to_json().unwrap();
        let _ = decode_frame(&bytes, &Limits::default());
        for encoding in [Encoding::V1, Encoding::V2] {
            match doc.apply(&bytes, encoding) {
                Ok(_) => {}
                Err(_) if doc.is_poisoned() => return Ok(()),
                Err(_) => prop_assert_eq!(doc.to_json().unwrap(), before.clone()),
            }
        }
    }
}
