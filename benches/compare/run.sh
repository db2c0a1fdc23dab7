#!/usr/bin/env bash
# Runs the load generator's scenarios against our server, our server in
# relay mode (a baseline with no CRDT work and no storage), the reference
# y-websocket server (@y/websocket-server) and a minimal Hocuspocus server,
# one after another on this machine, and prints one Markdown table.
#
#   benches/compare/run.sh [--quick] [--no-build] [--servers LIST] [--scenarios LIST] [--out FILE]
#
#   --quick       short durations and smaller scenarios, to try the script out
#   --no-build    use the release binaries already in $CARGO_TARGET_DIR
#   --servers     comma-separated subset of: ours,relay,y-websocket,hocuspocus
#   --scenarios   comma-separated subset of: a,b,c,d,e
#   --out FILE    results file (default: $CARGO_TARGET_DIR/compare/run-<time>.jsonl)
#
# Every (server, scenario) gets a fresh server process on a free loopback
# port (ours with a fresh temporary data directory), and one JSON line in
# the results file: the generator's own JSON plus `target` (the server's
# name), `scenario`, `command`, the load average before and after, and,
# when something went wrong, `error` (the generator failed or timed out,
# or the server died).
# Every run is bounded by a timeout, so the script always finishes.
#
# Builds go to $CARGO_TARGET_DIR (default ~/.cache/collab-engine/target).
# The Node servers are installed with npm into benches/compare/node_modules
# (git-ignored) from package.json and package-lock.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collab-engine/target}"

quick=0
build=1
servers="ours,relay,y-websocket,hocuspocus"
scenarios="a,b,c,d,e"
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    --servers) servers="$2"; shift ;;
    --scenarios) scenarios="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$CARGO_TARGET_DIR/compare"
out="${out:-$CARGO_TARGET_DIR/compare/run-$stamp.jsonl}"
logs="$CARGO_TARGET_DIR/compare/logs-$stamp"
mkdir -p "$logs"
: > "$out"

if [[ $build -eq 1 ]]; then
  echo "== building release binaries into $CARGO_TARGET_DIR"
  # Two commands: `cargo build -p a --bin x -p b` builds only binaries named x.
  (cd "$repo" && cargo build --release -p sync-server --bin sync-server)
  (cd "$repo" && cargo build --release -p benches --bin loadgen)
fi
sync_server="$CARGO_TARGET_DIR/release/sync-server"
loadgen="$CARGO_TARGET_DIR/release/loadgen"
for bin in "$sync_server" "$loadgen"; do
  [[ -x "$bin" ]] || { echo "missing $bin (run without --no-build)" >&2; exit 1; }
  echo "   $(basename "$bin"): built $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ)"
done

echo "== installing the Node servers"
(cd "$here" && if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi)
node_version="$(node --version)"

# 10,000 client sockets in the generator and as many in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Scenarios: name, generator flags, time limit in seconds.
if [[ $quick -eq 1 ]]; then
  edit_time=(--duration 5 --warmup 2 --drain 10)
  declare -A flags=(
    [a]="--docs 1 --clients 200 --rate 1 ${edit_time[*]}"
    [b]="--docs 1 --clients 300 --rate 1 ${edit_time[*]}"
    [c]="--docs 20 --clients 10 --rate 1 ${edit_time[*]}"
    [d]="--docs 100 --clients 10 --rate 0 --no-check --duration 3 --warmup 1"
    [e]="--docs 1 --clients 30 --seed-kib 2048 --rate 0 --full-clients 1 --duration 2 --warmup 1"
  )
else
  edit_time=(--duration 20 --warmup 5)
  declare -A flags=(
    [a]="--docs 1 --clients 200 --rate 1 ${edit_time[*]}"
    [b]="--docs 1 --clients 1000 --rate 1 ${edit_time[*]}"
    [c]="--docs 100 --clients 10 --rate 1 ${edit_time[*]}"
    [d]="--docs 1000 --clients 10 --rate 0 --no-check --duration 10 --warmup 2"
    [e]="--docs 1 --clients 150 --seed-kib 20480 --rate 0 --full-clients 1 --duration 5 --warmup 1"
  )
fi
declare -A limit=([a]=240 [b]=300 [c]=240 [d]=420 [e]=420)
declare -A title=(
  [a]="1 doc x 200 clients, 1 edit/s"
  [b]="1 doc x 1000 clients, 1 edit/s"
  [c]="100 docs x 10 clients, 1 edit/s"
  [d]="10000 idle connections, 1000 docs"
  [e]="150 clients join a 20 MiB doc"
)
if [[ $quick -eq 1 ]]; then
  title[b]="1 doc x 300 clients, 1 edit/s"; title[c]="20 docs x 10 clients, 1 edit/s"
  title[d]="1000 idle connections, 100 docs"; title[e]="30 clients join a 2 MiB doc"
fi

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

server_pid=""
data_dir=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  if [[ -n "$data_dir" ]]; then
    rm -rf "$data_dir"
    data_dir=""
  fi
}
trap stop_server EXIT INT TERM

# Starts $1 on a free port; sets server_pid, url and dialect flags.
start_server() {
  local name="$1" log="$2" port health
  port="$(free_port)"
  case "$name" in
    ours|relay)
      data_dir="$(mktemp -d "${TMPDIR:-/tmp}/collab-compare-XXXXXX")"
      local relay=false
      [[ "$name" == relay ]] && relay=true
      RUST_LOG=warn "$sync_server" --bind "127.0.0.1:$port" --data-dir "$data_dir" \
        --relay "$relay" > "$log" 2>&1 &
      server_pid=$!
      url="ws://127.0.0.1:$port/ws"; dialect=(--dialect y-websocket)
      health="http://127.0.0.1:$port/healthz"
      ;;
    y-websocket)
      # `env` execs node, so $! is the server's own pid.
      env -u YPERSISTENCE -u CALLBACK_URL PORT="$port" node "$here/y-websocket-server.mjs" > "$log" 2>&1 &
      server_pid=$!
      url="ws://127.0.0.1:$port"; dialect=(--dialect y-websocket)
      health="http://127.0.0.1:$port/"
      ;;
    hocuspocus)
      PORT="$port" node "$here/hocuspocus-server.mjs" > "$log" 2>&1 &
      server_pid=$!
      url="ws://127.0.0.1:$port"; dialect=(--dialect hocuspocus)
      health="http://127.0.0.1:$port/"
      ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 "$health" 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server $name did not come up; see $log" >&2
  return 1
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== load before: $(uptime)"
echo "== results: $out"
IFS=, read -r -a server_list <<< "$servers"
IFS=, read -r -a scenario_list <<< "$scenarios"
for server in "${server_list[@]}"; do
  for s in "${scenario_list[@]}"; do
    [[ -n "${flags[$s]:-}" ]] || { echo "unknown scenario $s" >&2; exit 2; }
    label="$server-$s"
    server_log="$logs/$label.server.log"
    gen_log="$logs/$label.loadgen.log"
    extra=()
    # The relay stores nothing, so a late joiner cannot converge.
    [[ "$server" == relay && "${flags[$s]}" != *--no-check* ]] && extra+=(--no-check)
    before="$(loadavg)"
    error=""
    if ! start_server "$server" "$server_log"; then
      error="server did not start"
    else
      # shellcheck disable=SC2206
      cmd=("$loadgen" --url "$url" "${dialect[@]}" ${flags[$s]} "${extra[@]}"
        --server-pid "$server_pid" --doc-prefix "cmp-$stamp-$label" --label "$label")
      echo "-- $label: ${title[$s]}"
      echo "   ${cmd[*]}"
      set +e
      timeout --kill-after=10 "${limit[$s]}" "${cmd[@]}" > "$gen_log" 2>&1
      code=$?
      set -e
      if [[ $code -eq 124 || $code -eq 137 ]]; then
        error="generator timed out after ${limit[$s]} s"
      elif [[ $code -ne 0 ]]; then
        error="generator exited with $code: $(grep -v '^{' "$gen_log" | tail -n 3 | tr '\n' ' ')"
      fi
      if ! kill -0 "$server_pid" 2>/dev/null; then
        error="${error:+$error; }server died during the run: $(tail -n 3 "$server_log" | tr '\n' ' ')"
      fi
    fi
    stop_server
    after="$(loadavg)"
    json="$(tail -n 1 "$gen_log" 2>/dev/null || true)"
    [[ "$json" == \{* ]] || json='{}'
    printf '%s\n' "$json" | jq -c \
      --arg target "$server" --arg scenario "$s" --arg title "${title[$s]}" \
      --arg command "loadgen ${dialect[*]:-} ${flags[$s]} ${extra[*]:-}" \
      --arg error "$error" --arg before "$before" --arg after "$after" \
      --arg node "$node_version" --argjson quick "$quick" \
      '. + {target: $target, scenario: $scenario, title: $title, command: $command,
            loadavg_before: $before, loadavg_after: $after, node: $node, quick: ($quick == 1)}
         + (if $error == "" then {} else {error: $error} end)' >> "$out"
    grep -v '^{' "$gen_log" | sed 's/^/   /' | tail -n 9 || true
    [[ -n "$error" ]] && echo "   ERROR: $error"
    sleep 2
  done
done
echo "== load after: $(uptime)"
echo "== results: $out"
echo
node "$here/table.mjs" "$out"
