//! Apply overhead as instruction counts, which stay put on a busy machine:
//! replays the automerge-paper per-transaction updates through
//! `Document::apply` or through raw yrs, for `valgrind --tool=callgrind` to
//! count. The updates are made once and read from a file, so the count
//! covers the replay and not the trace's JSON.
//!
//! ```text
//! cargo build --release -p benches --example apply_count
//! target/release/examples/apply_count dump updates.bin
//! valgrind --tool=callgrind target/release/examples/apply_count none updates.bin
//! valgrind --tool=callgrind target/release/examples/apply_count core updates.bin
//! valgrind --tool=callgrind target/release/examples/apply_count raw updates.bin
//! ```
//!
//! (core − none) ÷ (raw − none) is crdt-core's cost over raw yrs.

use benches::traces;
use crdt_core::{Document, Encoding, Limits};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

fn read(path: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("the update file (make it with `dump`)");
    let mut updates = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        updates.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    updates
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, path] = args.as_slice() else {
        eprintln!("usage: apply_count dump|none|core|raw FILE");
        std::process::exit(2);
    };
    if mode == "dump" {
        let trace = traces::load("automerge-paper");
        let mut out = Vec::new();
        for update in traces::sequential_updates(&trace) {
            out.extend((update.len() as u32).to_le_bytes());
            out.extend(update);
        }
        std::fs::write(path, out).expect("writable update file");
        return;
    }
    let updates = read(path);
    match mode.as_str() {
        "none" => {}
        "core" => {
            let mut doc = Document::new(Limits::default());
            for update in &updates {
                doc.apply(update, Encoding::V1)
                    .expect("trace update applies");
            }
        }
        "raw" => {
            let doc = Doc::new();
            for update in &updates {
                let update = Update::decode_v1(update).expect("decodes");
                doc.transact_mut().apply_update(update).expect("applies");
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
