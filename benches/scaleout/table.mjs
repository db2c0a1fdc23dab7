// Prints the results of run.sh (one JSON line per setup and scenario) as
// Markdown tables: what clients saw, what the nodes, Redis and PostgreSQL
// spent, and two nodes as a ratio of one.
//
//   node benches/scaleout/table.mjs RESULTS.jsonl [RUN]
//
// RUN (a `run` stamp) picks one run out of a file holding several; without
// it, the file's last run is shown.
import { readFileSync } from 'node:fs'

const [file, wanted] = process.argv.slice(2)
if (!file) {
  console.error('usage: node table.mjs RESULTS.jsonl [RUN]')
  process.exit(2)
}
const all = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
const run = wanted ?? all.at(-1)?.run
const rows = all.filter((r) => r.run === run)
rows.sort((a, b) => a.scenario.localeCompare(b.scenario) || a.node_count - b.node_count)

const num = (v, digits = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–')
const has = (r) => r.connect !== undefined
const perNode = (r, f) => (r.server?.processes ?? []).map((p) => num(f(p), f === cores ? 2 : 0)).join(' + ')
const cores = (p) => p.cpu_cores
const rss = (p) => p.rss_mb
const name = (r) => `${r.scenario}: ${r.title}`

console.log(`run ${run}`)
console.log()
console.log('| scenario | nodes | deliveries/s | delivered | p50 ms | p99 ms | max ms | cross-node p50 / p99 / max ms | cross-node delivered | server CPU cores (per node) | RSS MB (per node) | CPU µs/delivery | converged | generator saturated | notes |')
console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|')
for (const r of rows) {
  const notes = []
  if (r.error) notes.push(r.error)
  if (has(r) && r.connect.failed > 0) notes.push(`${r.connect.failed} failed to connect`)
  if (has(r) && r.connect.dropped_later > 0) notes.push(`${r.connect.dropped_later} dropped later`)
  if (has(r) && !r.converged) notes.push(r.convergence)
  const cross = r.latency_ms?.cross_node
  const crossDelivery = r.delivery?.cross_node
  const cells = has(r)
    ? [
        num(r.throughput.deliveries_per_s),
        `${(r.delivery.ratio * 100).toFixed(2)}%`,
        num(r.latency_ms.p50, 1),
        num(r.latency_ms.p99, 1),
        num(r.latency_ms.max, 1),
        cross?.count > 0 ? `${num(cross.p50, 1)} / ${num(cross.p99, 1)} / ${num(cross.max, 1)}` : '–',
        crossDelivery?.expected > 0 ? `${((crossDelivery.delivered / crossDelivery.expected) * 100).toFixed(2)}%` : '–',
        `${num(r.server.cpu_cores, 2)}${r.node_count > 1 ? ` (${perNode(r, cores)})` : ''}`,
        `${num(r.server.rss_mb)}${r.node_count > 1 ? ` (${perNode(r, rss)})` : ''}`,
        num(r.server.cpu_us_per_delivery, 1),
        r.converged ? 'yes' : '**no**',
        r.generator.saturated ? `yes: ${r.generator.saturation_reason}` : 'no'
      ]
    : Array(12).fill('–')
  console.log(`| ${name(r)} | ${r.node_count} | ${cells.join(' | ')} | ${notes.join('; ').replace(/\|/g, '\\|')} |`)
}

console.log()
console.log('Redis and PostgreSQL during the measured window (rates between the first and last once-a-second samples inside it), and the nodes\' own cluster counters. "received" counts every message a node\'s subscription delivers, its own included (Redis echoes them; the node ignores those).')
console.log()
console.log('| scenario | nodes | Redis commands/s | Redis PUBLISH/s | Redis net in / out KB/s | Redis CPU cores | nodes published / received per s | PG commits/s | PG rows inserted/s | PG rows deleted/s | whole run: edits sent, PG commits, PG rows inserted, Redis commands, messages dropped / resyncs |')
console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|')
for (const r of rows) {
  const w = r.window_load
  const sum = (list, key) => (list ?? []).reduce((t, n) => t + (n[key] ?? 0), 0)
  const cells = w
    ? [
        num(w.redis.commands_per_s),
        num(w.redis.publish_per_s),
        `${num(w.redis.net_input_bytes_per_s / 1024)} / ${num(w.redis.net_output_bytes_per_s / 1024)}`,
        num(w.redis.cpu_cores, 3),
        `${num(sum(w.nodes, 'published_per_s'))} / ${num(sum(w.nodes, 'received_per_s'))}`,
        num(w.postgres.xact_commit_per_s),
        num(w.postgres.tup_inserted_per_s),
        num(w.postgres.tup_deleted_per_s)
      ]
    : Array(8).fill('–')
  const total = [
    num(r.delivery?.sent),
    num(r.postgres.xact_commit),
    num(r.postgres.tup_inserted),
    num(r.redis.commands),
    `${sum(r.node_metrics, 'dropped')} / ${sum(r.node_metrics, 'resyncs')}`
  ].join(', ')
  console.log(`| ${name(r)} | ${r.node_count} | ${cells.join(' | ')} | ${total} |`)
}

const find = (scenario, n) => rows.find((r) => r.scenario === scenario && r.node_count === n && has(r))
const paired = [...new Set(rows.map((r) => r.scenario))].filter((s) => find(s, 1) && find(s, 2))
if (paired.length > 0) {
  const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b !== 0 ? (a / b).toFixed(2) : '–')
  // Per edit in the window: the rate ÷ edits per second offered.
  const editsPerSec = (r) => r.docs * r.clients_per_doc * r.rate_per_client
  const perEdit = (r, v) => (typeof v === 'number' ? v / editsPerSec(r) : undefined)
  console.log()
  console.log('| scenario | deliveries/s two ÷ one | p50 two ÷ one | p99 two ÷ one | server CPU two ÷ one | CPU µs/delivery two ÷ one | RSS two ÷ one | PG commits per edit one → two | Redis commands per edit one → two |')
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|')
  for (const s of paired) {
    const one = find(s, 1)
    const two = find(s, 2)
    console.log(
      `| ${name(one)} | ${ratio(two.throughput.deliveries_per_s, one.throughput.deliveries_per_s)} | ${ratio(two.latency_ms.p50, one.latency_ms.p50)} | ${ratio(two.latency_ms.p99, one.latency_ms.p99)} | ${ratio(two.server.cpu_cores, one.server.cpu_cores)} | ${ratio(two.server.cpu_us_per_delivery, one.server.cpu_us_per_delivery)} | ${ratio(two.server.rss_mb, one.server.rss_mb)} | ${num(perEdit(one, one.window_load?.postgres.xact_commit_per_s), 2)} → ${num(perEdit(two, two.window_load?.postgres.xact_commit_per_s), 2)} | ${num(perEdit(one, one.window_load?.redis.commands_per_s), 2)} → ${num(perEdit(two, two.window_load?.redis.commands_per_s), 2)} |`
    )
  }
}
