// Version history: save, list, view and restore versions of a document.
//
// The server's history API is `GET|POST /api/docs/{doc}/versions`,
// `GET /api/docs/{doc}/versions/{id}` and
// `POST /api/docs/{doc}/versions/{id}/restore`. A server without it answers
// 404 to the list; every call then fails with VersionsNotSupportedError,
// and a restore is never POSTed to such a server (it would read the path
// as a document name).
import { CollabError, VersionsNotSupportedError } from './errors.js'
import { restPath } from './urls.js'

/** A saved version, as the list describes it. */
export interface VersionInfo {
  /** Its id (as a string, whatever the server sent). */
  id: string
  /** When it was saved, in milliseconds since the epoch (from `created_ms` or `createdAt`). */
  createdAt?: number
  /** How it came to be: `auto`, `named`, `restore`. */
  kind?: string
  /** A short name. */
  label?: string
  /** Who saved it (`system` for automatic versions). */
  author?: string
  /** Every other field the server sent. */
  [field: string]: unknown
}

/** One version with its content. */
export interface Version extends VersionInfo {
  /** The document's content at that version, as JSON keyed by root name. */
  content?: Record<string, unknown>
}

/** Reads a version description whatever the server's field names. */
function normalize (raw: unknown): VersionInfo {
  const v = (raw ?? {}) as Record<string, unknown>
  const created = v.created_ms ?? v.createdMs ?? v.createdAt ?? v.created_at
  const createdAt = typeof created === 'number'
    ? created
    : typeof created === 'string' ? Date.parse(created) : undefined
  return {
    ...v,
    id: String(v.id),
    createdAt: createdAt !== undefined && Number.isFinite(createdAt) ? createdAt : undefined
  }
}

/** How the versions client reaches the server. */
export interface VersionsTransport {
  /** REST base, `http(s)://host[:port][/prefix]`. */
  http: string
  fetch: typeof fetch
  /** Headers for every request (the token). */
  headers: () => Promise<Record<string, string>>
}

/** The version history of one document. */
export class Versions {
  private support: Promise<boolean> | undefined

  constructor (private readonly transport: VersionsTransport, readonly document: string) {}

  private url (suffix = ''): string {
    return `${this.transport.http}/api/docs/${restPath(this.document)}/versions${suffix}`
  }

  /** Whether the server has the history API (asked once, then remembered). */
  async supported (): Promise<boolean> {
    this.support ??= this.request('GET', this.url()).then((res) => res.status !== 404)
      .catch((error: unknown) => {
        this.support = undefined
        throw error
      })
    return this.support
  }

  /** The saved versions, in the order the server lists them. */
  async list (): Promise<VersionInfo[]> {
    const res = await this.request('GET', this.url())
    if (res.status === 404) {
      this.support = Promise.resolve(false)
      throw new VersionsNotSupportedError(this.url())
    }
    const body = await this.json(res)
    const list = Array.isArray(body) ? body : (body as { versions?: unknown }).versions
    if (!Array.isArray(list)) throw new CollabError('http', `unexpected answer from ${this.url()}`)
    return list.map(normalize)
  }

  /**
   * Saves the document's current state on the server as a named version
   * and answers its description once it is stored. Edits this client made
   * are in it once the server has them (after `whenSynced`).
   */
  async save (label: string, description?: string): Promise<VersionInfo> {
    if (!await this.supported()) throw new VersionsNotSupportedError(this.url())
    const body = JSON.stringify(description === undefined ? { label } : { label, description })
    const res = await this.request('POST', this.url(), body)
    return normalize(await this.json(res))
  }

  /** One version with its content. */
  async get (id: string): Promise<Version> {
    const url = this.url(`/${encodeURIComponent(id)}`)
    const res = await this.request('GET', url)
    if (res.status === 404) throw await this.missing(id)
    return normalize(await this.json(res)) as Version
  }

  /**
   * Restores version `id`: the server turns the current content into that
   * version's with new edits (history is kept), and they reach every
   * connected client, this one included, like any other change.
   */
  async restore (id: string): Promise<void> {
    if (!await this.supported()) throw new VersionsNotSupportedError(this.url())
    const url = this.url(`/${encodeURIComponent(id)}/restore`)
    const res = await this.request('POST', url)
    if (res.status === 404) throw await this.missing(id)
    await this.json(res)
  }

  private async missing (id: string): Promise<CollabError> {
    if (!await this.supported()) return new VersionsNotSupportedError(this.url())
    return new CollabError('version-not-found', `document ${this.document} has no version ${id}`, { status: 404 })
  }

  private async request (method: string, url: string, body?: string): Promise<Response> {
    const headers = await this.transport.headers()
    if (body !== undefined) headers['content-type'] = 'application/json'
    try {
      return await this.transport.fetch(url, { method, headers, body })
    } catch (cause) {
      throw new CollabError('http', `${method} ${url} failed: ${String(cause)}`, { cause })
    }
  }

  private async json (res: Response): Promise<unknown> {
    const text = await res.text()
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      body = text
    }
    if (!res.ok) {
      const reason = (body as { error?: unknown } | undefined)?.error ?? text
      throw new CollabError('http', `${res.url || 'request'} answered ${res.status}: ${String(reason)}`, { status: res.status })
    }
    return body
  }
}
