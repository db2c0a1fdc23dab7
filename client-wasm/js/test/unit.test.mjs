// Pure functions of the SDK: backoff, tokens, addresses.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backoffDelay, tokenExpiry } from '../dist/node.js'
import { TokenKeeper } from '../dist/token.js'
import { endpoints, socketUrl, restPath } from '../dist/urls.js'
import { jwt } from './lib.mjs'

test('backoff grows exponentially up to its cap, with bounded jitter', () => {
  const opts = { minDelayMs: 100, maxDelayMs: 2000, factor: 2, jitter: 0.5 }
  assert.equal(backoffDelay(0, opts, () => 1), 100)
  assert.equal(backoffDelay(0, opts, () => 0), 50)
  assert.equal(backoffDelay(3, opts, () => 1), 800)
  assert.equal(backoffDelay(10, opts, () => 1), 2000, 'capped')
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(4, opts)
    assert.ok(d >= 800 && d <= 1600, `${d} within [800, 1600]`)
  }
  // Jitter spreads clients that lost the same server.
  const spread = new Set(Array.from({ length: 20 }, () => Math.round(backoffDelay(2, opts))))
  assert.ok(spread.size > 5)
})

test('a JWT exp is read; other tokens have none', () => {
  assert.equal(tokenExpiry(jwt({ sub: 'ada', exp: 1700000000 })), 1700000000000)
  assert.equal(tokenExpiry(jwt({ sub: 'ada' })), undefined)
  assert.equal(tokenExpiry('opaque-token'), undefined)
  assert.equal(tokenExpiry('a.%%%.c'), undefined)
})

test('tokens are refreshed a margin before they expire', async () => {
  let now = 1_000_000
  let issued = 0
  const keeper = new TokenKeeper({
    getToken: () => jwt({ n: ++issued, exp: Math.floor((now + 120_000) / 1000) }),
    refreshMarginMs: 60_000
  }, () => {}, () => now)
  const first = await keeper.current()
  assert.equal(issued, 1)
  assert.equal(await keeper.current(), first, 'still fresh')
  assert.equal(keeper.refreshInMs(), 60_000)
  now += 61_000
  const second = await keeper.current()
  assert.equal(issued, 2, 'within the margin: refreshed')
  assert.notEqual(second, first)
  // Concurrent callers share one request.
  now += 200_000
  await Promise.all([keeper.current(), keeper.current(), keeper.current()])
  assert.equal(issued, 3)
})

test('addresses: one base URL gives the WebSocket and REST endpoints', () => {
  assert.deepEqual(endpoints('http://127.0.0.1:8787'), { ws: 'ws://127.0.0.1:8787', http: 'http://127.0.0.1:8787' })
  assert.deepEqual(endpoints('wss://collab.example/sync/'), { ws: 'wss://collab.example/sync', http: 'https://collab.example/sync' })
  assert.deepEqual(endpoints('http://a:1', 'https://b/proxy/'), { ws: 'ws://a:1', http: 'https://b/proxy' })
  assert.equal(socketUrl('ws://h', 'acme/road map', { token: 'a b', access: 'read' }),
    'ws://h/ws/acme/road%20map?token=a+b&access=read')
  assert.equal(restPath('team/update'), 'team%2Fupdate')
})
