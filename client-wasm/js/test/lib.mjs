// Test helpers: the real server binary, stock Yjs clients, waits.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

export const root = resolve(import.meta.dirname, '../../..')
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
export const serverBin = process.env.SYNC_SERVER_BIN ?? join(targetDir, 'debug', 'sync-server')

/** Starts the server binary on a random loopback port; resolves once it listens. */
export async function startServer ({ dataDir = mkdtempSync(join(tmpdir(), 'sdk-')), port = 0, args = [] } = {}) {
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
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${log}`)) })
  })
  return {
    child,
    address,
    dataDir,
    port: Number(address.split(':')[1]),
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    log: () => log,
    /** SIGTERM and wait: the server flushes and exits. */
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      const exited = new Promise((r) => child.once('exit', (code) => r(code)))
      child.kill('SIGTERM')
      return exited
    }
  }
}

/** A stock y-websocket client on a fresh Y.Doc. */
export function yjsClient (server, name) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(server.ws, name, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  return {
    doc,
    provider,
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
    await sleep(20)
  }
  throw new Error(`timed out waiting: ${await describe()}`)
}

/** A WebSocket class that records what the SDK sends, for checking the wire. */
export function recordingWebSocket (sent) {
  return class extends WebSocket {
    send (data, ...rest) {
      sent.push(new Uint8Array(data))
      return super.send(data, ...rest)
    }
  }
}

/** A JWT (unsigned: the client only reads `exp`) expiring in `seconds`. */
export function jwt (claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.sig`
}

export { Y, WebSocket }
