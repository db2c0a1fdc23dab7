#!/usr/bin/env bash
# Two sync-server nodes against one, measured side by side in one run: the
# scale-out benchmark of issue 4. Both setups store to PostgreSQL and fan
# out through Redis; the two-node setup shares one database and one Redis
# channel namespace, and the load generator puts client c of every document
# on node c mod 2, so half of every document's deliveries cross nodes.
#
#   benches/scaleout/run.sh [--quick] [--no-build] [--setups LIST] [--scenarios LIST] [--out FILE]
#
#   --quick       short durations and smaller scenarios, to try the script out
#   --no-build    use the release binaries already in $CARGO_TARGET_DIR
#   --setups      comma-separated subset of: one,two          (default: both)
#   --scenarios   comma-separated subset of: a,b,c            (default: a,b)
#   --out FILE    results file (default: benches/scaleout/results/<UTC date>.jsonl,
#                 appended to)
#
# Scenarios (the generator flags are in `flags` below):
#   a  1 document x 500 clients, 1 edit/s each (split 250/250 over two nodes)
#   b  1000 documents x 10 clients, 0.1 edit/s each (5/5 per document)
#   c  as b at 1 edit/s each: 10,000 edits/s, more than one 2-core machine
#      running generator, nodes and databases can take; shows how it fails
#
# Environment: PGHOST/PGPORT (127.0.0.1:5432; trust auth, user postgres or
# root, whichever connects), REDIS_URL (redis://127.0.0.1:6379), and
# SYNC_SERVER: a sync-server binary to measure instead of building one (for
# example one built from a clean `git archive` of a commit).
#
# A fresh database bench_scaleout_<pid> is created and dropped on exit;
# every (setup, scenario) gets its own schema in it, its own Redis channel
# prefix, fresh server processes on free loopback ports and fresh data
# directories. Besides the generator's JSON, each result line carries the
# PostgreSQL (pg_stat_database of the bench database, WAL bytes), Redis
# (INFO stats / commandstats / cpu) and per-node /metrics counters twice:
# as rates over the generator's measured window (`window_load`, from
# samples taken every second), and as totals from before the nodes start
# to after they stop (`redis`, `postgres`, `node_metrics`: connect,
# warm-up, measuring, drain, late joiners and shutdown). Every step is
# bounded by a timeout, and the trap stops everything this script started.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/collab-engine/target}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"

quick=0
build=1
setups="one,two"
scenarios="a,b"
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    --setups) setups="$2"; shift ;;
    --scenarios) scenarios="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$here/results"
out="${out:-$here/results/$(date -u +%Y-%m-%d).jsonl}"
logs="$CARGO_TARGET_DIR/scaleout/logs-$stamp"
mkdir -p "$logs"
this_run="$logs/results.jsonl"
: > "$this_run"

# ---------------------------------------------------------------- services
redis_hostport="${redis_url#redis://}"
redis_hostport="${redis_hostport%%/*}"
redis() { redis-cli -h "${redis_hostport%%:*}" -p "${redis_hostport##*:}" "$@"; }
redis PING > /dev/null || { echo "Redis does not answer at $redis_url" >&2; exit 1; }

pg_user=""
for u in postgres root; do
  if psql -U "$u" -d postgres -Atqc 'SELECT 1' > /dev/null 2>&1; then pg_user="$u"; break; fi
done
[[ -n "$pg_user" ]] || { echo "PostgreSQL at $PGHOST:$PGPORT accepts neither postgres nor root" >&2; exit 1; }
db="bench_scaleout_$$"
psql_admin() { psql -U "$pg_user" -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"; }
psql_bench() { psql -U "$pg_user" -d "$db" -v ON_ERROR_STOP=1 -Atqc "$1"; }
database_url="postgres://$pg_user@$PGHOST:$PGPORT/$db"

# ---------------------------------------------------------------- cleanup
node_pids=()
data_dirs=()
db_created=0
sampler_pid=""
stop_sampler() {
  if [[ -n "$sampler_pid" ]]; then
    kill -TERM "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
  fi
}
stop_nodes() {
  local pid
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  node_pids=()
  if [[ ${#data_dirs[@]} -gt 0 ]]; then rm -rf "${data_dirs[@]}"; fi
  data_dirs=()
}
cleanup() {
  stop_sampler
  stop_nodes
  if [[ $db_created -eq 1 ]]; then
    psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" || echo "could not drop database $db" >&2
    db_created=0
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- binaries
if [[ $build -eq 1 ]]; then
  echo "== building release binaries into $CARGO_TARGET_DIR"
  # Two commands: `cargo build -p a --bin x -p b` builds only binaries named x.
  if [[ -z "${SYNC_SERVER:-}" ]]; then
    (cd "$repo" && cargo build --release --locked -p sync-server --bin sync-server)
  fi
  (cd "$repo" && cargo build --release --locked -p benches --bin loadgen)
fi
sync_server="${SYNC_SERVER:-$CARGO_TARGET_DIR/release/sync-server}"
loadgen="$CARGO_TARGET_DIR/release/loadgen"
for bin in "$sync_server" "$loadgen"; do
  [[ -x "$bin" ]] || { echo "missing $bin (run without --no-build)" >&2; exit 1; }
  echo "   $(basename "$bin"): built $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ)"
done

psql_admin "CREATE DATABASE $db"
db_created=1
echo "== database $db on $PGHOST:$PGPORT as $pg_user; Redis $redis_url"

# 10,000 client sockets in the generator, half as many per node.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- scenarios
if [[ $quick -eq 1 ]]; then
  edit_time="--duration 5 --warmup 2 --drain 10"
  declare -A flags=(
    [a]="--docs 1 --clients 100 --rate 1 $edit_time"
    [b]="--docs 50 --clients 10 --rate 0.1 $edit_time"
    [c]="--docs 50 --clients 10 --rate 1 $edit_time"
  )
  declare -A title=([a]="1 doc x 100 clients, 1 edit/s" [b]="50 docs x 10 clients, 0.1 edit/s"
    [c]="50 docs x 10 clients, 1 edit/s")
else
  edit_time="--duration 20 --warmup 5"
  declare -A flags=(
    [a]="--docs 1 --clients 500 --rate 1 $edit_time"
    [b]="--docs 1000 --clients 10 --rate 0.1 $edit_time"
    [c]="--docs 1000 --clients 10 --rate 1 $edit_time"
  )
  declare -A title=([a]="1 doc x 500 clients, 1 edit/s" [b]="1000 docs x 10 clients, 0.1 edit/s"
    [c]="1000 docs x 10 clients, 1 edit/s")
fi
limit=300

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts $1 nodes for run $2 (schema and channel prefix); sets urls, pids.
start_nodes() {
  local count="$1" run="$2" n port dir log
  urls=(); pids=(); metrics_urls=()
  for n in $(seq 0 $((count - 1))); do
    port="$(free_port)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/collab-scaleout-XXXXXX")"
    data_dirs+=("$dir")
    log="$logs/$run.node$n.log"
    RUST_LOG=warn "$sync_server" --bind "127.0.0.1:$port" --data-dir "$dir" \
      --store postgres --database-url "$database_url" --database-schema "$run" \
      --redis-url "$redis_url" --redis-prefix "bench-scaleout-$$-$run" > "$log" 2>&1 &
    node_pids+=($!)
    pids+=($!)
    urls+=("ws://127.0.0.1:$port/ws")
    metrics_urls+=("http://127.0.0.1:$port/metrics")
    # Ready means PostgreSQL and Redis both answer; start nodes one at a
    # time so two nodes never race the migrations of a fresh schema.
    local ready=0
    for _ in $(seq 1 300); do
      if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/readyz" 2>/dev/null; then ready=1; break; fi
      kill -0 "${pids[$n]}" 2>/dev/null || break
      sleep 0.1
    done
    [[ $ready -eq 1 ]] || { echo "node $n of $run did not become ready; see $log" >&2; return 1; }
  done
}

# One JSON object of the services' counters now.
redis_info() {
  redis INFO all | tr -d '\r' | awk -F: '
    /^total_commands_processed:/ { cmds = $2 }
    /^total_net_input_bytes:/ { nin = $2 }
    /^total_net_output_bytes:/ { nout = $2 }
    /^used_cpu_sys:/ { sys = $2 }
    /^used_cpu_user:/ { user = $2 }
    /^connected_clients:/ { clients = $2 }
    /^cmdstat_publish:/ { split($2, f, /[=,]/); publish = f[2] }
    END { printf "{\"commands\":%d,\"net_input_bytes\":%d,\"net_output_bytes\":%d,\"cpu_s\":%.3f,\"connected_clients\":%d,\"publish_calls\":%d}\n",
                 cmds, nin, nout, sys + user, clients, publish + 0 }'
}
pg_stats() {
  psql_admin "SELECT json_build_object(
      'xact_commit', xact_commit, 'xact_rollback', xact_rollback,
      'tup_inserted', tup_inserted, 'tup_updated', tup_updated, 'tup_deleted', tup_deleted,
      'tup_fetched', tup_fetched, 'blks_read', blks_read, 'blks_hit', blks_hit,
      'wal_lsn', pg_current_wal_lsn()::text)
    FROM pg_stat_database WHERE datname = '$db'"
}
# The cluster counters of one node's /metrics, as JSON.
node_metrics() {
  curl -fsS --max-time 2 "$1" 2>/dev/null | awk '
    /^[a-z_]*cluster_(published|received|dropped|resyncs|healed)(_total)? / {
      name = $1; sub(/^.*cluster_/, "", name); sub(/_total$/, "", name); v[name] = $2 }
    END { printf "{"; sep = ""; for (k in v) { printf "%s\"%s\":%d", sep, k, v[k]; sep = "," } print "}" }'
}

# Every second until killed (at most $limit + 60 s): one JSON line with the
# time and every counter above, for rates over the measured window.
sample_loop() {
  local file="$1"
  shift
  for _ in $(seq 1 $((limit + 60))); do
    printf '{"t":%s,"redis":%s,"pg":%s,"nodes":%s}\n' "$(date +%s%3N)" "$(redis_info)" "$(pg_stats)" \
      "$(for m in "$@"; do node_metrics "$m"; done | jq -sc .)" >> "$file"
    sleep 1
  done
}

# Rates over the measured window: between the first sample inside it and
# the last. PostgreSQL sessions publish their statistics about once a
# second while busy, so these rates are good to about a second's worth.
window_load() {
  jq -sc --argjson s "$2" --argjson e "$3" '
    (map(select(.t >= $s)) | first) as $a | (map(select(.t <= $e)) | last) as $b
    | if $a == null or $b == null or $b.t <= $a.t then null else
      (($b.t - $a.t) / 1000) as $dt
      | def rate(f): ((($b | f) - ($a | f)) / $dt * 10 | round / 10);
      { seconds: $dt,
        redis: { commands_per_s: rate(.redis.commands), publish_per_s: rate(.redis.publish_calls),
                 net_input_bytes_per_s: rate(.redis.net_input_bytes),
                 net_output_bytes_per_s: rate(.redis.net_output_bytes),
                 cpu_cores: ((($b.redis.cpu_s - $a.redis.cpu_s) / $dt) * 1000 | round / 1000) },
        postgres: { xact_commit_per_s: rate(.pg.xact_commit), tup_inserted_per_s: rate(.pg.tup_inserted),
                    tup_deleted_per_s: rate(.pg.tup_deleted), tup_fetched_per_s: rate(.pg.tup_fetched) },
        nodes: [range(0; $b.nodes | length) as $i
          | ($b.nodes[$i] | to_entries
             | map({key: (.key + "_per_s"), value: (((.value - ($a.nodes[$i][.key] // 0)) / $dt) * 10 | round / 10)})
             | from_entries)] }
      end' "$1"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- the runs
echo "== load before: $(uptime)"
echo "== results: $out (this run: $this_run)"
IFS=, read -r -a setup_list <<< "$setups"
IFS=, read -r -a scenario_list <<< "$scenarios"
for s in "${scenario_list[@]}"; do
  [[ -n "${flags[$s]:-}" ]] || { echo "unknown scenario $s" >&2; exit 2; }
  for setup in "${setup_list[@]}"; do
    case "$setup" in one) count=1 ;; two) count=2 ;; *) echo "unknown setup $setup" >&2; exit 2 ;; esac
    run="s_${setup}_$s"
    samples=""
    gen_log="$logs/$run.loadgen.log"
    before="$(loadavg)"
    redis_before="$(redis_info)"
    pg_before="$(pg_stats)"
    error=""
    metrics_before='[]'
    metrics_after='[]'
    cmd=()
    if ! start_nodes "$count" "$run"; then
      error="nodes did not start"
    else
      metrics_before="$(for m in "${metrics_urls[@]}"; do node_metrics "$m"; done | jq -sc .)"
      samples="$logs/$run.samples.jsonl"
      sample_loop "$samples" "${metrics_urls[@]}" &
      sampler_pid=$!
      url_list="$(IFS=,; echo "${urls[*]}")"
      pid_list="$(IFS=,; echo "${pids[*]}")"
      # shellcheck disable=SC2206
      cmd=("$loadgen" --url "$url_list" ${flags[$s]} --server-pid "$pid_list"
        --doc-prefix "scaleout-$stamp-$run" --label "$setup-$s")
      echo "-- $count node(s), ${title[$s]}"
      echo "   ${cmd[*]}"
      set +e
      timeout --kill-after=10 "$limit" "${cmd[@]}" > "$gen_log" 2>&1
      code=$?
      set -e
      if [[ $code -eq 124 || $code -eq 137 ]]; then
        error="generator timed out after $limit s"
      elif [[ $code -ne 0 ]]; then
        error="generator exited with $code: $(grep -v '^{' "$gen_log" | tail -n 3 | tr '\n' ' ')"
      fi
      for n in "${!pids[@]}"; do
        if ! kill -0 "${pids[$n]}" 2>/dev/null; then
          error="${error:+$error; }node $n died during the run: $(tail -n 3 "$logs/$run.node$n.log" | tr '\n' ' ')"
        fi
      done
      metrics_after="$(for m in "${metrics_urls[@]}"; do node_metrics "$m"; done | jq -sc .)"
      stop_sampler
    fi
    # Stopped nodes have closed their PostgreSQL sessions, which flushes
    # those sessions' statistics into pg_stat_database.
    stop_nodes
    sleep 1
    pg_after="$(pg_stats)"
    # Which tables the rows went to (the run's own schema: whole run).
    pg_tables="$(psql_bench "SELECT coalesce(json_object_agg(relname, json_build_object(
        'inserted', n_tup_ins, 'updated', n_tup_upd, 'deleted', n_tup_del)), '{}')
      FROM pg_stat_user_tables WHERE schemaname = '$run'")"
    redis_after="$(redis_info)"
    wal_bytes="$(psql_admin "SELECT pg_wal_lsn_diff('$(jq -r .wal_lsn <<< "$pg_after")', '$(jq -r .wal_lsn <<< "$pg_before")')::bigint")"
    after="$(loadavg)"
    json="$(tail -n 1 "$gen_log" 2>/dev/null || true)"
    [[ "$json" == \{* ]] || json='{}'
    window='null'
    if [[ -s "${samples:-}" ]] && jq -e '.window.start_unix_ms' <<< "$json" > /dev/null 2>&1; then
      window="$(window_load "$samples" "$(jq .window.start_unix_ms <<< "$json")" "$(jq .window.end_unix_ms <<< "$json")")"
    fi
    printf '%s\n' "$json" | jq -c \
      --arg setup "$setup" --argjson nodes "$count" --arg scenario "$s" --arg title "${title[$s]}" \
      --arg command "${cmd[*]:-}" \
      --arg error "$error" --arg before "$before" --arg after "$after" \
      --argjson quick "$quick" \
      --argjson rb "$redis_before" --argjson ra "$redis_after" \
      --argjson pb "$pg_before" --argjson pa "$pg_after" --argjson wal "$wal_bytes" \
      --argjson mb "$metrics_before" --argjson ma "$metrics_after" --arg stamp "$stamp" \
      --argjson window "$window" --argjson tables "$pg_tables" --arg server "$sync_server" --arg built "$(date -u -r "$sync_server" +%Y-%m-%dT%H:%M:%SZ)" \
      '. + {setup: $setup, server_binary: {path: $server, built: $built}, node_count: $nodes, scenario: $scenario, title: $title, command: $command,
            run: $stamp, loadavg_before: $before, loadavg_after: $after, quick: ($quick == 1),
            window_load: $window,
            redis: {
              commands: ($ra.commands - $rb.commands),
              publish_calls: ($ra.publish_calls - $rb.publish_calls),
              net_input_bytes: ($ra.net_input_bytes - $rb.net_input_bytes),
              net_output_bytes: ($ra.net_output_bytes - $rb.net_output_bytes),
              cpu_s: (($ra.cpu_s - $rb.cpu_s) * 1000 | round / 1000),
              other_clients_before: ($rb.connected_clients - 1)
            },
            postgres: {
              xact_commit: ($pa.xact_commit - $pb.xact_commit),
              xact_rollback: ($pa.xact_rollback - $pb.xact_rollback),
              tup_inserted: ($pa.tup_inserted - $pb.tup_inserted),
              tup_updated: ($pa.tup_updated - $pb.tup_updated),
              tup_deleted: ($pa.tup_deleted - $pb.tup_deleted),
              tup_fetched: ($pa.tup_fetched - $pb.tup_fetched),
              blks_read: ($pa.blks_read - $pb.blks_read),
              wal_bytes_cluster: $wal,
              tables: $tables
            },
            node_metrics: [range(0; $ma | length) as $i
              | ($ma[$i] | to_entries | map({key, value: (.value - ($mb[$i][.key] // 0))}) | from_entries)]}
         + (if $error == "" then {} else {error: $error} end)' | tee -a "$this_run" >> "$out"
    grep -v '^{' "$gen_log" | sed 's/^/   /' | tail -n 13 || true
    [[ -n "$error" ]] && echo "   ERROR: $error"
    sleep 2
  done
done
echo "== load after: $(uptime)"
echo "== results: $out"
echo
node "$here/table.mjs" "$this_run"
