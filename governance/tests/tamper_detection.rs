//! Guarantee: any change to a stored chain is detected, and verification
//! names the first bad entry exactly (workspace, position, what is wrong).
//! Each kind of tampering, on both stores.
//!
//! The fixture: workspace `acme` with 25 entries, checkpoints signed at 10
//! and 20 (every 10 entries), entries 21-25 not yet covered by one.

mod common;

use common::{Backend, Harness};
use governance::audit::{Action, Actor, AuditEvent, Digest, ProblemKind};

async fn fixture(backend: Backend) -> Harness {
    let h = Harness::open(backend).await;
    h.fill("acme", 25).await;
    // Another chain, untouched by every test: problems stay in theirs.
    h.fill("globex", 3).await;
    let checkpoints: Vec<u64> = h
        .store
        .checkpoints("acme")
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(checkpoints, [10, 20]);
    let report = h.verify().await;
    assert!(report.ok(), "{:?}", report.first_bad());
    h
}

/// Asserts exactly one problem, in `acme`, at `seq`, of `kind`.
async fn assert_only(h: &Harness, seq: u64, kind: ProblemKind) -> String {
    let report = h.verify().await;
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:#?}");
    let first = report.first_bad().expect("a problem");
    assert_eq!(
        (first.workspace.as_str(), first.seq, first.kind),
        ("acme", seq, kind),
        "{first}"
    );
    let globex = report
        .chains
        .iter()
        .find(|c| c.workspace == "globex")
        .unwrap();
    assert!(globex.problems.is_empty());
    first.to_string()
}

async fn a_changed_event_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.change_event("acme", 7, |e| e["details"]["bytes"] = 1.into())
        .await;
    let message = assert_only(&h, 7, ProblemKind::Changed).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 7: changed: its content does not match its hash"
    );
}

async fn a_changed_actor_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.change_event("acme", 12, |e| e["actor"]["id"] = "mallory".into())
        .await;
    assert_only(&h, 12, ProblemKind::Changed).await;
}

async fn a_changed_hash_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.change_hash("acme", 7, Digest::of(b"forged")).await;
    let message = assert_only(&h, 7, ProblemKind::HashChanged).await;
    assert!(
        message.starts_with("workspace \"acme\", entry 7: hash changed: its stored hash is "),
        "{message}"
    );
}

async fn a_changed_hash_at_a_checkpoint_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.change_hash("acme", 20, Digest::of(b"forged")).await;
    assert_only(&h, 20, ProblemKind::HashChanged).await;
}

async fn a_removed_entry_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.remove_entry("acme", 7).await;
    let message = assert_only(&h, 7, ProblemKind::Removed).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 7: removed: the chain goes from entry 6 to entry 8"
    );
}

async fn a_removed_first_entry_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.remove_entry("acme", 1).await;
    let message = assert_only(&h, 1, ProblemKind::Removed).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 1: removed: the chain starts at entry 2 without a pruning anchor"
    );
}

async fn swapped_entries_are_named(backend: Backend) {
    let h = fixture(backend).await;
    h.swap_entries("acme", 7, 8).await;
    let report = h.verify().await;
    let first = report.first_bad().unwrap();
    assert_eq!(
        (first.seq, first.kind),
        (7, ProblemKind::Reordered),
        "{first}"
    );
    assert_eq!(
        first.to_string(),
        "workspace \"acme\", entry 7: reordered: it links to the entry stored at position 8, which comes after it"
    );
    // Both moved entries are named, nothing else.
    let named: Vec<_> = report.problems().map(|p| (p.seq, p.kind)).collect();
    assert_eq!(
        named,
        [(7, ProblemKind::Reordered), (8, ProblemKind::Reordered)]
    );
}

async fn an_inserted_entry_is_named(backend: Backend) {
    let h = fixture(backend).await;
    let forged = AuditEvent::new(Action::DocumentExport, Actor::user("mallory"), "acme", 1)
        .document("acme/plan");
    h.insert_entry("acme", 7, &forged).await;
    let report = h.verify().await;
    let first = report.first_bad().unwrap();
    assert_eq!(
        first.to_string(),
        "workspace \"acme\", entry 7: inserted: entry 8 links to entry 6 directly, past it"
    );
    // Everything after it moved one position: the checkpoints catch that
    // too, but the first bad entry is the inserted one.
    assert!(report.problems().all(|p| p.seq >= 7));
}

async fn a_forged_checkpoint_signature_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.forge_checkpoint("acme", 10).await;
    let message = assert_only(&h, 10, ProblemKind::BadSignature).await;
    assert!(
        message.contains("the signature does not verify with key"),
        "{message}"
    );
}

async fn a_removed_checkpoint_is_named(backend: Backend) {
    let h = fixture(backend).await;
    h.remove_checkpoint("acme", 10).await;
    let message = assert_only(&h, 10, ProblemKind::CheckpointMissing).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 10: checkpoint missing: checkpoint 20 follows checkpoint 10, which is gone"
    );
}

async fn a_tail_truncated_after_a_checkpoint_is_named(backend: Backend) {
    let h = fixture(backend).await;
    // Entries 16-25 deleted and the head moved back to 15 to hide it:
    // checkpoint 20 still says the chain reached 20.
    h.truncate("acme", 16, true).await;
    let message = assert_only(&h, 16, ProblemKind::Truncated).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 16: truncated: checkpoint 20 attests entries up to 20; the chain ends at entry 15"
    );
}

async fn an_unsigned_tail_truncated_is_named_by_the_head(backend: Backend) {
    let h = fixture(backend).await;
    h.truncate("acme", 21, false).await;
    let message = assert_only(&h, 21, ProblemKind::Truncated).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 21: truncated: the chain head records entry 25; the chain ends at entry 20"
    );
}

async fn a_rehashed_rewrite_is_caught_by_the_checkpoint(backend: Backend) {
    let h = fixture(backend).await;
    // Someone who knows the hashing rules (but not the key) changes entry
    // 12 and recomputes every hash after it: only checkpoint 20 can tell.
    h.rewrite_from("acme", 12, |e| e["details"]["bytes"] = 0.into())
        .await;
    let message = assert_only(&h, 20, ProblemKind::CheckpointMismatch).await;
    assert_eq!(
        message,
        "workspace \"acme\", entry 20: checkpoint mismatch: the checkpoint signed a different hash: entries after checkpoint 10 were rewritten"
    );
}

async fn a_rehashed_rewrite_after_the_last_checkpoint_is_reported_as_unattested(backend: Backend) {
    let h = fixture(backend).await;
    // The documented limit: entries after the last checkpoint rewritten
    // consistently are not detectable; the report says how many are exposed.
    h.rewrite_from("acme", 23, |e| e["details"]["bytes"] = 0.into())
        .await;
    let report = h.verify().await;
    assert!(report.ok());
    let acme = report
        .chains
        .iter()
        .find(|c| c.workspace == "acme")
        .unwrap();
    assert_eq!((acme.last_checkpoint, acme.unattested), (20, 5));
}

async fn a_changed_search_column_is_named(backend: Backend) {
    let h = fixture(backend).await;
    // The event is intact but the copy searches use says someone else did
    // it: the entry would vanish from that user's GDPR access report.
    match backend {
        Backend::Postgres => {
            let schema = h.schema().unwrap();
            let mut conn = schema.connect().await;
            sqlx::query(
                "UPDATE governance_audit_entries SET actor_id = 'carol'
                  WHERE workspace = 'acme' AND seq = 9",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
        Backend::Sled => {
            // Delete the by-actor index key of entry 9 (alice's).
            let entry = h.raw_entry("acme", 9).await.unwrap();
            let event: AuditEvent = serde_json::from_str(&entry.2).unwrap();
            let mut key = vec![b'A'];
            key.extend_from_slice(b"alice\0");
            key.extend_from_slice(&event.at_ms.to_be_bytes());
            key.extend_from_slice(b"acme\0");
            key.extend_from_slice(&9u64.to_be_bytes());
            h.remove_raw_key(&key);
        }
    }
    assert_only(&h, 9, ProblemKind::IndexMismatch).await;
}

both_stores!(
    a_changed_event_is_named,
    a_changed_actor_is_named,
    a_changed_hash_is_named,
    a_changed_hash_at_a_checkpoint_is_named,
    a_removed_entry_is_named,
    a_removed_first_entry_is_named,
    swapped_entries_are_named,
    an_inserted_entry_is_named,
    a_forged_checkpoint_signature_is_named,
    a_removed_checkpoint_is_named,
    a_tail_truncated_after_a_checkpoint_is_named,
    an_unsigned_tail_truncated_is_named_by_the_head,
    a_rehashed_rewrite_is_caught_by_the_checkpoint,
    a_rehashed_rewrite_after_the_last_checkpoint_is_reported_as_unattested,
    a_changed_search_column_is_named,
);
