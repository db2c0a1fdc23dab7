//! Every input that ever crashed a fuzz target, replayed through the code
//! that found it, with a few valid inputs per target beside them.
//!
//! `tests/regressions/<target>/<name>.bin` goes to the target's function in
//! `fuzz/src/harness.rs` (included below, so the fuzzers and this test share
//! it). An input named `valid-*` must be accepted and every other one
//! refused with an error; none may panic. To add a crasher: minimise it with
//! `cargo fuzz tmin`, copy it here under a name that says what it is, and run
//! `cargo test -p crdt-core --test fuzz_regressions`.

#[path = "../fuzz/src/harness.rs"]
mod harness;

#[path = "support/replay.rs"]
mod replay_support;

use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

fn replay(target: &str) {
    let inputs = replay_support::inputs(&regressions(), target);
    assert!(!inputs.is_empty(), "no inputs kept for {target}");
    replay_support::check(target, &inputs, |bytes| harness::run(target, bytes));
}

#[test]
fn frame() {
    replay("frame");
}

#[test]
fn update_v1() {
    replay("update_v1");
}

#[test]
fn update_v2() {
    replay("update_v2");
}

#[test]
fn state_vector() {
    replay("state_vector");
}

#[test]
fn session() {
    replay("session");
}

#[test]
fn presence() {
    replay("presence");
}

#[test]
fn every_directory_is_a_target_and_every_target_is_covered() {
    let dirs = replay_support::directories(&regressions());
    let mut targets = harness::TARGETS.map(str::to_owned).to_vec();
    targets.sort();
    assert_eq!(dirs, targets);
}
