//! Sizes of every editing trace (`test-data/editing-traces`) as a server
//! stores it: the per-transaction update log in v1 and in v2, and the
//! compacted state in v1 and v2 (`crdt_core::Document::encode_state`).
//!
//! ```text
//! cargo run --release -p benches --bin trace_sizes
//! ```
//!
//! Prints a Markdown table, then one JSON line (the last line of output).
//! Each compacted state is checked to hold the trace's `endContent`.

use anyhow::Context;
use benches::traces::{self, TEXT, Trace};
use crdt_core::{Document, Encoding, Limits};
use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, Transact, Update};

/// The sizes of one trace, in bytes.
struct Sizes {
    name: String,
    txns: usize,
    log_v1: usize,
    log_v2: usize,
    state_v1: usize,
    state_v2: usize,
}

fn main() -> anyhow::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(traces::dir())
        .with_context(|| format!("reading {}", traces::dir().display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json.gz").map(str::to_owned)
        })
        .collect();
    names.sort();
    anyhow::ensure!(
        !names.is_empty(),
        "no traces in {}",
        traces::dir().display()
    );

    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        rows.push(sizes(&name, &traces::load(&name))?);
    }

    println!(
        "| trace | txns | log v1 | log v2 | log v2/v1 | state v1 | state v2 | state v2/v1 | log v1 / state v2 |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {:.1}× |",
            r.name,
            r.txns,
            r.log_v1,
            r.log_v2,
            r.log_v2 as f64 / r.log_v1 as f64,
            r.state_v1,
            r.state_v2,
            r.state_v2 as f64 / r.state_v1 as f64,
            r.log_v1 as f64 / r.state_v2 as f64,
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "trace": r.name,
                "txns": r.txns,
                "log_v1_bytes": r.log_v1,
                "log_v2_bytes": r.log_v2,
                "state_v1_bytes": r.state_v1,
                "state_v2_bytes": r.state_v2,
                "log_v2_over_v1": r.log_v2 as f64 / r.log_v1 as f64,
                "state_v2_over_v1": r.state_v2 as f64 / r.state_v1 as f64,
                "log_v1_over_state_v2": r.log_v1 as f64 / r.state_v2 as f64,
            })
        })
        .collect();
    println!("{}", json!({ "trace_sizes": json }));
    Ok(())
}

/// A trace with authors or parents is concurrent; the others are one
/// author's history.
fn is_concurrent(trace: &Trace) -> bool {
    trace
        .txns
        .iter()
        .any(|t| t.agent != 0 || !t.parents.is_empty())
}

fn sizes(name: &str, trace: &Trace) -> anyhow::Result<Sizes> {
    let log = if is_concurrent(trace) {
        traces::concurrent_updates(trace)
    } else {
        traces::sequential_updates(trace)
    };
    // The same updates re-encoded by yrs: a transaction's update holds no
    // gaps, so yrs's v2 encoder is exact here.
    let mut log_v2 = 0;
    for u in &log {
        log_v2 += Update::decode_v1(u)
            .with_context(|| format!("{name}: decoding an update"))?
            .encode_v2()
            .len();
    }
    let doc = Document::load(
        Limits::default(),
        None,
        log.iter().map(|u| (Encoding::V1, u.as_slice())),
    )
    .with_context(|| format!("{name}: replaying the log"))?;
    let text = doc.yrs().get_or_insert_text(TEXT);
    anyhow::ensure!(
        text.get_string(&doc.yrs().transact()) == trace.end_content,
        "{name}: the replay does not end with endContent"
    );
    Ok(Sizes {
        name: name.to_owned(),
        txns: log.len(),
        log_v1: log.iter().map(Vec::len).sum(),
        log_v2,
        state_v1: doc.encode_state(Encoding::V1).len(),
        state_v2: doc.encode_state(Encoding::V2).len(),
    })
}
