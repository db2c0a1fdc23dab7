//! CRDT core benchmarks on real editing traces, each against raw yrs.
//!
//! ```text
//! cargo bench -p benches --bench crdt
//! ```
//!
//! - apply: every per-keystroke update of a trace, through `Document::apply`
//!   (bounded decoding, panic guard) and through raw yrs;
//! - compact: the whole update log into one v2 state (`crdt_core::compact`);
//! - load: the compacted state back into a document;
//! - local editing: the trace's keystrokes typed into the text.
//!
//! Every replay is checked against the trace's `endContent` once, outside
//! the timed loop.

use std::hint::black_box;
use std::time::Duration;

use benches::traces::{self, TEXT};
use crdt_core::{Document, Encoding, Limits, compact};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

const TRACE: &str = "automerge-paper";

fn text(doc: &Doc) -> String {
    doc.get_or_insert_text(TEXT).get_string(&doc.transact())
}

fn apply_core(updates: &[Vec<u8>]) -> Document {
    let mut doc = Document::new(Limits::default());
    for u in updates {
        doc.apply(u, Encoding::V1).expect("trace update applies");
    }
    doc
}

fn apply_raw(updates: &[Vec<u8>]) -> Doc {
    let doc = Doc::new();
    for u in updates {
        let update = Update::decode_v1(u).expect("decodes");
        doc.transact_mut().apply_update(update).expect("applies");
    }
    doc
}

fn benches(c: &mut Criterion) {
    let trace = traces::load(TRACE);
    let updates = traces::sequential_updates(&trace);
    assert_eq!(text(apply_core(&updates).yrs()), trace.end_content);
    assert_eq!(text(&apply_raw(&updates)), trace.end_content);
    let log = || updates.iter().map(|u| (Encoding::V1, u.as_slice()));
    let state = compact(&Limits::default(), None, log(), Encoding::V2).expect("compacts");
    let reloaded =
        Document::load(Limits::default(), Some((Encoding::V2, &state)), []).expect("loads");
    assert_eq!(text(reloaded.yrs()), trace.end_content);

    let mut group = c.benchmark_group(TRACE);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("apply/crdt-core", |b| {
        b.iter(|| black_box(apply_core(&updates)))
    });
    group.bench_function("apply/yrs", |b| b.iter(|| black_box(apply_raw(&updates))));
    group.bench_function("compact/crdt-core", |b| {
        b.iter(|| {
            black_box(compact(&Limits::default(), None, log(), Encoding::V2).expect("compacts"))
        })
    });
    group.bench_function("load-compacted/crdt-core", |b| {
        b.iter(|| {
            black_box(
                Document::load(Limits::default(), Some((Encoding::V2, &state)), []).expect("loads"),
            )
        })
    });
    group.bench_function("load-compacted/yrs", |b| {
        b.iter(|| {
            let doc = Doc::new();
            doc.transact_mut()
                .apply_update(Update::decode_v2(&state).expect("decodes"))
                .expect("applies");
            black_box(doc)
        })
    });
    group.bench_function("local-edit/crdt-core", |b| {
        b.iter_batched(
            || Document::new(Limits::default()),
            |doc| {
                for txn in &trace.txns {
                    traces::perform(doc.yrs(), txn);
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("local-edit/yrs", |b| {
        b.iter_batched(
            Doc::new,
            |doc| {
                for txn in &trace.txns {
                    traces::perform(&doc, txn);
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(crdt, benches);
criterion_main!(crdt);
