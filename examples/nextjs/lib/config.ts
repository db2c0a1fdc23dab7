// Where the sync server is. Read at request time (not at build time), so one
// build serves any server: SYNC_URL=http://host:port next start.
export function syncUrl (): string {
  return (process.env.SYNC_URL ?? 'http://127.0.0.1:8787').replace(/\/+$/, '')
}
