// The SDK against the real server: stock y-websocket clients on the same
// documents, offline edits (in memory and persisted), restarts, presence,
// read-only access, the document API and versions.
import { test } from 'node:test'
import { createServer } from 'node:http'
import assert from 'node:assert/strict'
import { IDBFactory } from 'fake-indexeddb'
import {
  createClient, indexedDbStore, memoryStore, CollabError, VersionsNotSupportedError
} from '../dist/node.js'
import { startServer, yjsClient, synced, waitFor, sleep, recordingWebSocket, Y, WebSocket } from './lib.mjs'

const server = await startServer()
test.after(() => server.stop())

const fast = { minDelayMs: 50, maxDelayMs: 400 }

async function client (options = {}) {
  return createClient({ url: server.http, WebSocket, offline: false, reconnect: fast, ...options })
}

async function restText (name, root = 't') {
  const res = await fetch(`${server.http}/api/docs/${encodeURIComponent(name)}`)
  if (res.status === 404) return undefined
  return (await res.json())[root]
}

test('two SDK clients and a stock y-websocket client converge, and see each other', async (t) => {
  const name = 'sdk/converge'
  const a = await client()
  const b = await client()
  t.after(() => Promise.all([a.close(), b.close()]))
  const pa = a.open(name, { user: { name: 'Ada', color: '#f00' } })
  const pb = b.open(name, { user: { name: 'Bob', color: '#00f' } })
  const stock = yjsClient(server, name)
  t.after(() => stock.destroy())
  const statuses = []
  pa.on('status', (s) => statuses.push(s))
  await Promise.all([pa.whenSynced(), pb.whenSynced(), synced(stock.provider)])
  assert.equal(pa.status, 'synced')

  pa.doc.getText('t').insert(0, 'Hello from A. ')
  pb.doc.getText('t').insert(0, 'Hello from B. ')
  stock.doc.getText('t').insert(0, 'Hello from yjs. ')
  const same = () => {
    const x = pa.doc.getText('t').toString()
    return x.length === 'Hello from A. Hello from B. Hello from yjs. '.length &&
      x === pb.doc.getText('t').toString() && x === stock.doc.getText('t').toString()
  }
  await waitFor(same, { describe: () => `${pa.doc.getText('t')} | ${pb.doc.getText('t')} | ${stock.doc.getText('t')}` })
  await waitFor(async () => (await restText(name)) === pa.doc.getText('t').toString())

  // Presence: each sees the other by name.
  await waitFor(() => pa.presence.peers().some((p) => p.user?.name === 'Bob'), { describe: () => 'A sees Bob' })
  await waitFor(() => pb.presence.peers().some((p) => p.user?.name === 'Ada'), { describe: () => 'B sees Ada' })
  assert.equal(pa.presence.peers()[0].isLocal, true)
  // A selection shared through presence resolves on the other side.
  pa.presence.setSelection(pa.doc, 't', 0, 5)
  await waitFor(() => {
    const ada = pb.presence.peers().find((p) => p.user?.name === 'Ada')
    const sel = ada && pb.presence.selectionOf(pb.doc, ada)
    return sel?.anchor === 0 && sel?.head === 5
  }, { describe: () => 'B sees A\'s selection' })

  // Leaving removes presence at once, not after 30 s.
  await pb.destroy()
  await waitFor(() => !pa.presence.peers().some((p) => p.user?.name === 'Bob'), { describe: () => 'Bob gone' })
  assert.deepEqual(statuses.slice(0, 3), ['connecting', 'connected', 'synced'])
})

test('edits made offline are counted, then merged into the handshake when the connection returns', async (t) => {
  const name = 'sdk/offline'
  const c = await client()
  t.after(() => c.close())
  const stock = yjsClient(server, name)
  t.after(() => stock.destroy())
  const p = c.open(name)
  await p.whenSynced()
  const pendings = []
  p.on('pending', (n) => pendings.push(n))

  p.disconnect()
  assert.equal(p.status, 'stopped')
  const text = p.doc.getText('t')
  for (const ch of 'offline') text.insert(text.length, ch)
  stock.doc.getText('t').insert(0, 'online ')
  assert.equal(p.pending, 7)
  assert.deepEqual(pendings, [1, 2, 3, 4, 5, 6, 7])
  await sleep(100)
  assert.equal(stock.doc.getText('t').toString(), 'online ', 'nothing leaked while offline')

  p.connect()
  await p.whenSynced()
  await waitFor(() => stock.doc.getText('t').toString() === text.toString() && text.length === 14,
    { describe: () => `${text} vs ${stock.doc.getText('t')}` })
  assert.equal(p.pending, 0)
  assert.equal(pendings.at(-1), 0)
})

test('offline edits persisted in IndexedDB survive a restart of the page and sync later', async (t) => {
  const name = 'sdk/persisted'
  const indexedDB = new IDBFactory()
  const offline = indexedDbStore({ indexedDB })
  const c = await client({ offline })
  t.after(() => c.close())

  const errors = []
  // First page: synced once, then offline edits.
  const first = c.open(name)
  first.on('error', (e) => errors.push(e))
  await first.whenSynced()
  first.doc.getText('t').insert(0, 'seen by the server. ')
  await waitFor(async () => (await restText(name)) === 'seen by the server. ')
  first.disconnect()
  first.doc.getText('t').insert(0, 'typed offline. ')
  first.document.map('meta').set('title', 'Draft')
  assert.equal(first.pending, 2)
  await first.destroy()

  // The "reloaded" page, still offline: everything is back, pending too.
  const second = c.open(name, { connect: false })
  second.on('error', (e) => errors.push(e))
  await second.loaded
  assert.equal(second.doc.getText('t').toString(), 'typed offline. seen by the server. ')
  assert.equal(second.doc.getMap('meta').get('title'), 'Draft')
  assert.equal(second.pending, 2)
  assert.equal(await restText(name), 'seen by the server. ')

  second.connect()
  await second.whenSynced()
  await waitFor(async () => (await restText(name)) === 'typed offline. seen by the server. ')
  assert.equal(second.pending, 0)
  await second.destroy()

  // Many edits: the store compacts (one state written by the core) and
  // still loads the same content.
  const third = c.open(name, { connect: false })
  await third.loaded
  const text = third.doc.getText('t')
  for (let i = 0; i < 1200; i++) text.insert(text.length, String(i % 10))
  const expected = text.toString()
  await third.destroy()
  const fourth = c.open(name, { connect: false })
  await fourth.loaded
  assert.equal(fourth.doc.getText('t').toString(), expected)
  assert.equal(fourth.pending, 1200)
  await fourth.destroy()
  assert.deepEqual(errors, [])
})

test('the provider reconnects with backoff after the server restarts, and nothing is lost', async (t) => {
  const own = await startServer()
  t.after(() => own.stop())
  const name = 'sdk/restart'
  const c = await createClient({ url: own.http, WebSocket, offline: memoryStore(), reconnect: fast })
  t.after(() => c.close())
  const p = c.open(name)
  await p.whenSynced()
  p.doc.getText('t').insert(0, 'before. ')
  await sleep(200)

  const statuses = []
  p.on('status', (s) => statuses.push(s))
  await own.stop()
  await waitFor(() => p.status === 'offline' || p.status === 'connecting')
  p.doc.getText('t').insert(8, 'during. ')
  await waitFor(() => statuses.filter((s) => s === 'connecting').length >= 2, { describe: () => statuses.join() })
  assert.ok(p.pending >= 1)

  const again = await startServer({ dataDir: own.dataDir, port: own.port })
  t.after(() => again.stop())
  await waitFor(() => p.synced, { describe: () => statuses.join() })
  assert.equal(p.pending, 0)
  const res = await fetch(`${again.http}/api/docs/${encodeURIComponent(name)}`)
  assert.equal((await res.json()).t, 'before. during. ')
})

test('read-only access: edits are refused with a reason, presence still works', async (t) => {
  const name = 'sdk/read-only'
  const c = await client()
  t.after(() => c.close())
  const writer = c.open(name, { user: { name: 'Writer' } })
  const reader = c.open(name, { readOnly: true, user: { name: 'Reader' } })
  await writer.whenSynced()
  writer.doc.getText('t').insert(0, 'by the writer')
  await waitFor(() => reader.doc.getText('t').toString() === 'by the writer')
  const errors = []
  reader.on('error', (e) => errors.push(e))
  reader.doc.getText('t').insert(0, 'nope ')
  await waitFor(() => errors.length > 0)
  assert.ok(errors[0] instanceof CollabError)
  assert.equal(errors[0].code, 'permission-denied')
  assert.match(errors[0].message, /read-only/)
  assert.equal(errors[0].fatal, false)
  await waitFor(() => writer.presence.peers().some((p) => p.user?.name === 'Reader'))
  assert.equal(await restText(name), 'by the writer')
})

test('the document API: texts, maps and lists, JSON rendered by the core', async (t) => {
  const name = 'sdk/document-api'
  const c = await client()
  t.after(() => c.close())
  const p = c.open(name)
  const stock = yjsClient(server, name)
  t.after(() => stock.destroy())
  await Promise.all([p.whenSynced(), synced(stock.provider)])
  const doc = p.document
  const seen = []
  const off = doc.text('notes').observe((text, source) => seen.push([text, source]))
  doc.transact(() => {
    doc.text('notes').append('hello world')
    doc.map('meta').set('title', 'Minutes')
    doc.list('tags').push('a', 'b')
  })
  doc.text('notes').set('hello brave world')
  assert.equal(doc.text('notes').toString(), 'hello brave world')
  await waitFor(() => stock.doc.getText('notes').toString() === 'hello brave world')
  stock.doc.getText('notes').insert(0, '> ')
  await waitFor(() => doc.text('notes').toString() === '> hello brave world', {
    describe: () => `sdk: ${doc.text('notes')} stock: ${stock.doc.getText('notes')}`
  })
  assert.deepEqual(seen.map(([, s]) => s), ['local', 'local', 'remote'])
  off()
  assert.deepEqual(doc.toJSON(), { notes: '> hello brave world', meta: { title: 'Minutes' }, tags: ['a', 'b'] })
  await waitFor(() => stock.doc.getArray('tags').length === 2 && stock.doc.getMap('meta').get('title') === 'Minutes')
  assert.deepEqual(await c.read(name), doc.toJSON())
})

test('the bridge sends each local edit once and never echoes remote ones', async (t) => {
  const name = 'sdk/no-echo'
  const sent = []
  const c = await client({ WebSocket: recordingWebSocket(sent) })
  t.after(() => c.close())
  const p = c.open(name)
  const stock = yjsClient(server, name)
  t.after(() => stock.destroy())
  await Promise.all([p.whenSynced(), synced(stock.provider)])
  const updatesSent = () => sent.filter((f) => f[0] === 0 && f[1] === 2).length
  const before = updatesSent()
  for (let i = 0; i < 20; i++) stock.doc.getText('t').insert(0, 'r')
  await waitFor(() => p.doc.getText('t').length === 20)
  await sleep(200)
  assert.equal(updatesSent(), before, 'remote edits are not sent back')
  for (let i = 0; i < 5; i++) p.doc.getText('t').insert(0, 'l')
  await waitFor(() => stock.doc.getText('t').length === 25)
  assert.equal(updatesSent(), before + 5, 'one frame per local edit')
})

test('versions: save, list, view and restore through the server history API; edits reach every client', async (t) => {
  const name = 'sdk/versions'
  const c = await client()
  t.after(() => c.close())
  const p = c.open(name)
  const stock = yjsClient(server, name)
  t.after(() => stock.destroy())
  await Promise.all([p.whenSynced(), synced(stock.provider)])
  assert.equal(await p.versions.supported(), true)

  p.doc.getText('t').insert(0, 'first draft')
  await waitFor(async () => (await restText(name)) === 'first draft')
  const saved = await p.versions.save('draft 1', 'before the review')
  assert.equal(saved.label, 'draft 1')
  assert.equal(saved.kind, 'named')
  assert.equal(typeof saved.createdAt, 'number')

  p.doc.getText('t').delete(0, 5)
  p.doc.getText('t').insert(0, 'final')
  await waitFor(() => stock.doc.getText('t').toString() === 'final draft')

  const list = await p.versions.list()
  const named = list.find((v) => v.id === saved.id)
  assert.ok(named, `the saved version is listed: ${JSON.stringify(list)}`)
  assert.equal(named.description, 'before the review')
  const version = await p.versions.get(saved.id)
  assert.deepEqual(version.content, { t: 'first draft' })

  await p.versions.restore(saved.id)
  // The restore is an edit: both the SDK client and the stock client get it.
  await waitFor(() => p.doc.getText('t').toString() === 'first draft' &&
    stock.doc.getText('t').toString() === 'first draft',
  { describe: () => `${p.doc.getText('t')} | ${stock.doc.getText('t')}` })
  assert.equal(await restText(name), 'first draft')

  await assert.rejects(p.versions.get('999999'), (e) => {
    assert.ok(e instanceof CollabError)
    assert.equal(e.code, 'version-not-found')
    assert.match(e.message, /has no version 999999/)
    return true
  })
})

test('versions: a server without the history API is reported as such, and nothing is POSTed', async (t) => {
  // A plain HTTP server that knows no /versions route (like the y-websocket
  // reference server, which has no REST API at all); it records requests.
  const seen = []
  const bare = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`)
    res.writeHead(404).end('not found')
  })
  await new Promise((r) => bare.listen(0, '127.0.0.1', r))
  t.after(() => bare.close())
  const c = await createClient({
    url: `http://127.0.0.1:${bare.address().port}`, WebSocket, offline: false, reconnect: fast
  })
  t.after(() => c.close())
  const versions = c.versions('sdk/versions-bare')

  await assert.rejects(versions.list(), (e) => {
    assert.ok(e instanceof VersionsNotSupportedError)
    assert.equal(e.code, 'versions-not-supported')
    assert.match(e.message, /not supported by this server/)
    return true
  })
  assert.equal(await versions.supported(), false)
  await assert.rejects(versions.get('1'), VersionsNotSupportedError)
  await assert.rejects(versions.restore('1'), VersionsNotSupportedError)
  await assert.rejects(versions.save('v'), VersionsNotSupportedError)
  assert.ok(seen.length > 0, 'the server was asked')
  assert.deepEqual(seen.filter((r) => r.startsWith('POST')), [], 'nothing is POSTed')
})
