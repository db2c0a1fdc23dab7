// Browser benchmark of the SDK's WebAssembly core against yjs, in headless
// Chromium:
//   - the size of the .wasm, raw and gzipped;
//   - its load time (fetch over loopback, compile, instantiate), in fresh
//     browser contexts so no cache helps;
//   - the time to apply the 259,778 per-keystroke updates of the
//     automerge-paper trace, one call each: into a wasm replica
//     (`Replica.applyUpdate`), and into a Y.Doc (`Y.applyUpdate`).
// The updates are made by yjs in Node, replaying the trace one keystroke per
// transaction. Prints a Markdown table and the raw numbers as JSON.
//
//   client-wasm/build.sh && node client-wasm/bench/run.mjs [--runs 5]
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'

const here = import.meta.dirname
const js = resolve(here, '../js')
const root = resolve(here, '../..')
// Dependencies come from the SDK package's node_modules.
const require = createRequire(join(js, 'package.json'))
const Y = require('yjs')
const { build } = require('esbuild')
const { chromium } = require('playwright-core')

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1] ?? 5) || 5
const traces = process.env.EDITING_TRACES ?? join(root, 'test-data/editing-traces')

// --- the updates ------------------------------------------------------------
const trace = JSON.parse(gunzipSync(readFileSync(join(traces, 'automerge-paper.json.gz'))).toString())
const doc = new Y.Doc()
const text = doc.getText('text')
const updates = []
doc.on('update', (u) => updates.push(u))
for (const txn of trace.txns) {
  doc.transact(() => {
    for (const [pos, del, ins] of txn.patches) {
      if (del > 0) text.delete(pos, del)
      if (ins !== '') text.insert(pos, ins)
    }
  })
}
if (text.toString() !== trace.endContent) throw new Error('the trace did not replay to its end content')
// One blob: a u32 length before each update.
const total = updates.reduce((n, u) => n + 4 + u.length, 0)
const blob = new Uint8Array(total)
let at = 0
for (const u of updates) {
  new DataView(blob.buffer).setUint32(at, u.length, true)
  blob.set(u, at + 4)
  at += 4 + u.length
}

// --- the page -----------------------------------------------------------------
const wasm = readFileSync(join(js, 'wasm/web/client_wasm_bg.wasm'))
const bundle = (await build({
  stdin: {
    contents: `
      import * as Y from 'yjs'
      import init, { Replica } from './wasm/web/client_wasm.js'
      window.bench = { Y, init, Replica }`,
    resolveDir: js
  },
  bundle: true,
  format: 'esm',
  minify: true,
  write: false
})).outputFiles[0].text
const files = {
  '/': ['text/html', '<!doctype html><meta charset=utf-8><script type=module src=/bench.js></script>'],
  '/bench.js': ['text/javascript', bundle],
  '/client_wasm_bg.wasm': ['application/wasm', wasm],
  '/updates.bin': ['application/octet-stream', blob]
}
const server = createServer((req, res) => {
  const file = files[new URL(req.url, 'http://x').pathname]
  if (file === undefined) { res.writeHead(404).end(); return }
  res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' }).end(file[1])
})
await new Promise((r) => server.listen(0, '127.0.0.1', r))
const url = `http://127.0.0.1:${server.address().port}/`

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run']
})

async function freshPage () {
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(url)
  await page.waitForFunction(() => window.bench !== undefined)
  return { context, page }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const results = { load: [], wasmApply: [], yjsApply: [] }
let check
try {
  for (let run = 0; run < runs; run++) {
    const { context, page } = await freshPage()
    results.load.push(await page.evaluate(async () => {
      const start = performance.now()
      await window.bench.init({ module_or_path: '/client_wasm_bg.wasm' })
      return performance.now() - start
    }))
    const timings = await page.evaluate(async () => {
      const { Y, Replica } = window.bench
      const bytes = new Uint8Array(await (await fetch('/updates.bin')).arrayBuffer())
      const view = new DataView(bytes.buffer)
      const list = []
      for (let at = 0; at < bytes.length;) {
        const len = view.getUint32(at, true)
        list.push(bytes.subarray(at + 4, at + 4 + len))
        at += 4 + len
      }
      // Alternate which goes first, so neither always gets a warmer JIT.
      const wasm = () => {
        const replica = new Replica(1)
        const start = performance.now()
        for (const u of list) replica.applyUpdate(u)
        const ms = performance.now() - start
        const text = JSON.parse(replica.toJSON()).text
        replica.free()
        return { ms, text }
      }
      const yjs = () => {
        const ydoc = new Y.Doc()
        const start = performance.now()
        for (const u of list) Y.applyUpdate(ydoc, u)
        const ms = performance.now() - start
        return { ms, text: ydoc.getText('text').toString() }
      }
      const a = wasm()
      const b = yjs()
      return { updates: list.length, wasm: a.ms, yjs: b.ms, same: a.text === b.text, length: a.text.length }
    })
    results.wasmApply.push(timings.wasm)
    results.yjsApply.push(timings.yjs)
    check = timings
    await context.close()
  }
} finally {
  await browser.close()
  server.close()
}
if (!check.same || check.length !== trace.endContent.length) throw new Error('wasm and yjs ended with different text')

const version = await (async () => {
  const b = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] })
  const v = b.version()
  await b.close()
  return v
})()
const kb = (n) => `${(n / 1024).toFixed(0)} KiB (${n.toLocaleString('en')} bytes)`
const ms = (x) => `${x.toFixed(x < 100 ? 1 : 0)} ms`
const summary = {
  chromium: version,
  runs,
  wasmBytes: wasm.length,
  wasmGzipBytes: gzipSync(wasm, { level: 9 }).length,
  updates: check.updates,
  updateBytes: total - 4 * check.updates,
  loadMs: { median: median(results.load), min: Math.min(...results.load) },
  wasmApplyMs: { median: median(results.wasmApply), min: Math.min(...results.wasmApply) },
  yjsApplyMs: { median: median(results.yjsApply), min: Math.min(...results.yjsApply) }
}
console.log(`| measure (Chromium ${version}, ${runs} runs) | median | best |
|---|---|---|
| \`client_wasm_bg.wasm\` raw | ${kb(summary.wasmBytes)} | |
| \`client_wasm_bg.wasm\` gzip -9 | ${kb(summary.wasmGzipBytes)} | |
| load: fetch (loopback) + compile + instantiate | ${ms(summary.loadMs.median)} | ${ms(summary.loadMs.min)} |
| apply ${summary.updates.toLocaleString('en')} keystroke updates, wasm \`Replica.applyUpdate\` | ${ms(summary.wasmApplyMs.median)} | ${ms(summary.wasmApplyMs.min)} |
| apply the same, yjs \`Y.applyUpdate\` | ${ms(summary.yjsApplyMs.median)} | ${ms(summary.yjsApplyMs.min)} |
| wasm / yjs (medians) | ${(summary.wasmApplyMs.median / summary.yjsApplyMs.median).toFixed(2)}× | |`)
console.log(JSON.stringify(summary))
