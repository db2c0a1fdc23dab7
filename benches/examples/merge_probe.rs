//! Probe: how `crdt_core::chunk::state_chunked` cuts the state of a 20 MiB
//! document written as the load generator's `--seed-kib` does, and how long
//! it takes.

use std::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{Doc, StateVector, Text, Transact};
fn main() {
    let local = Doc::new();
    let text = local.get_or_insert_text("seed");
    let piece: String = (0..1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut updates = Vec::new();
    for _ in 0..20 {
        let mut txn = local.transact_mut();
        for _ in 0..1024 {
            text.insert(&mut txn, 0, &piece);
        }
        updates.push(txn.encode_update_v1());
    }
    let mut doc = crdt_core::Document::new(crdt_core::Limits::default());
    for u in &updates {
        doc.apply(u, crdt_core::Encoding::V1).unwrap();
    }
    let t = Instant::now();
    let chunks = crdt_core::chunk::state_chunked(doc.yrs(), 1 << 20);
    println!(
        "chunks {} sizes {:?} in {:?}",
        chunks.len(),
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        t.elapsed()
    );
    let u = yrs::Update::decode_v1(&updates[0]).unwrap();
    println!("first update blocks? len {}", updates[0].len());
    let _ = (u, StateVector::default());
}
