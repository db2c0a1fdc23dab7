// Shared helpers: start the real server binary, stock Yjs clients, waits.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

export const root = resolve(import.meta.dirname, '../../..')
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
export const serverBin = join(targetDir, 'debug', 'sync-server')
export const yclientBin = join(targetDir, 'debug', 'examples', 'yclient')

/** A port that was free a moment ago (for restarts on the same address). */
export async function freePort () {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolvePort(port))
    })
  })
}

/** Starts the server binary; resolves once it listens. */
export async function startServer ({ dataDir = mkdtempSync(join(tmpdir(), 'sync-')), port = 0, args = [] } = {}) {
  const child = spawn(serverBin, ['--bind', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args], {
    env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let log = ''
  const address = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 15000)
    const onData = (chunk) => {
      log += chunk
      const match = /serving on http:\/\/([0-9.]+:[0-9]+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ''))
      if (match) { clearTimeout(timer); resolveAddr(match[1]) }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)))
  })
  return {
    child,
    address,
    dataDir,
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    log: () => log,
    /** SIGTERM and wait: the server flushes and exits 0. */
    async stop () {
      if (child.exitCode !== null) return child.exitCode
      const exited = new Promise((r) => child.once('exit', (code) => r(code)))
      child.kill('SIGTERM')
      return exited
    },
    /** SIGKILL: no chance to flush anything. */
    async kill () {
      const exited = new Promise((r) => child.once('exit', (_code, signal) => r(signal)))
      child.kill('SIGKILL')
      return exited
    }
  }
}

/** A stock y-websocket client on a fresh Y.Doc. */
export function yjsClient (server, name, opts = {}) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(typeof server === 'string' ? server : server.ws, name, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    ...opts
  })
  return {
    doc,
    provider,
    text: doc.getText('t'),
    /** Provider and document both: the awareness timer lives on the doc. */
    destroy () { provider.destroy(); doc.destroy() }
  }
}

export function synced (provider) {
  return new Promise((resolveSync) => {
    if (provider.synced) resolveSync()
    else provider.once('sync', () => resolveSync())
  })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls `check` until it returns true; throws with `describe()` on timeout. */
export async function waitFor (check, { timeout = 15000, describe = () => '' } = {}) {
  const deadline = Date.now() + timeout
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(25)
  }
  throw new Error(`timed out waiting: ${describe()}`)
}

/** Runs the Rust example client to completion; resolves with its final text. */
export function rustClient (url, name, edits, pauseMs, settleMs) {
  return new Promise((resolveText, reject) => {
    const child = spawn(yclientBin, [url, name, String(edits), String(pauseMs), String(settleMs)], {
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => { out += c })
    child.stderr.on('data', (c) => { err += c })
    child.once('exit', (code) => {
      if (code === 0) resolveText(JSON.parse(out).text)
      else reject(new Error(`yclient exited with ${code}: ${err}`))
    })
  })
}

export { Y, WebSocket }
