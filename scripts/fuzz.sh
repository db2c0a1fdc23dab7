#!/usr/bin/env bash
# Runs every cargo-fuzz target in crdt-core/fuzz and sync-server/fuzz for $1
# seconds each (default 60), one after another, one process at a time.
#
# No nightly toolchain is needed: RUSTC_BOOTSTRAP=1 lets stable take
# -Zsanitizer=address. A crash is written to <crate>/fuzz/artifacts/<target>/;
# minimise it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir <crate>/fuzz <target> <file>
# and keep it as crdt-core/tests/regressions/<target>/<what-it-is>.bin
# (replayed by `cargo test -p crdt-core --test fuzz_regressions`) or
# sync-server/tests/fuzz-regressions/<target>/<what-it-is>.bin (replayed by
# `cargo test -p sync-server --test fuzz_regressions`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
crdt_fuzz_dir="$PWD/crdt-core/fuzz"
server_fuzz_dir="$PWD/sync-server/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# Model the production allocator: yrs reserves with try_reserve, and a
# reservation the system refuses is a decode error, not an abort. Leak
# checks are off because yrs 0.28 leaks every document holding a
# subdocument (a reference cycle), which would stop each run at once.
export ASAN_OPTIONS="${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=0}"

# Seed the corpora (cheap, idempotent): crdt-core's from real yrs documents,
# sync-server's from the inputs its regression test keeps.
cargo test --manifest-path "$crdt_fuzz_dir/Cargo.toml" --lib --quiet
for dir in "$PWD"/sync-server/tests/fuzz-regressions/*/; do
  target="$(basename "$dir")"
  mkdir -p "$server_fuzz_dir/corpus/$target"
  cp "$dir"*.bin "$server_fuzz_dir/corpus/$target/"
done

# libFuzzer writes fuzz-<n>.log into the working directory.
logs="$(mktemp -d)"
failed=()
for fuzz_dir in "$crdt_fuzz_dir" "$server_fuzz_dir"; do
  for target in $(cargo fuzz list --fuzz-dir "$fuzz_dir"); do
    echo "==> $target for ${seconds}s (log: $logs/$target)"
    mkdir -p "$logs/$target"
    # -malloc_limit_mb above physical memory: a large reservation that is never
    # touched is harmless; growth of real memory is what -rss_limit_mb catches.
    if (cd "$logs/$target" && cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" -- \
          -jobs=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
          -malloc_limit_mb=32768 -detect_leaks=0 -print_final_stats=1 \
          >"$logs/$target/run.out" 2>&1); then
      grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$logs/$target/fuzz-0.log"
    else
      failed+=("$target (input in $fuzz_dir/artifacts/$target/)")
      grep -E 'panic escaped|panicked|ERROR|Test unit written' "$logs/$target/fuzz-0.log" ||
        tail -n 20 "$logs/$target/run.out"
    fi
  done
done

if ((${#failed[@]})); then
  printf 'crashed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all targets ran ${seconds}s without a crash"
