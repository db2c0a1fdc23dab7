// A small document API for applications that do not use Yjs directly:
// named texts, maps and lists, JSON out, change notifications. Everything
// is still a Yjs document underneath, so Yjs editors can bind to the same
// content.
import * as Y from 'yjs'

/** Where a change came from. */
export type ChangeSource = 'local' | 'remote'

/** A shared plain text. */
export class SharedText {
  constructor (private readonly type: Y.Text, private readonly isRemote: (origin: unknown) => boolean) {}

  /** The text. */
  toString (): string { return this.type.toString() }
  /** Its length in UTF-16 code units (JavaScript string indexes). */
  get length (): number { return this.type.length }
  /** Inserts `text` at `index`. */
  insert (index: number, text: string): void { this.type.insert(index, text) }
  /** Deletes `length` characters from `index`. */
  delete (index: number, length: number): void { this.type.delete(index, length) }
  /** Appends `text`. */
  append (text: string): void { this.type.insert(this.type.length, text) }

  /**
   * Makes the text equal `next` with the smallest single edit (common
   * prefix and suffix kept), so a `<textarea>` can be bound by calling
   * this on every input event without clobbering others' edits elsewhere.
   */
  set (next: string): void {
    const current = this.type.toString()
    if (current === next) return
    let start = 0
    while (start < current.length && start < next.length && current[start] === next[start]) start++
    let end = 0
    while (end < current.length - start && end < next.length - start &&
      current[current.length - 1 - end] === next[next.length - 1 - end]) end++
    this.type.doc!.transact(() => {
      this.type.delete(start, current.length - start - end)
      this.type.insert(start, next.slice(start, next.length - end))
    })
  }

  /** Calls `listener` after every change; returns the function that stops it. */
  observe (listener: (text: string, source: ChangeSource) => void): () => void {
    const handler = (event: Y.YTextEvent): void => {
      listener(this.type.toString(), this.isRemote(event.transaction.origin) ? 'remote' : 'local')
    }
    this.type.observe(handler)
    return () => this.type.unobserve(handler)
  }
}

/** A shared map of JSON values. */
export class SharedMap<T = unknown> {
  constructor (private readonly type: Y.Map<T>, private readonly isRemote: (origin: unknown) => boolean) {}

  get (key: string): T | undefined { return this.type.get(key) }
  set (key: string, value: T): void { this.type.set(key, value) }
  delete (key: string): void { this.type.delete(key) }
  has (key: string): boolean { return this.type.has(key) }
  keys (): string[] { return [...this.type.keys()] }
  /** The map as a plain object. */
  toJSON (): Record<string, T> { return this.type.toJSON() as Record<string, T> }

  /** Calls `listener` after every change with the keys that changed. */
  observe (listener: (keys: string[], source: ChangeSource) => void): () => void {
    const handler = (event: Y.YMapEvent<T>): void => {
      listener([...event.keysChanged], this.isRemote(event.transaction.origin) ? 'remote' : 'local')
    }
    this.type.observe(handler)
    return () => this.type.unobserve(handler)
  }
}

/** A shared list of JSON values. */
export class SharedList<T = unknown> {
  constructor (private readonly type: Y.Array<T>, private readonly isRemote: (origin: unknown) => boolean) {}

  get length (): number { return this.type.length }
  get (index: number): T { return this.type.get(index) }
  push (...items: T[]): void { this.type.push(items) }
  insert (index: number, ...items: T[]): void { this.type.insert(index, items) }
  delete (index: number, length = 1): void { this.type.delete(index, length) }
  toArray (): T[] { return this.type.toArray() }

  /** Calls `listener` after every change. */
  observe (listener: (items: T[], source: ChangeSource) => void): () => void {
    const handler = (event: Y.YArrayEvent<T>): void => {
      listener(this.type.toArray(), this.isRemote(event.transaction.origin) ? 'remote' : 'local')
    }
    this.type.observe(handler)
    return () => this.type.unobserve(handler)
  }
}

/** A document through the small API. */
export class CollabDocument {
  constructor (
    /** The Yjs document underneath, for editor bindings. */
    readonly doc: Y.Doc,
    private readonly json: () => Record<string, unknown>,
    private readonly isRemote: (origin: unknown) => boolean
  ) {}

  /** The shared text named `name`. */
  text (name = 'content'): SharedText { return new SharedText(this.doc.getText(name), this.isRemote) }
  /** The shared map named `name`. */
  map<T = unknown> (name: string): SharedMap<T> { return new SharedMap(this.doc.getMap<T>(name), this.isRemote) }
  /** The shared list named `name`. */
  list<T = unknown> (name: string): SharedList<T> { return new SharedList(this.doc.getArray<T>(name), this.isRemote) }

  /** Runs `fn` as one change: one update, one notification. */
  transact (fn: () => void): void { this.doc.transact(fn) }

  /**
   * The whole document as JSON keyed by root name, rendered by the core:
   * roots nobody declared in this page (texts, maps, lists, rich text) are
   * recognised by their content.
   */
  toJSON (): Record<string, unknown> { return this.json() }

  /** Calls `listener` after every change to the document. */
  onChange (listener: (source: ChangeSource) => void): () => void {
    const handler = (_update: Uint8Array, origin: unknown): void => {
      listener(this.isRemote(origin) ? 'remote' : 'local')
    }
    this.doc.on('update', handler)
    return () => this.doc.off('update', handler)
  }
}
