//! Real editing histories (`test-data/editing-traces`, CC BY 4.0), and the
//! per-transaction Yjs updates they produce.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Text, Transact, Update};

/// One editing trace.
#[derive(Debug, Deserialize)]
pub struct Trace {
    /// The text after every transaction.
    #[serde(rename = "endContent")]
    pub end_content: String,
    /// The transactions, in order (a topological order for concurrent traces).
    pub txns: Vec<Txn>,
}

/// One transaction of a trace.
#[derive(Debug, Deserialize)]
pub struct Txn {
    /// `(position, characters deleted, text inserted)`, applied in order.
    pub patches: Vec<(u32, u32, String)>,
    /// The author (concurrent traces only).
    #[serde(default)]
    pub agent: usize,
    /// Transactions whose merged state this one starts from (concurrent
    /// traces only).
    #[serde(default)]
    pub parents: Vec<usize>,
}

/// The sequential traces, largest first.
pub const SEQUENTIAL: [&str; 3] = ["automerge-paper", "seph-blog1", "friendsforever_flat"];

/// Where traces are read from: `EDITING_TRACES`, else the repository's
/// `test-data/editing-traces`.
pub fn dir() -> PathBuf {
    std::env::var_os("EDITING_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-data/editing-traces")
        })
}

/// Loads `{name}.json.gz`.
pub fn load(name: &str) -> Trace {
    let path = dir().join(format!("{name}.json.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The name of the text root every replay writes to.
pub const TEXT: &str = "text";

/// Performs one transaction on `doc`'s text and returns its v1 update.
pub fn perform(doc: &Doc, txn: &Txn) -> Vec<u8> {
    let text = doc.get_or_insert_text(TEXT);
    let mut t = doc.transact_mut();
    for (pos, del, ins) in &txn.patches {
        if *del > 0 {
            text.remove_range(&mut t, *pos, *del);
        }
        if !ins.is_empty() {
            text.insert(&mut t, *pos, ins);
        }
    }
    t.encode_update_v1()
}

/// One v1 update per transaction, for a trace with a single author.
pub fn sequential_updates(trace: &Trace) -> Vec<Vec<u8>> {
    let doc = Doc::with_client_id(1);
    trace.txns.iter().map(|txn| perform(&doc, txn)).collect()
}

/// One v1 update per transaction for a concurrent trace: each transaction
/// runs on its author's replica after that replica merged exactly the
/// transaction's parents.
pub fn concurrent_updates(trace: &Trace) -> Vec<Vec<u8>> {
    let agents = trace.txns.iter().map(|t| t.agent).max().unwrap_or(0) + 1;
    let docs: Vec<Doc> = (0..agents)
        .map(|a| Doc::with_client_id(a as u64 + 1))
        .collect();
    let mut merged: Vec<HashSet<usize>> = vec![HashSet::new(); agents];
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(trace.txns.len());
    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        // What the parents saw and this replica has not merged yet. Merged
        // sets are closed under ancestry, so the walk stops early.
        let mut stack: Vec<usize> = txn.parents.clone();
        let mut missing = Vec::new();
        while let Some(j) = stack.pop() {
            if merged[a].insert(j) {
                missing.push(j);
                stack.extend(&trace.txns[j].parents);
            }
        }
        missing.sort_unstable();
        for j in missing {
            let update = Update::decode_v1(&updates[j]).expect("own update decodes");
            docs[a]
                .transact_mut()
                .apply_update(update)
                .expect("own update applies");
        }
        updates.push(perform(&docs[a], txn));
        merged[a].insert(i);
    }
    updates
}
