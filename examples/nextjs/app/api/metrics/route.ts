// The sync server's OpenMetrics, reduced to what the admin page shows.
import { syncUrl } from '@/lib/config'

export const dynamic = 'force-dynamic'

/** Sums every sample of `name` (all label sets). */
function sum (text: string, name: string): number | undefined {
  let total: number | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (match === null || match[1] !== name) continue
    const value = Number(match[3])
    if (Number.isFinite(value)) total = (total ?? 0) + value
  }
  return total
}

export async function GET (): Promise<Response> {
  const url = `${syncUrl()}/metrics`
  let text: string
  try {
    const res = await fetch(url, { cache: 'no-store' })
    if (!res.ok) return Response.json({ error: `${url} answered ${res.status}` }, { status: 502 })
    text = await res.text()
  } catch (error) {
    return Response.json({ error: `${url} is unreachable: ${String(error)}` }, { status: 502 })
  }
  return Response.json({
    at: Date.now(),
    connections: sum(text, 'sync_connections') ?? 0,
    documents: sum(text, 'sync_documents_loaded') ?? 0,
    updates: sum(text, 'sync_updates_received_total') ?? 0
  }, { headers: { 'cache-control': 'no-store' } })
}
