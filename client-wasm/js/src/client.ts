// The client: server address, credentials and defaults shared by the
// providers of every document it opens.
import type { BackoffOptions } from './backoff.js'
import { loadCore, type WasmSource } from './core.js'
import { CollabError } from './errors.js'
import { Emitter } from './events.js'
import { defaultStore, type OfflineStoreFactory } from './offline.js'
import { CollabProvider, type ProviderOptions, type WebSocketConstructor } from './provider.js'
import { TokenKeeper, type TokenSource } from './token.js'
import { endpoints, restPath, type Endpoints } from './urls.js'
import { Versions } from './versions.js'

/** Options of {@link createClient}. */
export interface ClientOptions extends TokenSource {
  /**
   * The sync server: `http(s)://host[:port][/prefix]` or the same with
   * `ws(s)://`. Documents are at `{url}/ws/{document}`.
   */
  url: string
  /** A different base for the REST API (for example a same-origin proxy). */
  httpUrl?: string
  /** The WebSocket class; `globalThis.WebSocket` by default (pass `ws`'s in Node 20). */
  WebSocket?: WebSocketConstructor
  /** The fetch function; `globalThis.fetch` by default. */
  fetch?: typeof fetch
  /** Reconnection backoff. */
  reconnect?: BackoffOptions
  /** A connection silent for this long is dropped and reopened. Default 30 s. */
  livenessTimeoutMs?: number
  /**
   * Where edits are kept while offline: IndexedDB by default where it
   * exists, `memoryStore()`, a store of your own, or `false` for none.
   */
  offline?: OfflineStoreFactory | false
  /** Browser build only: where to load the `.wasm` from (see {@link WasmSource}). */
  wasm?: WasmSource
}

/** Events of a client. */
export interface ClientEvents {
  [event: string]: unknown[]
  /** A new token was obtained from `getToken()`. */
  token: [string | undefined]
  /** Refreshing the token failed (providers retry when they reconnect). */
  error: [CollabError]
}

/** A connection to one sync server, shared by the documents it opens. */
export class CollabClient extends Emitter<ClientEvents> {
  /** Where the server is. */
  readonly endpoints: Endpoints
  private readonly tokens: TokenKeeper
  private readonly providers = new Set<CollabProvider>()
  private refreshTimer: ReturnType<typeof setTimeout> | undefined
  private closed = false

  constructor (private readonly options: ClientOptions) {
    super()
    this.endpoints = endpoints(options.url, options.httpUrl)
    this.tokens = new TokenKeeper(options, (token) => {
      this.emit('token', token)
      this.scheduleRefresh()
    })
    this.scheduleRefresh()
  }

  /** Opens `document` (names may contain `/`: `workspace/doc`). */
  open (document: string, options: ProviderOptions = {}): CollabProvider {
    if (this.closed) throw new Error('this client is closed')
    const WebSocketClass = this.options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (WebSocketClass === undefined) {
      throw new Error('no WebSocket here: pass `WebSocket` (for example `ws` in Node 20)')
    }
    const provider = new CollabProvider(document, {
      ws: this.endpoints.ws,
      WebSocket: WebSocketClass,
      tokens: this.tokens,
      reconnect: this.options.reconnect ?? {},
      livenessTimeoutMs: this.options.livenessTimeoutMs ?? 30_000,
      offline: this.options.offline === false ? undefined : this.options.offline ?? defaultStore(),
      versions: (name) => this.versions(name),
      released: (p) => this.providers.delete(p)
    }, options)
    this.providers.add(provider)
    return provider
  }

  /** The version history of `document`. */
  versions (document: string): Versions {
    return new Versions({
      http: this.endpoints.http,
      fetch: this.fetch,
      headers: () => this.headers()
    }, document)
  }

  /** The content of `document` as JSON, from the REST API; `undefined` if nothing is stored. */
  async read (document: string): Promise<Record<string, unknown> | undefined> {
    const url = `${this.endpoints.http}/api/docs/${restPath(document)}`
    const res = await this.fetch(url, { headers: await this.headers() })
    if (res.status === 404) return undefined
    if (!res.ok) throw new CollabError('http', `GET ${url} answered ${res.status}`, { status: res.status })
    return await res.json() as Record<string, unknown>
  }

  /** Destroys every provider of this client. */
  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.refreshTimer)
    await Promise.all([...this.providers].map(async (p) => p.destroy()))
    this.removeAllListeners()
  }

  private get fetch (): typeof fetch {
    const f = this.options.fetch ?? globalThis.fetch
    return (input, init) => f(input, init)
  }

  private async headers (): Promise<Record<string, string>> {
    const token = await this.tokens.current()
    return token === undefined ? {} : { authorization: `Bearer ${token}` }
  }

  /** Refreshes the token `refreshMarginMs` before its `exp`, every time there is a new one. */
  private scheduleRefresh (): void {
    clearTimeout(this.refreshTimer)
    const wait = this.tokens.refreshInMs()
    if (this.closed || wait === undefined) return
    this.refreshTimer = setTimeout(() => {
      this.tokens.refresh().catch((cause: unknown) => {
        this.emit('error', new CollabError('token', `getToken() failed: ${String(cause)}`, { cause }))
        // Try again soon; providers also ask when they reconnect.
        this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 5_000)
        unref(this.refreshTimer)
      })
    }, wait)
    unref(this.refreshTimer)
  }
}

function unref (timer: unknown): void {
  (timer as { unref?: () => void }).unref?.()
}

/** Loads the WebAssembly core (once) and returns a client. */
export async function createClient (options: ClientOptions): Promise<CollabClient> {
  await loadCore(options.wasm)
  return new CollabClient(options)
}
