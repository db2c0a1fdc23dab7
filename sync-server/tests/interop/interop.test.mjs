// Stock Yjs clients from npm (yjs, y-websocket, ws) and the Rust client,
// editing one document concurrently through the real server binary.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  freePort, rustClient, sleep, startServer, synced, waitFor, yjsClient, WebSocket, Y
} from './lib.mjs'

const markers = (prefix, n) => Array.from({ length: n }, (_, i) => `<${prefix}:${i}>`)

/** A random position between markers (never inside one). */
function boundary (text) {
  const s = text.toString()
  const spots = [0]
  for (let i = 0; i < s.length; i++) if (s[i] === '>') spots.push(i + 1)
  return spots[Math.floor(Math.random() * spots.length)]
}

/** Inserts `n` markers at random boundaries with random pauses. Concurrent
 * inserts anchor to a '>' on their left, so markers never interleave. */
async function typeMarkers (client, prefix, n) {
  for (const marker of markers(prefix, n)) {
    client.text.insert(boundary(client.text), marker)
    await sleep(Math.random() * 15)
  }
}

test('three JS clients and a Rust client converge; state survives a restart', async (t) => {
  const port = await freePort()
  let server = await startServer({ port })
  t.after(() => server.stop())
  const doc = 'interop/concurrent'
  const clients = ['a', 'b', 'c'].map(() => yjsClient(server, doc))
  t.after(() => clients.forEach((c) => c.destroy()))
  await Promise.all(clients.map((c) => synced(c.provider)))

  const rust = rustClient(`${server.ws}/${doc}`, 'rust', 40, 10, 3000)
  await Promise.all(clients.map((c, i) => typeMarkers(c, `js${i}`, 40)))
  const rustText = await rust

  const expected = [...markers('js0', 40), ...markers('js1', 40), ...markers('js2', 40), ...markers('rust', 40)]
  const complete = (s) => expected.every((m) => s.includes(m))
  await waitFor(() => clients.every((c) => complete(c.text.toString())), {
    describe: () => clients.map((c) => c.text.toString().length).join(', ')
  })
  const final = clients[0].text.toString()
  for (const c of clients) assert.equal(c.text.toString(), final, 'JS clients converge')
  assert.equal(rustText, final, 'the Rust client converged to the same text')
  assert.equal(final.length, expected.join('').length, 'no duplicated or lost characters')

  // Restart on the same address: providers reconnect on their own.
  assert.equal(await server.stop(), 0, 'SIGTERM flushes and exits 0')
  server = await startServer({ port, dataDir: server.dataDir })
  const fresh = yjsClient(server, doc)
  t.after(() => fresh.destroy())
  await synced(fresh.provider)
  assert.equal(fresh.text.toString(), final, 'a fresh client after the restart sees everything')

  // The reconnected clients keep collaborating.
  await waitFor(() => clients.every((c) => c.provider.synced), { describe: () => 'reconnect' })
  clients[1].text.insert(0, '[after restart]')
  await waitFor(() => [...clients, fresh].every((c) => c.text.toString().startsWith('[after restart]')))
})

test('a client sending malformed frames is closed with a reason; the others lose nothing', async (t) => {
  const server = await startServer()
  t.after(() => server.stop())
  const doc = 'interop/attacked'
  const clients = ['a', 'b', 'c'].map(() => yjsClient(server, doc))
  t.after(() => clients.forEach((c) => c.destroy()))
  await Promise.all(clients.map((c) => synced(c.provider)))

  const typing = Promise.all(clients.map((c, i) => typeMarkers(c, `k${i}`, 30)))

  const attacker = new WebSocket(`${server.ws}/${doc}`)
  const closed = new Promise((resolveClose) => attacker.on('close', (code, reason) => resolveClose({ code, reason: reason.toString() })))
  await new Promise((r) => attacker.on('open', r))
  // A sync update whose length prefix promises more bytes than follow.
  attacker.send(Uint8Array.from([0, 2, 100, 1, 2, 3]))
  const { code, reason } = await closed
  assert.equal(code, 1002)
  assert.match(reason, /^malformed frame/)

  // A second attacker: an update that is not a valid Yjs update.
  const second = new WebSocket(`${server.ws}/${doc}`)
  const secondClosed = new Promise((resolveClose) => second.on('close', (c, r) => resolveClose({ code: c, reason: r.toString() })))
  await new Promise((r) => second.on('open', r))
  second.send(Uint8Array.from([0, 2, 7, 1, 5, 1, 0, 200, 200, 200]))
  const rejected = await secondClosed
  assert.equal(rejected.code, 1007)
  assert.match(rejected.reason, /malformed v1 update/)

  await typing
  const expected = [0, 1, 2].flatMap((i) => markers(`k${i}`, 30))
  await waitFor(() => clients.every((c) => expected.every((m) => c.text.toString().includes(m))))
  const final = clients[0].text.toString()
  for (const c of clients) assert.equal(c.text.toString(), final)

  const stored = await (await fetch(`${server.http}/api/docs/${doc}`)).json()
  assert.equal(stored.t, final, 'the stored document holds every edit')
  const metrics = await (await fetch(`${server.http}/metrics`)).text()
  assert.match(metrics, /sync_disconnects_total\{reason="bad_frame"\} 1/)
  assert.match(metrics, /sync_disconnects_total\{reason="invalid_update"\} 1/)
})

test('awareness from stock clients: others see it, and see it go when a client leaves', async (t) => {
  const server = await startServer()
  t.after(() => server.stop())
  const doc = 'interop/presence'
  const a = yjsClient(server, doc)
  const b = yjsClient(server, doc)
  t.after(() => [a, b].forEach((c) => c.destroy()))
  a.provider.awareness.setLocalStateField('user', { name: 'Ada' })
  await Promise.all([synced(a.provider), synced(b.provider)])
  await waitFor(() => b.provider.awareness.getStates().get(a.doc.clientID)?.user?.name === 'Ada')

  // Drop the socket without a goodbye: the server must announce the removal.
  a.provider.shouldConnect = false
  a.provider.ws.terminate()
  await waitFor(() => !b.provider.awareness.getStates().has(a.doc.clientID), {
    timeout: 5000, describe: () => 'Ada removed well before the 30 s timeout'
  })
})

test('a fresh stock client joins a 20 MB document through chunked sync frames', async (t) => {
  const server = await startServer()
  t.after(() => server.stop())
  const doc = 'interop/large'

  // Seed over HTTP in four 5 MB updates (each under the update limit).
  const author = new Y.Doc()
  const text = author.getText('t')
  const chunk = 'x'.repeat(5 << 20)
  for (let i = 0; i < 4; i++) {
    const before = Y.encodeStateVector(author)
    text.insert(text.length, `${i}:` + chunk)
    const res = await fetch(`${server.http}/api/docs/${doc}/update`, {
      method: 'POST',
      body: Y.encodeStateAsUpdate(author, before)
    })
    assert.equal(res.status, 204, await res.text())
  }
  const expected = text.length
  author.destroy()

  // A stock provider whose socket records the size of every frame.
  const frames = []
  class Recording extends WebSocket {
    constructor (...args) {
      super(...args)
      this.addEventListener('message', (event) => frames.push(event.data.byteLength ?? event.data.length))
    }
  }
  const client = yjsClient(server, doc, { WebSocketPolyfill: Recording })
  t.after(() => client.destroy())
  await synced(client.provider)
  assert.equal(client.text.length, expected, 'the whole document arrived before sync was reported')
  assert.ok(client.text.toString().startsWith('0:xxx'))
  const largest = Math.max(...frames)
  assert.ok(frames.length > 20, `the state came in many frames (${frames.length})`)
  assert.ok(largest <= 1.5 * (1 << 20), `no frame over 1.5 MiB (largest ${largest})`)
})
