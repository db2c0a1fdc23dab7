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

use std::fs;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// The inputs kept for `target`, by name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = regressions().join(target);
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Anything else in the directory would silently never run.
            let name = name
                .strip_suffix(".bin")
                .unwrap_or_else(|| panic!("{}: not a .bin input", path.display()))
                .to_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    inputs
}

fn replay(target: &str) {
    let inputs = inputs(target);
    assert!(
        inputs.iter().any(|(name, _)| name.starts_with("valid-")),
        "no valid input kept for {target}"
    );
    let mut failures = Vec::new();
    for (name, bytes) in &inputs {
        let expect_ok = name.starts_with("valid-");
        match catch_unwind(|| harness::run(target, bytes)) {
            Err(_) => failures.push(format!("{name}: panicked (see above)")),
            Ok(Ok(())) if !expect_ok => failures.push(format!("{name}: accepted")),
            Ok(Err(e)) if expect_ok => failures.push(format!("{name}: refused: {e}")),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n"));
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
    let mut dirs: Vec<String> = fs::read_dir(regressions())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets = harness::TARGETS.map(str::to_owned).to_vec();
    targets.sort();
    assert_eq!(dirs, targets);
}
