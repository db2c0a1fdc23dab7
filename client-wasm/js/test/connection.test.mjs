// Connection policy against a scripted WebSocket endpoint: the real server
// never refuses a client for good, so close codes 4400-4499 and token
// handling are checked against a `ws` server that closes connections the
// way an authenticating server would.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocketServer } from 'ws'
import { createClient, CollabError } from '../dist/node.js'
import { waitFor, sleep, jwt, WebSocket } from './lib.mjs'

/** A loopback endpoint that records each connection's URL and answers with `onConnection`. */
async function endpoint (onConnection) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  const connections = []
  wss.on('connection', (socket, req) => {
    const url = new URL(req.url, 'http://x')
    connections.push({ url, at: Date.now() })
    onConnection(socket, url, connections.length)
  })
  return {
    url: `http://127.0.0.1:${wss.address().port}`,
    connections,
    close: () => new Promise((resolve) => {
      for (const c of wss.clients) c.terminate()
      wss.close(resolve)
    })
  }
}

test('a close code in 4400-4499 stops the provider with a fatal error', async (t) => {
  const ep = await endpoint((socket) => socket.close(4403, 'permission revoked'))
  t.after(() => ep.close())
  const c = await createClient({ url: ep.url, WebSocket, offline: false, reconnect: { minDelayMs: 20, maxDelayMs: 50 } })
  t.after(() => c.close())
  const p = c.open('acme/doc')
  const errors = []
  p.on('error', (e) => errors.push(e))
  await waitFor(() => p.status === 'stopped' && errors.length === 1)
  assert.ok(errors[0] instanceof CollabError)
  assert.equal(errors[0].code, 'rejected')
  assert.equal(errors[0].fatal, true)
  assert.equal(errors[0].status, 4403)
  assert.match(errors[0].message, /permission revoked/)
  await sleep(300)
  assert.equal(ep.connections.length, 1, 'no reconnection')
  // The application may decide to try again.
  p.connect()
  await waitFor(() => ep.connections.length === 2)
})

test('other close codes reconnect with exponential backoff and jitter', async (t) => {
  const ep = await endpoint((socket) => socket.close(1011, 'storage unavailable'))
  t.after(() => ep.close())
  const c = await createClient({
    url: ep.url, WebSocket, offline: false, reconnect: { minDelayMs: 40, maxDelayMs: 640, jitter: 0.5 }
  })
  t.after(() => c.close())
  const p = c.open('acme/doc')
  const statuses = []
  p.on('status', (s) => statuses.push(s))
  await waitFor(() => ep.connections.length >= 6, { timeout: 10000 })
  p.disconnect()
  const gaps = ep.connections.slice(1, 6).map((c, i) => c.at - ep.connections[i].at)
  // Nominal delays 40, 80, 160, 320, 640 ms; each lies in [half, all] of it
  // (plus the time a connection takes).
  const nominal = [40, 80, 160, 320, 640]
  gaps.forEach((gap, i) => {
    assert.ok(gap >= nominal[i] / 2 - 5 && gap <= nominal[i] + 400, `retry ${i}: ${gap} ms for a nominal ${nominal[i]} ms`)
  })
  assert.ok(gaps[4] > gaps[0], `delays grow: ${gaps}`)
  assert.ok(statuses.includes('offline'))
  assert.equal(p.status, 'stopped')
})

test('the token travels in the query and is refreshed before it expires', async (t) => {
  const ep = await endpoint(() => {})
  t.after(() => ep.close())
  let issued = 0
  const getToken = () => jwt({ sub: 'ada', n: ++issued, exp: Math.floor(Date.now() / 1000) + 3 })
  const c = await createClient({
    url: ep.url, WebSocket, offline: false, getToken, refreshMarginMs: 2000, reconnect: { minDelayMs: 20, maxDelayMs: 50 }
  })
  t.after(() => c.close())
  const tokens = []
  c.on('token', (tok) => tokens.push(tok))
  const p = c.open('acme/doc')
  await waitFor(() => ep.connections.length === 1)
  const first = ep.connections[0].url.searchParams.get('token')
  assert.equal(first, tokens[0])
  assert.equal(ep.connections[0].url.pathname, '/ws/acme/doc')
  // exp in 3 s, margin 2 s: a new token about 1 s later, without a reconnect.
  await waitFor(() => issued >= 2, { timeout: 4000 })
  assert.equal(ep.connections.length, 1)
  // The next connection uses the fresh token.
  p.disconnect()
  p.connect()
  await waitFor(() => ep.connections.length === 2)
  const second = ep.connections[1].url.searchParams.get('token')
  assert.notEqual(second, first)
  assert.equal(second, tokens.at(-1))
})

test('a fixed token is sent as is', async (t) => {
  const ep = await endpoint(() => {})
  t.after(() => ep.close())
  const c = await createClient({ url: ep.url, WebSocket, offline: false, token: 'secret' })
  t.after(() => c.close())
  c.open('team/x', { readOnly: true, params: { tab: '1' } })
  await waitFor(() => ep.connections.length === 1)
  const params = ep.connections[0].url.searchParams
  assert.equal(params.get('token'), 'secret')
  assert.equal(params.get('access'), 'read')
  assert.equal(params.get('tab'), '1')
})

test('a silent connection is dropped and reopened', async (t) => {
  const ep = await endpoint(() => {})
  t.after(() => ep.close())
  const c = await createClient({
    url: ep.url, WebSocket, offline: false, livenessTimeoutMs: 300, reconnect: { minDelayMs: 20, maxDelayMs: 50 }
  })
  t.after(() => c.close())
  c.open('acme/doc')
  await waitFor(() => ep.connections.length >= 2, { timeout: 3000 })
})
