//! cargo-fuzz targets for every decoder in crdt-core.
//!
//! Each file in `fuzz_targets/` hands its input to [`fuzz`], which runs the
//! matching function in [`harness`]. Run them with `scripts/fuzz.sh`; seed
//! the corpora with `cargo test --manifest-path crdt-core/fuzz/Cargo.toml`
//! (see `seeds.rs`). Inputs that ever crashed a target are committed under
//! `crdt-core/tests/regressions/<target>/` and replayed by `cargo test`,
//! except the ones in `known-yrs-bugs/`, which crash yrs itself.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

pub mod harness;
#[cfg(test)]
mod seeds;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `target` on one input and aborts if a panic escapes crdt-core.
///
/// crdt-core contains yrs's panics with `catch_unwind`, but libfuzzer-sys
/// installs a hook that aborts at every panic, caught or not: each contained
/// panic would be reported as a crash and the fuzzer could not explore past
/// it. This replaces that hook with one that only remembers the panic; one
/// that escapes reaches the `catch_unwind` here and aborts with its message.
/// Set `CRDT_FUZZ_ABORT_ON_ANY_PANIC=1` to keep libfuzzer-sys's hook and
/// collect the inputs that make yrs panic.
pub fn fuzz(target: &str, data: &[u8]) {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        if std::env::var_os("CRDT_FUZZ_ABORT_ON_ANY_PANIC").is_none() {
            std::panic::set_hook(Box::new(|info| {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            }));
        }
    });
    if catch_unwind(AssertUnwindSafe(|| harness::run(target, data))).is_err() {
        let message = LAST_PANIC.with(|last| last.borrow_mut().take());
        eprintln!(
            "a panic escaped crdt-core: {}",
            message.as_deref().unwrap_or("(no message)")
        );
        std::process::abort();
    }
}
