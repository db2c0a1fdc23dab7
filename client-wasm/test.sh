#!/usr/bin/env bash
# Builds the browser SDK and the Next.js example, then runs their tests:
#   client-wasm/js/test      the SDK in Node against the real server, the
#                            wasm core against plain yjs, connection policy
#   examples/nextjs/tests    the example in headless Chromium, two contexts
# Installs what is missing; caches under $HOME/.cache and never depends on
# the cache. scripts/test.sh runs this last. SYNC_SERVER_BIN names a server
# binary to test against instead of building target/debug/sync-server.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
SECONDS=0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collab-engine/target}"
export CARGO_TERM_COLOR=never
export NEXT_TELEMETRY_DISABLED=1

# Installs the locked packages, only when the lockfile changed since the
# last install here. `npm install --no-save` rather than `npm ci`: the
# registry reachable here lacks Next's macOS and Windows compiler packages,
# so the lockfile cannot list them and `npm ci` refuses it; install follows
# the lockfile and skips those optional packages.
npm_install() {
  local stamp="node_modules/.lock-stamp" want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm install --no-save --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
}

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi

if [ -n "${SYNC_SERVER_BIN:-}" ]; then
  log "sync server: $SYNC_SERVER_BIN (SYNC_SERVER_BIN)"
else
  log "sync server (debug build, shared with the Rust tests)"
  cargo build -p sync-server --locked
fi

log "client-wasm: WebAssembly core and TypeScript SDK"
./client-wasm/build.sh

log "examples/nextjs: next build"
(
  cd examples/nextjs
  npm_install
  # Keep Next's build cache between runs, outside the work tree.
  cache="$HOME/.cache/collab-engine/nextjs-build-cache"
  mkdir -p "$cache" .next
  if [ ! -L .next/cache ]; then
    rm -rf .next/cache
    ln -s "$cache" .next/cache
  fi
  npm run --silent build
)

log "SDK tests (Node, real server)"
(cd client-wasm/js && npm test)

log "Next.js example in headless Chromium"
(cd examples/nextjs && npm test)

log "client-wasm tests passed in ${SECONDS}s"
