// Prints the results of run.sh (one JSON line per server and scenario) as
// Markdown tables: every run side by side, then our throughput as a
// fraction of the relay baseline's.
//
//   node benches/compare/table.mjs RESULTS.jsonl
import { readFileSync } from 'node:fs'

const file = process.argv[2]
if (!file) {
  console.error('usage: node table.mjs RESULTS.jsonl')
  process.exit(2)
}
const rows = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
const order = ['ours', 'relay', 'y-websocket', 'hocuspocus']
rows.sort((a, b) => a.scenario.localeCompare(b.scenario) || order.indexOf(a.target) - order.indexOf(b.target))

const num = (v, digits = 0) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–')
const has = (r) => r.connect !== undefined

console.log('| scenario | server | deliveries/s | delivered | p50 ms | p99 ms | max ms | server CPU (cores) | CPU µs/delivery | RSS / peak MB | connected (failed) in s | converged | generator saturated | notes |')
console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|')
for (const r of rows) {
  const notes = []
  if (r.error) notes.push(r.error)
  if (has(r) && r.connect.dropped_later > 0) notes.push(`${r.connect.dropped_later} dropped later`)
  if (has(r) && !r.converged) notes.push(r.convergence)
  const cells = has(r)
    ? [
        num(r.throughput.deliveries_per_s),
        r.delivery.expected > 0 ? `${(r.delivery.ratio * 100).toFixed(2)}%` : '–',
        num(r.latency_ms.p50, 1),
        num(r.latency_ms.p99, 1),
        num(r.latency_ms.max, 1),
        num(r.server.cpu_cores, 2),
        num(r.server.cpu_us_per_delivery, 1),
        `${num(r.server.rss_mb)} / ${num(r.server.peak_rss_mb)}`,
        `${r.connect.ok} (${r.connect.failed}) in ${num(r.connect.seconds, 1)}`,
        r.convergence === 'not checked' ? 'not checked' : (r.converged ? 'yes' : '**no**'),
        r.generator.saturated ? `yes: ${r.generator.saturation_reason}` : 'no'
      ]
    : Array(11).fill('–')
  console.log(`| ${r.scenario}: ${r.title} | ${r.target} | ${cells.join(' | ')} | ${notes.join('; ').replace(/\|/g, '\\|')} |`)
}

const find = (server, scenario) => rows.find((r) => r.target === server && r.scenario === scenario && has(r))
const scenarios = [...new Set(rows.map((r) => r.scenario))]
const relayed = scenarios.filter((s) => find('ours', s) && find('relay', s) && find('relay', s).throughput.deliveries_per_s > 0)
if (relayed.length > 0) {
  console.log()
  console.log('| scenario | ours deliveries/s | relay deliveries/s | ours ÷ relay | ours p99 ms | relay p99 ms |')
  console.log('|---|--:|--:|--:|--:|--:|')
  for (const s of relayed) {
    const o = find('ours', s)
    const r = find('relay', s)
    console.log(`| ${s}: ${o.title} | ${num(o.throughput.deliveries_per_s)} | ${num(r.throughput.deliveries_per_s)} | ${(o.throughput.deliveries_per_s / r.throughput.deliveries_per_s).toFixed(3)} | ${num(o.latency_ms.p99, 1)} | ${num(r.latency_ms.p99, 1)} |`)
  }
}
