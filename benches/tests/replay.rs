//! Real editing histories replayed through the core as a server sees them:
//! one update per transaction, applied with `Document::apply`. Every replay
//! must end with exactly the trace's `endContent`, and so must its
//! compaction.

use benches::traces::{self, TEXT};
use crdt_core::{Document, Encoding, Limits, compact};
use yrs::{Doc, GetString, ReadTxn, Transact};

fn text_of(doc: &Document) -> String {
    doc.to_json().unwrap()[TEXT]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn replay_and_compact(name: &str) {
    let trace = traces::load(name);
    let updates = traces::sequential_updates(&trace);
    let log = updates.iter().map(|u| (Encoding::V1, u.as_slice()));
    let doc = Document::load(Limits::default(), None, log.clone()).unwrap();
    assert_eq!(text_of(&doc), trace.end_content, "{name}: replay");

    let state = compact(&Limits::default(), None, log, Encoding::V2).unwrap();
    let reloaded = Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
    assert_eq!(text_of(&reloaded), trace.end_content, "{name}: compacted");
    let log_bytes: usize = updates.iter().map(Vec::len).sum();
    assert!(
        state.len() < log_bytes,
        "{name}: compaction shrinks the log"
    );
}

#[test]
fn automerge_paper_replays_and_compacts_to_its_end_content() {
    replay_and_compact("automerge-paper");
}

#[test]
fn seph_blog_replays_and_compacts_to_its_end_content() {
    replay_and_compact("seph-blog1");
}

#[test]
fn friendsforever_flat_replays_and_compacts_to_its_end_content() {
    replay_and_compact("friendsforever_flat");
}

#[test]
fn a_concurrent_trace_converges_in_causal_and_reversed_delivery_order() {
    let trace = traces::load("friendsforever-concurrent");
    let updates = traces::concurrent_updates(&trace);

    let in_order = Document::load(
        Limits::default(),
        None,
        updates.iter().map(|u| (Encoding::V1, u.as_slice())),
    )
    .unwrap();
    assert_eq!(text_of(&in_order), trace.end_content);

    // Reversed, almost every update arrives before what it depends on: the
    // document must hold them pending and still end in the same state. All
    // of them wait at once, far past the default bound a server applies to
    // a peer (which refuses the excess with `TooManyWaiting`).
    let mut reversed = Document::new(Limits {
        max_waiting_updates: updates.len(),
        max_waiting_bytes: updates.iter().map(Vec::len).sum(),
        ..Limits::default()
    });
    for update in updates.iter().rev() {
        reversed.apply(update, Encoding::V1).unwrap();
    }
    assert!(!reversed.has_pending(), "everything integrated in the end");
    assert_eq!(text_of(&reversed), trace.end_content);
    assert_eq!(reversed.state_vector(), in_order.state_vector());
}

#[test]
fn the_state_vector_matches_the_author_after_a_replay() {
    let trace = traces::load("friendsforever_flat");
    let author = Doc::with_client_id(1);
    let updates: Vec<Vec<u8>> = trace
        .txns
        .iter()
        .map(|t| traces::perform(&author, t))
        .collect();
    let replica = Document::load(
        Limits::default(),
        None,
        updates.iter().map(|u| (Encoding::V1, u.as_slice())),
    )
    .unwrap();
    assert_eq!(replica.state_vector(), author.transact().state_vector());
    assert_eq!(
        author
            .get_or_insert_text(TEXT)
            .get_string(&author.transact()),
        trace.end_content
    );
}
