//! Replaying kept fuzz inputs, shared by crdt-core's and sync-server's
//! `fuzz_regressions` tests (each includes this file with `#[path]`).
//!
//! `<dir>/<target>/<name>.bin` goes to the target's harness function. An
//! input named `valid-*` must be accepted and every other one refused with
//! an error; none may panic.

use std::fs;
use std::panic::{RefUnwindSafe, catch_unwind};
use std::path::Path;

/// The inputs kept for `target` under `dir`, by name.
pub fn inputs(dir: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = dir.join(target);
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

/// Runs every input through `run`; fails naming each that was refused,
/// accepted or panicked against its name.
pub fn check(
    target: &str,
    inputs: &[(String, Vec<u8>)],
    run: impl Fn(&[u8]) -> Result<(), String> + RefUnwindSafe,
) {
    let mut failures = Vec::new();
    for (name, bytes) in inputs {
        let expect_ok = name.starts_with("valid-");
        match catch_unwind(|| run(bytes)) {
            Err(_) => failures.push(format!("{name}: panicked (see above)")),
            Ok(Ok(())) if !expect_ok => failures.push(format!("{name}: accepted")),
            Ok(Err(e)) if expect_ok => failures.push(format!("{name}: refused: {e}")),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n"));
}

/// The directories under `dir`, sorted: each must be a target.
pub fn directories(dir: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}
