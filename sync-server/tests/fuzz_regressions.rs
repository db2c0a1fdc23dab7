//! Every input that ever crashed a sync-server fuzz target, replayed through
//! the code that found it, with a few valid and invalid seeds per target.
//!
//! `tests/fuzz-regressions/<target>/<name>.bin` goes to the target's function
//! in `fuzz/src/harness.rs` (included below, so the fuzzers and this test
//! share it). An input named `valid-*` must be accepted and every other one
//! refused with an error; none may panic. To add a crasher: minimise it with
//! `cargo fuzz tmin --fuzz-dir sync-server/fuzz <target> <file>`, copy it
//! here under a name that says what it is, and run
//! `cargo test -p sync-server --test fuzz_regressions`.

#[path = "../fuzz/src/harness.rs"]
mod harness;

#[path = "../../crdt-core/tests/support/replay.rs"]
mod replay_support;

use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

fn replay(target: &str) {
    let inputs = replay_support::inputs(&regressions(), target);
    assert!(
        inputs.iter().any(|(name, _)| name.starts_with("valid-")),
        "no valid input kept for {target}"
    );
    replay_support::check(target, &inputs, |bytes| harness::run(target, bytes));
}

#[test]
fn cluster_envelope() {
    replay("cluster_envelope");
}

#[test]
fn document_token() {
    replay("document_token");
}

#[test]
fn doc_name() {
    replay("doc_name");
}

/// A target added to the harness without a directory here would never be
/// replayed; a directory without a target would fail to run.
#[test]
fn every_target_has_inputs_and_every_input_a_target() {
    let dirs = replay_support::directories(&regressions());
    let mut targets = harness::TARGETS.map(str::to_owned).to_vec();
    targets.sort();
    assert_eq!(dirs, targets);
}
