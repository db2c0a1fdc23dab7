// The provider: one document, one connection, a Y.Doc for the application.
//
// The Y.Doc and the core's replica are kept equal in both directions:
// - an update of the Y.Doc from anything but this provider is a local edit:
//   the replica applies it and returns the frame to send (or counts it as
//   pending while offline);
// - a frame from the server goes to the replica, which applies what it
//   carries and hands back the updates for the Y.Doc; they are applied with
//   this provider as the origin, so they are never sent back (no echo).
// Nothing reaches the Y.Doc that the replica did not accept, so a replica
// that fails can always be rebuilt from the Y.Doc.
import * as Y from 'yjs'
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import { backoffDelay, type BackoffOptions } from './backoff.js'
import { core, type Replica } from './core.js'
import { CollabDocument } from './document.js'
import { CollabError } from './errors.js'
import { Emitter } from './events.js'
import type { OfflineStore, OfflineStoreFactory } from './offline.js'
import { Presence, type PresenceUser } from './presence.js'
import { socketUrl } from './urls.js'
import { Versions } from './versions.js'
import type { TokenKeeper } from './token.js'

/** Where the provider is. */
export type Status =
  /** Opening a connection (or waiting for a token). */
  | 'connecting'
  /** Connected; the handshake is under way. */
  | 'connected'
  /** Connected and holding everything the server holds; edits go out at once. */
  | 'synced'
  /** No connection; edits are kept (and persisted) and a retry is scheduled. */
  | 'offline'
  /** Not connecting: disconnected by the application, or refused by the server (4400-4499). */
  | 'stopped'

/** Events of a provider. */
export interface ProviderEvents {
  [event: string]: unknown[]
  /** The status changed. */
  status: [Status]
  /** Became synced, or stopped being. */
  synced: [boolean]
  /** The number of local edits the server has not been sent changed. */
  pending: [number]
  /** Something went wrong; `fatal` errors stop the provider. */
  error: [CollabError]
  /** Offline state was restored from the store (possibly nothing). */
  loaded: []
  /** `false` while writes to the offline store are under way, `true` once all are durable. */
  stored: [boolean]
}

/** The minimal WebSocket this provider needs (the browser's, or `ws` in Node). */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number, reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string) => WebSocketLike

/** Options of one document's provider. */
export interface ProviderOptions {
  /** The Y.Doc to collaborate on; a new one by default. */
  doc?: Y.Doc
  /** The awareness to share; a new one on the doc by default. */
  awareness?: Awareness
  /** Connect at once (after restoring offline edits). Default true. */
  connect?: boolean
  /** How the local user appears to others. */
  user?: PresenceUser
  /** Join read-only (`?access=read`): presence works, writes are refused. */
  readOnly?: boolean
  /** Extra query parameters of the WebSocket URL. */
  params?: Record<string, string>
  /** Offline store of this document; the client's by default, `false` for none. */
  offline?: OfflineStoreFactory | false
}

/** What the client hands each provider. */
export interface ProviderContext {
  ws: string
  WebSocket: WebSocketConstructor
  tokens: TokenKeeper
  reconnect: BackoffOptions
  livenessTimeoutMs: number
  offline: OfflineStoreFactory | undefined
  versions: (document: string) => Versions
  /** Called once the provider is destroyed. */
  released: (provider: CollabProvider) => void
}

const OPEN = 1
/** Close codes this provider uses when it drops a connection itself. */
const CLOSE_PROTOCOL = 3002
const CLOSE_SILENT = 3003
const CLOSE_OFFLINE = 3004
/** Compact the offline store once it holds this many updates. */
const COMPACT_AFTER = 500
/** How often remote presence is checked for expiry, as in y-protocols. */
const PRESENCE_CHECK_MS = 3000

function isBrowserOffline (): boolean {
  return typeof navigator !== 'undefined' && navigator.onLine === false
}

/** One document kept in sync with the server, offline edits included. */
export class CollabProvider extends Emitter<ProviderEvents> {
  /** The Yjs document; bind editors to it. */
  readonly doc: Y.Doc
  /** The y-protocols awareness; editor cursor plugins read it. */
  readonly awareness: Awareness
  /** Who is here, cursors and selections. */
  readonly presence: Presence
  /** The small document API over `doc`. */
  readonly document: CollabDocument
  /** Version history of this document. */
  readonly versions: Versions
  /** Resolves once offline state is restored (it never rejects). */
  readonly loaded: Promise<void>

  private replica: Replica
  private socket: WebSocketLike | undefined
  private connectSeq = 0
  private attempt = 0
  private shouldConnect = false
  private destroyed = false
  private _status: Status = 'stopped'
  private _synced = false
  private lastPending = -1
  private lastMessageAt = 0
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private livenessTimer: ReturnType<typeof setInterval> | undefined
  private readonly presenceTimer: ReturnType<typeof setInterval>
  private store: OfflineStore | undefined
  private compacting = false
  /** Offline store writes under way. */
  private storing = 0
  private readonly ownsAwareness: boolean

  constructor (readonly name: string, private readonly ctx: ProviderContext, options: ProviderOptions = {}) {
    super()
    this.doc = options.doc ?? new Y.Doc()
    this.ownsAwareness = options.awareness === undefined
    this.awareness = options.awareness ?? new Awareness(this.doc)
    this.presence = new Presence(this.awareness)
    this.versions = ctx.versions(name)
    this.replica = new (core().Replica)(this.doc.clientID)
    this.document = new CollabDocument(this.doc, () => JSON.parse(this.replica.toJSON()) as Record<string, unknown>,
      (origin) => origin === this)
    if (options.user !== undefined) this.presence.setUser(options.user)

    // Content the Y.Doc had before: the server may not have it.
    const initial = Y.encodeStateAsUpdate(this.doc)
    if (Y.parseUpdateMeta(initial).to.size > 0) this.replica.localUpdate(initial)

    const factory = options.offline === false ? undefined : options.offline ?? ctx.offline
    this.store = factory?.(name)
    this.params = { ...options.params, ...(options.readOnly === true ? { access: 'read' } : {}) }

    this.doc.on('update', this.onDocUpdate)
    this.doc.on('destroy', this.onDocDestroy)
    this.awareness.on('update', this.onAwarenessUpdate)
    this.presenceTimer = setInterval(this.expirePresence, PRESENCE_CHECK_MS)
    unref(this.presenceTimer)
    if (typeof addEventListener === 'function') {
      addEventListener('online', this.onBrowserOnline)
      addEventListener('offline', this.onBrowserOffline)
      addEventListener('pagehide', this.onPageHide)
    }

    this.loaded = this.restore()
    if (options.connect !== false) this.connect()
  }

  private readonly params: Record<string, string>

  /** The current status. */
  get status (): Status { return this._status }

  /** Whether the document holds everything the server holds, and edits go out at once. */
  get synced (): boolean { return this._synced }

  /** Local edits the server has not been sent (made while offline). */
  get pending (): number { return this.replica.pending }

  /** Resolves when the provider is next (or already) synced. */
  whenSynced (): Promise<void> {
    if (this._synced) return Promise.resolve()
    return new Promise((resolve) => {
      const off = this.on('synced', (synced) => {
        if (synced) {
          off()
          resolve()
        }
      })
    })
  }

  /** Connects, and keeps reconnecting until `disconnect()` or a 4400-4499 close. */
  connect (): void {
    if (this.destroyed) return
    this.shouldConnect = true
    this.attempt = 0
    if (this.socket !== undefined) return
    clearTimeout(this.reconnectTimer)
    // Offline edits must be back in the replica before the handshake, so
    // that the reply to the server's state vector carries them.
    void this.loaded.then(() => {
      if (this.shouldConnect && !this.destroyed && this.socket === undefined) void this.open()
    })
  }

  /** Closes the connection and stops reconnecting; edits keep being recorded. */
  disconnect (): void {
    this.shouldConnect = false
    this.connectSeq++
    clearTimeout(this.reconnectTimer)
    const socket = this.socket
    if (socket !== undefined) {
      // Tell the others we left before the socket goes.
      if (socket.readyState === OPEN && this.awareness.getLocalState() !== null) {
        this.send(this.localAwarenessFrame(true))
      }
      this.closed(socket, 1000, 'disconnected')
      socket.close(1000, 'disconnected')
    }
    this.setStatus('stopped')
  }

  /** Disconnects, releases everything and waits for offline writes to finish. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    this.disconnect()
    this.destroyed = true
    clearInterval(this.presenceTimer)
    if (typeof removeEventListener === 'function') {
      removeEventListener('online', this.onBrowserOnline)
      removeEventListener('offline', this.onBrowserOffline)
      removeEventListener('pagehide', this.onPageHide)
    }
    this.doc.off('update', this.onDocUpdate)
    this.doc.off('destroy', this.onDocDestroy)
    this.awareness.off('update', this.onAwarenessUpdate)
    this.presence.destroy()
    if (this.ownsAwareness) this.awareness.destroy()
    this.removeAllListeners()
    const store = this.store
    this.store = undefined
    await store?.close().catch(() => {})
    this.replica.free()
    this.ctx.released(this)
  }

  // --- offline store -------------------------------------------------------

  private async restore (): Promise<void> {
    const store = this.store
    if (store === undefined) {
      this.emitPending()
      this.emit('loaded')
      return
    }
    try {
      const stored = await store.load()
      if (this.destroyed) return
      if (stored.updates.length > 0) {
        this.doc.transact(() => {
          for (const update of stored.updates) {
            try {
              this.replica.applyUpdate(update)
            } catch (cause) {
              this.report(new CollabError('offline-store', `a stored update was refused: ${String(cause)}`, { cause }))
              continue
            }
            Y.applyUpdate(this.doc, update, this)
          }
        }, this)
      }
      const saved = stored.pending
      if (saved !== undefined && saved.pending > 0 && saved.offlineSince !== undefined) {
        this.replica.restorePending(saved.pending + this.replica.pending, saved.offlineSince)
      }
    } catch (cause) {
      this.report(new CollabError('offline-store', `offline store unavailable: ${String(cause)}`, { cause }))
      this.store = undefined
    }
    this.emitPending()
    this.emit('loaded')
  }

  private persist (update: Uint8Array): void {
    const store = this.store
    if (store === undefined) return
    this.track(store.append(update))
    if (store.size() >= COMPACT_AFTER && !this.compacting) {
      // The core encodes the whole state once: linear, where merging the
      // updates one by one is not.
      this.compacting = true
      this.track(store.compact(this.replica.encodeState()).finally(() => { this.compacting = false }))
    }
  }

  /** Whether everything written to the offline store so far is durable (true without a store). */
  get stored (): boolean { return this.storing === 0 }

  /** Resolves once everything written to the offline store so far is durable. */
  whenStored (): Promise<void> {
    if (this.storing === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const off = this.on('stored', (done) => {
        if (done) {
          off()
          resolve()
        }
      })
    })
  }

  private track (write: Promise<void>): void {
    if (this.storing++ === 0) this.emit('stored', false)
    write.catch((cause: unknown) => this.storeFailed(cause)).finally(() => {
      if (--this.storing === 0) this.emit('stored', true)
    })
  }

  private storeFailed (cause: unknown): void {
    this.report(new CollabError('offline-store', `offline store write failed: ${String(cause)}`, { cause }))
  }

  private emitPending (): void {
    const pending = this.replica.pending
    if (pending === this.lastPending) return
    this.lastPending = pending
    if (this.store !== undefined) {
      this.track(this.store.setPending({ pending, offlineSince: this.replica.offlineSince() }))
    }
    this.emit('pending', pending)
  }

  // --- the bridge ----------------------------------------------------------

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this) return
    let frame: Uint8Array | undefined
    try {
      frame = this.replica.localUpdate(update)
    } catch (cause) {
      this.coreFailed(cause)
      return
    }
    this.persist(update)
    if (frame !== undefined) this.send(frame)
    this.emitPending()
  }

  private readonly onDocDestroy = (): void => { void this.destroy() }

  private readonly onAwarenessUpdate = (
    changes: { added: number[], updated: number[], removed: number[] }
  ): void => {
    // Only our own state goes out; y-protocols may renew it in answer to a
    // remote message (origin this provider), which must go out too.
    const local = this.doc.clientID
    const { added, updated, removed } = changes
    if (added.includes(local) || updated.includes(local) || removed.includes(local)) {
      this.send(this.localAwarenessFrame(false))
    }
  }

  /** Our awareness state in a frame; `leaving` sends `null` at the same clock, which removes us. */
  private localAwarenessFrame (leaving: boolean): Uint8Array {
    const clients = [this.doc.clientID]
    const payload = leaving
      ? encodeAwarenessUpdate(this.awareness, clients, new Map([[this.doc.clientID, null]]) as unknown as Map<number, Record<string, unknown>>)
      : encodeAwarenessUpdate(this.awareness, clients)
    return this.replica.awarenessFrame(payload)
  }

  private readonly expirePresence = (): void => {
    const gone = [...this.replica.expirePresence(Date.now())]
    if (gone.length > 0) removeAwarenessStates(this.awareness, gone, this)
  }

  /** The replica failed: rebuild it from the Y.Doc, which holds exactly what it accepted. */
  private coreFailed (cause: unknown): void {
    this.report(new CollabError('core', `the WebAssembly core failed: ${String(cause)}`, { cause }))
    this.rebuildReplica()
  }

  private rebuildReplica (): void {
    const old = this.replica
    const fresh = new (core().Replica)(this.doc.clientID)
    fresh.applyUpdate(Y.encodeStateAsUpdate(this.doc))
    const since = old.offlineSince()
    if (old.pending > 0 && since !== undefined) fresh.restorePending(old.pending, since)
    this.replica = fresh
    try { old.free() } catch { /* already unusable */ }
  }

  // --- the connection ------------------------------------------------------

  private async open (): Promise<void> {
    const seq = ++this.connectSeq
    this.setStatus('connecting')
    let token: string | undefined
    try {
      token = await this.ctx.tokens.current()
    } catch (cause) {
      if (seq !== this.connectSeq) return
      this.report(new CollabError('token', `getToken() failed: ${String(cause)}`, { cause }))
      this.scheduleReconnect()
      return
    }
    if (seq !== this.connectSeq || this.destroyed || !this.shouldConnect || this.socket !== undefined) return
    const params = token === undefined ? this.params : { ...this.params, token }
    let socket: WebSocketLike
    try {
      socket = new this.ctx.WebSocket(socketUrl(this.ctx.ws, this.name, params))
    } catch (cause) {
      this.report(new CollabError('http', `cannot open a WebSocket: ${String(cause)}`, { cause }))
      this.scheduleReconnect()
      return
    }
    socket.binaryType = 'arraybuffer'
    this.socket = socket
    socket.onopen = () => this.opened(socket)
    socket.onmessage = (event) => this.received(socket, event.data)
    socket.onclose = (event) => this.closed(socket, event.code, event.reason)
    socket.onerror = () => { /* a close event follows */ }
  }

  private opened (socket: WebSocketLike): void {
    if (socket !== this.socket) return
    this.lastMessageAt = Date.now()
    this.setStatus('connected')
    this.send(this.replica.open())
    if (this.awareness.getLocalState() !== null) this.send(this.localAwarenessFrame(false))
    clearInterval(this.livenessTimer)
    const timeout = this.ctx.livenessTimeoutMs
    this.livenessTimer = setInterval(() => {
      // The server sends something at least every 15 s; silence means the
      // connection is gone even if the socket has not noticed.
      if (socket === this.socket && Date.now() - this.lastMessageAt > timeout) {
        this.drop(socket, CLOSE_SILENT, `no message for ${timeout} ms`)
      }
    }, Math.max(50, Math.min(timeout / 6, 5000)))
    unref(this.livenessTimer)
  }

  private received (socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return
    this.lastMessageAt = Date.now()
    if (!(data instanceof ArrayBuffer)) {
      this.report(new CollabError('protocol', 'the server sent a text frame'))
      return
    }
    const inbound = this.replica.receive(new Uint8Array(data), Date.now())
    let error: string | undefined
    try {
      const updates = inbound.updates as Uint8Array[]
      if (updates.length > 0) {
        this.doc.transact(() => {
          for (const update of updates) Y.applyUpdate(this.doc, update, this)
        }, this)
        for (const update of updates) this.persist(update)
      }
      const awareness = inbound.awareness
      if (awareness !== undefined) applyAwarenessUpdate(this.awareness, awareness, this)
      for (const reply of inbound.replies as Uint8Array[]) this.send(reply)
      if (inbound.flushed) this.emitPending()
      if (inbound.awarenessQueried && this.awareness.getLocalState() !== null) {
        this.send(this.localAwarenessFrame(false))
      }
      for (const reason of inbound.denied) {
        this.report(new CollabError('permission-denied', reason))
      }
      if (inbound.synced) {
        this.attempt = 0
        this.setSynced(true)
        this.setStatus('synced')
      }
      error = inbound.error
    } finally {
      inbound.free()
    }
    if (error !== undefined) {
      this.report(new CollabError('protocol', `refused a frame from the server: ${error}`))
      // The replica may be poisoned by a half-applied update; the Y.Doc is not.
      this.rebuildReplica()
      this.drop(socket, CLOSE_PROTOCOL, 'protocol error')
    }
  }

  /** Closes `socket` now, without waiting for the close handshake. */
  private drop (socket: WebSocketLike, code: number, reason: string): void {
    this.closed(socket, code, reason)
    try { socket.close(code, reason) } catch { /* already closed */ }
  }

  private closed (socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return
    this.socket = undefined
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null
    clearInterval(this.livenessTimer)
    const gone = [...this.replica.close()].filter((client) => client !== this.doc.clientID)
    if (gone.length > 0) removeAwarenessStates(this.awareness, gone, this)
    this.setSynced(false)
    if (code >= 4400 && code <= 4499) {
      this.shouldConnect = false
      this.setStatus('stopped')
      this.report(new CollabError('rejected',
        `the server closed the connection with ${code}${reason === '' ? '' : ` (${reason})`}; not reconnecting`,
        { fatal: true, status: code }))
      return
    }
    if (this.shouldConnect && !this.destroyed) this.scheduleReconnect()
  }

  private scheduleReconnect (): void {
    this.setStatus('offline')
    clearTimeout(this.reconnectTimer)
    if (!this.shouldConnect || this.destroyed) return
    // While the browser says it is offline, wait for its `online` event
    // (with a slow retry in case the event never comes).
    const delay = isBrowserOffline()
      ? (this.ctx.reconnect.maxDelayMs ?? 10_000)
      : backoffDelay(this.attempt++, this.ctx.reconnect)
    this.reconnectTimer = setTimeout(() => { void this.open() }, delay)
  }

  private readonly onBrowserOnline = (): void => {
    if (!this.shouldConnect || this.socket !== undefined) return
    this.attempt = 0
    clearTimeout(this.reconnectTimer)
    void this.open()
  }

  private readonly onBrowserOffline = (): void => {
    // Offline-first: stop writing into a socket the browser says is cut.
    if (this.socket !== undefined) this.drop(this.socket, CLOSE_OFFLINE, 'browser offline')
  }

  private readonly onPageHide = (): void => {
    if (this.socket?.readyState === OPEN && this.awareness.getLocalState() !== null) {
      this.send(this.localAwarenessFrame(true))
    }
  }

  private send (frame: Uint8Array): void {
    const socket = this.socket
    if (socket === undefined || socket.readyState !== OPEN) return
    try {
      socket.send(frame)
    } catch {
      // The close event follows; what was not sent goes in the next handshake.
    }
  }

  private setStatus (status: Status): void {
    if (status === this._status) return
    this._status = status
    this.emit('status', status)
  }

  private setSynced (synced: boolean): void {
    if (synced === this._synced) return
    this._synced = synced
    this.emit('synced', synced)
  }

  private report (error: CollabError): void {
    this.emit('error', error)
  }
}

/** Timers must not keep a Node process alive. */
function unref (timer: unknown): void {
  (timer as { unref?: () => void }).unref?.()
}
