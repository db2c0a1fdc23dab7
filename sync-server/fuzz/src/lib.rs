//! cargo-fuzz targets for sync-server's decoders of untrusted input: what
//! other nodes send over Redis, the tokens clients present, and the document
//! names in their URLs.
//!
//! Each file in `fuzz_targets/` hands its input to [`fuzz`], which runs the
//! matching function in [`harness`]. Run them with `scripts/fuzz.sh`.
//! Inputs that ever crashed a target are committed under
//! `sync-server/tests/fuzz-regressions/<target>/` and replayed by
//! `cargo test -p sync-server --test fuzz_regressions`; `scripts/fuzz.sh`
//! also seeds each corpus from them.

pub mod harness;

/// Runs `target` on one input. A refusal is the expected outcome for most
/// inputs; a broken guarantee panics, and libfuzzer-sys's panic hook turns
/// that into a crash. Unlike crdt-core, sync-server contains no panics of
/// its own, so any panic at all is a finding.
pub fn fuzz(target: &str, data: &[u8]) {
    let _ = harness::run(target, data);
}
