#!/usr/bin/env bash
# Builds the browser SDK: crdt-core to wasm32 with the recipe of
# shared/WASM.md (Debian's rustc-web, -Z build-std, wasm-ld, wasm-bindgen
# 0.2.130, binaryen 132), then the TypeScript package around it.
#
# Outputs (all git-ignored):
#   client-wasm/pkg/{web,nodejs}     wasm-bindgen's modules, after wasm-opt
#   client-wasm/js/wasm/{web,nodejs} the same, inside the npm package
#   client-wasm/js/dist/             the compiled TypeScript and its typings
#
# Installs what is missing (needs root for apt on a fresh machine) and reuses
# what is cached: the wasm tools in $HOME/.cache/wasm-tools, the wasm build in
# $HOME/.cache/collab-engine/target-wasm. Cold: about 8 minutes on 2 cores
# (apt, `cargo install wasm-bindgen-cli`, std and the crate for wasm32);
# warm: about 15 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> client-wasm: %s\n' "$*"; }
SECONDS=0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

log "toolchain (rustc-web, rust-web-src, lld)"
installed="$(dpkg-query -W -f='${Status}\n' rustc-web cargo-web rust-web-src lld 2>/dev/null |
  grep -c '^install ok installed$' || true)"
if [ "$installed" = 4 ]; then
  echo "already installed"
else
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends rustc-web cargo-web rust-web-src lld
fi
# rustc-web and rust-web-src must be the same version.
rustc_ver="$(/usr/bin/rustc -V | awk '{print $2}')"
src_ver="$(dpkg-query -W -f='${Version}' rust-web-src | cut -d+ -f1)"
if [ "$rustc_ver" != "$src_ver" ]; then
  echo "rustc-web $rustc_ver and rust-web-src $src_ver differ; install matching versions" >&2
  exit 1
fi

WBG_VER=0.2.130
TOOLS="$HOME/.cache/wasm-tools"
log "wasm-bindgen-cli $WBG_VER and binaryen (cached in $TOOLS)"
if [ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WBG_VER" ]; then
  # No --locked: its lockfile pins a crate the registry lacks (WASM.md, pitfall 7).
  # A light release profile builds it in about 3 minutes instead of 7-15;
  # its output for our module is byte for byte the same, in the same 0.1 s.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    cargo +stable install wasm-bindgen-cli --version "=$WBG_VER" --root "$TOOLS"
fi
if [ ! -x "$TOOLS/npm/node_modules/.bin/wasm-opt" ]; then
  # Debian's binaryen 108 corrupts wasm-bindgen's externref table (pitfall 4).
  npm install --prefix "$TOOLS/npm" --no-save --no-audit --no-fund --loglevel=error binaryen@132.0.0
fi

log "cargo build for wasm32-unknown-unknown"
WASM_TARGET_DIR="${WASM_TARGET_DIR:-$HOME/.cache/collab-engine/target-wasm}"
# /usr/bin first: rustup's rustc has no wasm32 std (pitfall 1). The release
# profile is tuned for size here, through the environment, so the server's
# release build keeps its own settings: no `strip` (pitfall 5).
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
  CARGO_PROFILE_RELEASE_DEBUG=false \
  cargo build --release --target wasm32-unknown-unknown -Z build-std=std,panic_abort \
  -p client-wasm --target-dir "$WASM_TARGET_DIR"
W="$WASM_TARGET_DIR/wasm32-unknown-unknown/release/client_wasm.wasm"

log "wasm-bindgen and wasm-opt"
for t in nodejs web; do
  rm -rf "client-wasm/pkg/$t"
  "$TOOLS/bin/wasm-bindgen" --target "$t" --out-dir "client-wasm/pkg/$t" "$W"
  "$TOOLS/npm/node_modules/.bin/wasm-opt" -Oz "client-wasm/pkg/$t/client_wasm_bg.wasm" \
    -o "client-wasm/pkg/$t/client_wasm_bg.wasm"
  rm -rf "client-wasm/js/wasm/$t"
  mkdir -p "client-wasm/js/wasm"
  cp -r "client-wasm/pkg/$t" "client-wasm/js/wasm/$t"
done
# The package is ESM ("type": "module"); the nodejs target is CommonJS.
echo '{ "type": "commonjs" }' >client-wasm/js/wasm/nodejs/package.json
echo '{ "type": "module" }' >client-wasm/js/wasm/web/package.json
raw=$(stat -c %s client-wasm/pkg/web/client_wasm_bg.wasm)
gz=$(gzip -9 -c client-wasm/pkg/web/client_wasm_bg.wasm | wc -c)
echo "client_wasm_bg.wasm: $raw bytes, $gz gzipped"

log "TypeScript"
(
  cd client-wasm/js
  # npm ci only when the lockfile changed since the last install.
  stamp="node_modules/.lock-stamp"
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
  rm -rf dist
  npx tsc -p tsconfig.json
)
log "built in ${SECONDS}s"
