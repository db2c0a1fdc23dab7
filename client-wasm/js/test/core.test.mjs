// The WebAssembly core against plain yjs, with no server in between: a Y.Doc
// bridged to the wasm replica (as the SDK does) and a plain Y.Doc speaking
// y-protocols' sync, editing concurrently, with messages delayed, batched
// and cut by disconnections. Both must converge.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { loadCore } from '../dist/node.js'
import { Y } from './lib.mjs'

const core = await loadCore()

function rng (seed) {
  return () => {
    seed |= 0; seed = seed + 0x6D2B79F5 | 0
    let t = Math.imul(seed ^ seed >>> 15, 1 | seed)
    t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t
    return ((t ^ t >>> 14) >>> 0) / 4294967296
  }
}

/** The plain-yjs peer: answers sync frames as y-protocols does. */
function plainReceive (doc, frame) {
  const decoder = decoding.createDecoder(frame)
  const replies = []
  while (decoding.hasContent(decoder)) {
    const type = decoding.readVarUint(decoder)
    assert.equal(type, 0, 'only sync frames in this test')
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 0)
    syncProtocol.readSyncMessage(decoder, encoder, doc, 'wasm')
    if (encoding.length(encoder) > 1) replies.push(encoding.toUint8Array(encoder))
  }
  return replies
}

function randomEdit (random, text) {
  if (text.length > 0 && random() < 0.3) {
    const at = Math.floor(random() * text.length)
    text.delete(at, Math.min(text.length - at, 1 + Math.floor(random() * 3)))
  } else {
    const at = Math.floor(random() * (text.length + 1))
    text.insert(at, 'abcdefghij'.slice(0, 1 + Math.floor(random() * 4)))
  }
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`wasm core and plain yjs converge under concurrent edits (seed ${seed})`, () => {
    const random = rng(seed)
    const plain = new Y.Doc()
    const app = new Y.Doc()
    const replica = new core.Replica(app.clientID)
    const toWasm = []
    const toPlain = []
    let connected = false

    // The bridge, as the SDK's provider does it.
    app.on('update', (update, origin) => {
      if (origin === 'wasm') return
      const frame = replica.localUpdate(update)
      if (frame !== undefined) toPlain.push(frame)
    })
    plain.on('update', (update, origin) => {
      if (origin === 'wasm' || !connected) return
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, 0)
      syncProtocol.writeUpdate(encoder, update)
      toWasm.push(encoding.toUint8Array(encoder))
    })
    const deliverToWasm = (frame) => {
      const inbound = replica.receive(frame, Date.now())
      assert.equal(inbound.error, undefined)
      app.transact(() => { for (const u of inbound.updates) Y.applyUpdate(app, u, 'wasm') }, 'wasm')
      toPlain.push(...inbound.replies)
      inbound.free()
    }
    const connect = () => {
      connected = true
      toPlain.push(replica.open())
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, 0)
      syncProtocol.writeSyncStep1(encoder, plain)
      toWasm.push(encoding.toUint8Array(encoder))
    }
    const disconnect = () => {
      connected = false
      toWasm.length = 0
      toPlain.length = 0
      replica.close()
    }
    const pump = (limit) => {
      let n = 0
      while ((toWasm.length > 0 || toPlain.length > 0) && n++ < limit) {
        if (toWasm.length > 0 && (toPlain.length === 0 || random() < 0.5)) deliverToWasm(toWasm.shift())
        else for (const reply of plainReceive(plain, toPlain.shift())) toWasm.push(reply)
      }
    }

    connect()
    for (let step = 0; step < 400; step++) {
      const r = random()
      if (r < 0.4) randomEdit(random, app.getText('t'))
      else if (r < 0.8) randomEdit(random, plain.getText('t'))
      else if (r < 0.95) pump(1 + Math.floor(random() * 6))
      else if (connected) disconnect()
      else connect()
    }
    if (!connected) connect()
    pump(Infinity)

    const text = plain.getText('t').toString()
    assert.ok(text.length > 0)
    assert.equal(app.getText('t').toString(), text, 'the app Y.Doc converged')
    assert.deepEqual(JSON.parse(replica.toJSON()), { t: text }, 'the wasm replica converged')
    assert.equal(replica.pending, 0)
    replica.free()
  })
}

test('the core renders what editors store: rich text, maps and lists', () => {
  const app = new Y.Doc()
  const replica = new core.Replica(app.clientID)
  app.on('update', (u) => replica.localUpdate(u))
  const fragment = app.getXmlFragment('prosemirror')
  const paragraph = new Y.XmlElement('paragraph')
  fragment.insert(0, [paragraph])
  paragraph.insert(0, [new Y.XmlText('hello')])
  app.getMap('meta').set('title', 'Notes')
  app.getArray('tags').push(['a', 'b'])
  const json = JSON.parse(replica.toJSON())
  assert.equal(json.prosemirror, '<paragraph>hello</paragraph>')
  assert.deepEqual(json.meta, { title: 'Notes' })
  assert.deepEqual(json.tags, ['a', 'b'])
  // Offline edits merge into one update computed from the state vector.
  assert.equal(replica.pending, 4)
  const merged = replica.pendingUpdate()
  const copy = new Y.Doc()
  Y.applyUpdate(copy, merged)
  assert.equal(copy.getMap('meta').get('title'), 'Notes')
  assert.deepEqual(Y.encodeStateVector(copy), replica.stateVector())
  replica.free()
})
