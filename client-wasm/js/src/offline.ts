// Offline persistence: every update of a document, local or remote, is kept
// so that the page can reload without a connection and still show (and
// later send) everything, including edits the server has not seen.

/** Edits not yet handed to a connection, as the core counts them. */
export interface PendingState {
  /** How many local updates. */
  pending: number
  /** The state vector when the replica went offline (v1): the edits are what changed after it. */
  offlineSince?: Uint8Array
}

/** What a store holds for one document. */
export interface StoredDocument {
  /** Updates (v1), in the order they were written. */
  updates: Uint8Array[]
  /** The pending count saved last, if any. */
  pending?: PendingState
}

/** Storage for one document. Writes resolve once they are durable. */
export interface OfflineStore {
  /** Everything stored for the document. Call once, first. */
  load(): Promise<StoredDocument>
  /** Stores one update. */
  append(update: Uint8Array): Promise<void>
  /** Saves the pending count. */
  setPending(state: PendingState): Promise<void>
  /**
   * Replaces the updates this store wrote or loaded with `state`, one update
   * holding all of them. Updates other tabs wrote meanwhile are kept.
   */
  compact(state: Uint8Array): Promise<void>
  /** Updates written or loaded since the last compaction. */
  size(): number
  /** Releases the store; pending writes complete first. */
  close(): Promise<void>
}

/** Makes the store of a document. */
export type OfflineStoreFactory = (document: string) => OfflineStore

/** Options of {@link indexedDbStore}. */
export interface IndexedDbStoreOptions {
  /** The database name. Default `collab-engine`. */
  databaseName?: string
  /** The IndexedDB to use. Default `globalThis.indexedDB`. */
  indexedDB?: IDBFactory
}

const UPDATES = 'updates'
const PENDING = 'pending'

function request<T> (req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })
}

function completion (tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve()
    tx.onerror = () => reject(tx.error)
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'))
  })
}

function openDatabase (factory: IDBFactory, name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = factory.open(name, 1)
    req.onupgradeneeded = () => {
      const db = req.result
      const updates = db.createObjectStore(UPDATES, { autoIncrement: true })
      updates.createIndex('doc', 'doc')
      db.createObjectStore(PENDING, { keyPath: 'doc' })
    }
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
    req.onblocked = () => reject(new Error(`IndexedDB database ${name} is blocked by another tab`))
  })
}

class IndexedDbStore implements OfflineStore {
  private readonly opening: Promise<IDBDatabase>
  private db: IDBDatabase | undefined
  /** Keys this store wrote or loaded: the only ones a compaction deletes. */
  private keys: IDBValidKey[] = []
  private inflight = new Set<Promise<unknown>>()

  constructor (factory: IDBFactory, name: string, private readonly doc: string) {
    this.opening = openDatabase(factory, name)
    this.opening.then((db) => { this.db = db }, () => {})
  }

  load (): Promise<StoredDocument> {
    return this.run(async (db) => {
      const tx = db.transaction([UPDATES, PENDING], 'readonly')
      const index = tx.objectStore(UPDATES).index('doc')
      // A key as the query: exactly this document (no IDBKeyRange global needed).
      const [keys, rows, pending] = await Promise.all([
        request(index.getAllKeys(this.doc)),
        request(index.getAll(this.doc)) as Promise<Array<{ update: Uint8Array }>>,
        request(tx.objectStore(PENDING).get(this.doc)) as Promise<(PendingState & { doc: string }) | undefined>
      ])
      this.keys = [...keys, ...this.keys]
      return {
        updates: rows.map((row) => row.update),
        pending: pending === undefined ? undefined : { pending: pending.pending, offlineSince: pending.offlineSince }
      }
    })
  }

  append (update: Uint8Array): Promise<void> {
    return this.run(async (db) => {
      const tx = db.transaction(UPDATES, 'readwrite')
      const key = await request(tx.objectStore(UPDATES).add({ doc: this.doc, update }))
      await completion(tx)
      this.keys.push(key)
    })
  }

  setPending (state: PendingState): Promise<void> {
    return this.run(async (db) => {
      const tx = db.transaction(PENDING, 'readwrite')
      tx.objectStore(PENDING).put({ doc: this.doc, ...state })
      await completion(tx)
    })
  }

  compact (state: Uint8Array): Promise<void> {
    return this.run(async (db) => {
      // Only what is known to be written: an append still in flight is
      // not deleted (the state covers it too; applying both is harmless).
      const covered = [...this.keys]
      const tx = db.transaction(UPDATES, 'readwrite')
      const store = tx.objectStore(UPDATES)
      for (const key of covered) store.delete(key)
      const key = await request(store.add({ doc: this.doc, update: state }))
      await completion(tx)
      const gone = new Set(covered)
      this.keys = [key, ...this.keys.filter((k) => !gone.has(k))]
    })
  }

  size (): number {
    return this.keys.length
  }

  async close (): Promise<void> {
    await Promise.allSettled([...this.inflight])
    ;(await this.opening.catch(() => undefined))?.close()
  }

  /**
   * Runs `op`, whose transaction is created before its first await. Once
   * the database is open that happens at once, in call order: IndexedDB
   * runs transactions over the same store in the order they were created,
   * and a transaction created before the page goes away has its best chance
   * to commit (a queue of promises would not even have started it).
   */
  private run<T> (op: (db: IDBDatabase) => Promise<T>): Promise<T> {
    const db = this.db
    const result = db !== undefined ? op(db) : this.opening.then(op)
    this.inflight.add(result)
    const forget = (): void => { this.inflight.delete(result) }
    result.then(forget, forget)
    return result
  }
}

/** Stores documents in IndexedDB (browsers; `fake-indexeddb` in Node). */
export function indexedDbStore (options: IndexedDbStoreOptions = {}): OfflineStoreFactory {
  const factory = options.indexedDB ?? globalThis.indexedDB
  if (factory === undefined) throw new Error('IndexedDB is not available here; pass `offline: memoryStore()` or `offline: false`')
  const name = options.databaseName ?? 'collab-engine'
  return (doc) => new IndexedDbStore(factory, name, doc)
}

/**
 * Keeps documents in memory for as long as the factory lives: edits survive
 * a provider being destroyed and opened again, not a reload. For Node and
 * tests.
 */
export function memoryStore (): OfflineStoreFactory {
  const docs = new Map<string, { updates: Uint8Array[], pending?: PendingState }>()
  return (doc) => {
    const entry = docs.get(doc) ?? { updates: [] }
    docs.set(doc, entry)
    return {
      async load () { return { updates: [...entry.updates], pending: entry.pending } },
      async append (update) { entry.updates.push(update) },
      async setPending (state) { entry.pending = state },
      async compact (state) { entry.updates = [state] },
      size () { return entry.updates.length },
      async close () {}
    }
  }
}

/** The store used when none is given: IndexedDB where there is one, else none. */
export function defaultStore (): OfflineStoreFactory | undefined {
  return globalThis.indexedDB === undefined ? undefined : indexedDbStore()
}
