/**
 * When a JWT expires, in milliseconds since the epoch, read from its `exp`
 * claim without verifying it (only the server can). `undefined` for tokens
 * that are not JWTs or carry no `exp`.
 */
export function tokenExpiry (token: string): number | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/')
    const padded = base64 + '='.repeat((4 - base64.length % 4) % 4)
    const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)))
    const exp = (JSON.parse(json) as { exp?: unknown }).exp
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}

/** Where tokens come from: a fixed one, a function, or both. */
export interface TokenSource {
  /** A token to start with. */
  token?: string
  /** Returns a fresh token; called before the current one expires. */
  getToken?: () => string | Promise<string>
  /** How long before `exp` a token is refreshed. Default 60 s. */
  refreshMarginMs?: number
}

/**
 * Keeps a current token: fetched on first use, refreshed `refreshMarginMs`
 * before its `exp`, and on demand after a failed connection.
 */
export class TokenKeeper {
  private token: string | undefined
  private inflight: Promise<string | undefined> | undefined
  private readonly margin: number

  constructor (
    private readonly source: TokenSource,
    /** Called with every token `getToken()` returns. */
    private readonly onToken: (token: string) => void = () => {},
    private readonly now: () => number = Date.now
  ) {
    this.token = source.token
    this.margin = source.refreshMarginMs ?? 60_000
  }

  /** The token to connect with, refreshed first if it expires soon. */
  async current (): Promise<string | undefined> {
    if (this.source.getToken === undefined) return this.token
    if (this.token !== undefined && !this.expiresSoon(this.token)) return this.token
    return this.refresh()
  }

  /** Fetches a new token (one request at a time). */
  async refresh (): Promise<string | undefined> {
    const getToken = this.source.getToken
    if (getToken === undefined) return this.token
    this.inflight ??= (async () => {
      try {
        const token = await getToken()
        this.token = token
        this.onToken(token)
        return token
      } finally {
        this.inflight = undefined
      }
    })()
    return this.inflight
  }

  /** Milliseconds until the current token should be refreshed; `undefined` if never. */
  refreshInMs (): number | undefined {
    if (this.source.getToken === undefined || this.token === undefined) return undefined
    const exp = tokenExpiry(this.token)
    if (exp === undefined) return undefined
    return Math.max(0, exp - this.margin - this.now())
  }

  private expiresSoon (token: string): boolean {
    const exp = tokenExpiry(token)
    return exp !== undefined && exp - this.margin <= this.now()
  }
}
