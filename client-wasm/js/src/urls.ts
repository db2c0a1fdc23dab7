/**
 * Server addresses. The client is given one base URL, `http(s)://` or
 * `ws(s)://`, possibly with a path prefix; the WebSocket endpoint is
 * `{base}/ws/{document}` and the REST API `{base}/api/...`.
 */
export interface Endpoints {
  /** `ws(s)://host[:port][/prefix]` */
  ws: string
  /** `http(s)://host[:port][/prefix]` */
  http: string
}

/** Both endpoints from the base URL (and an optional separate REST base). */
export function endpoints (url: string, httpUrl?: string): Endpoints {
  const base = new URL(url)
  const path = base.pathname.replace(/\/+$/, '')
  const secure = base.protocol === 'https:' || base.protocol === 'wss:'
  const host = base.host
  const ws = `${secure ? 'wss' : 'ws'}://${host}${path}`
  const http = httpUrl !== undefined
    ? httpUrl.replace(/\/+$/, '')
    : `${secure ? 'https' : 'http'}://${host}${path}`
  return { ws, http }
}

/** The WebSocket URL of `document`, with the token and extra parameters in the query. */
export function socketUrl (ws: string, document: string, params: Record<string, string>): string {
  const query = new URLSearchParams(params).toString()
  const path = document.split('/').map(encodeURIComponent).join('/')
  return `${ws}/ws/${path}${query === '' ? '' : `?${query}`}`
}

/**
 * The REST path of `document` under `/api/docs/`. Names may contain `/`;
 * every slash is escaped so that the server never mistakes part of a name
 * for a sub-resource (`/update`, `/presence`, `/versions`).
 */
export function restPath (document: string): string {
  return encodeURIComponent(document)
}
