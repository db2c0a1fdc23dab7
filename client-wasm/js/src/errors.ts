/** What went wrong, as a stable string an application can switch on. */
export type CollabErrorCode =
  /** The server refused a write (for example read-only access). */
  | 'permission-denied'
  /** The server closed the connection with a code in 4400-4499: the client stops. */
  | 'rejected'
  /** A frame or update from the server was refused by the core. */
  | 'protocol'
  /** The offline store (IndexedDB) failed; edits stay in memory and still sync. */
  | 'offline-store'
  /** `getToken()` failed; the client retries with backoff. */
  | 'token'
  /** The server has no version history API. */
  | 'versions-not-supported'
  /** No version with that id. */
  | 'version-not-found'
  /** An HTTP request failed. */
  | 'http'
  /** The WebAssembly core failed; the provider rebuilt its replica from the Y.Doc. */
  | 'core'

/** Every error the SDK reports, as an `error` event or a rejected promise. */
export class CollabError extends Error {
  /** What went wrong. */
  readonly code: CollabErrorCode
  /** Whether the provider stopped because of it (it will not reconnect). */
  readonly fatal: boolean
  /** The WebSocket close code, for `rejected`; the HTTP status, for `http`. */
  readonly status?: number

  constructor (code: CollabErrorCode, message: string, options: { fatal?: boolean, status?: number, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CollabError'
    this.code = code
    this.fatal = options.fatal ?? false
    this.status = options.status
  }
}

/** The server answered 404 to the version history API: it does not have one. */
export class VersionsNotSupportedError extends CollabError {
  constructor (url: string) {
    super('versions-not-supported',
      `version history is not supported by this server (GET ${url} answered 404)`, { status: 404 })
    this.name = 'VersionsNotSupportedError'
  }
}
