#!/usr/bin/env bash
# Runs every test: Rust unit, property, black-box, crash and fuzz-regression
# tests, then the Node interop suite (stock yjs / y-websocket clients and a
# real Chromium). Installs what is missing; needs root for apt on a fresh
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
SECONDS=0

# Reuse a build cache when there is one; never depend on it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collab-engine/target}"
mkdir -p "$CARGO_TARGET_DIR"
export CARGO_TERM_COLOR=never

log "system packages"
./scripts/deps.sh

log "build (debug, with examples)"
cargo build --workspace --all-targets --locked

log "Rust tests"
cargo test --workspace --locked

log "Node interop and browser tests"
(
  cd sync-server/tests/interop
  npm ci --no-audit --no-fund --loglevel=error
  npm test
)

log "browser SDK (client-wasm) and the Next.js example"
./client-wasm/test.sh

log "all tests passed in ${SECONDS}s"
