// A same-origin proxy to the sync server's REST API (the SDK's `httpUrl`),
// so the browser needs no CORS from it. WebSockets go to the server directly.
import { syncUrl } from '@/lib/config'

export const dynamic = 'force-dynamic'

async function forward (req: Request): Promise<Response> {
  const incoming = new URL(req.url)
  // The raw path, not the decoded segments: document names escape their
  // slashes as %2F, which must reach the server as they are.
  const rest = incoming.pathname.slice(incoming.pathname.indexOf('/sync/') + '/sync'.length)
  const target = `${syncUrl()}${rest}${incoming.search}`
  const headers = new Headers()
  for (const name of ['authorization', 'content-type', 'accept']) {
    const value = req.headers.get(name)
    if (value !== null) headers.set(name, value)
  }
  try {
    const res = await fetch(target, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.arrayBuffer(),
      cache: 'no-store'
    })
    return new Response(res.body, {
      status: res.status,
      headers: { 'content-type': res.headers.get('content-type') ?? 'application/octet-stream' }
    })
  } catch (error) {
    return Response.json({ error: `sync server unreachable: ${String(error)}` }, { status: 502 })
  }
}

export async function GET (req: Request): Promise<Response> {
  return forward(req)
}

export async function POST (req: Request): Promise<Response> {
  return forward(req)
}
