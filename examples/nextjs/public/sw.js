// The app shell offline. Static assets (content-hashed) come from the cache
// first; pages and everything else from the network first, falling back to
// the cache; the sync server's API and the metrics are never cached.
const CACHE = 'collab-shell-v1'

self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()))

self.addEventListener('fetch', (event) => {
  const req = event.request
  const url = new URL(req.url)
  if (req.method !== 'GET' || url.origin !== self.location.origin) return
  if (url.pathname.startsWith('/sync/') || url.pathname.startsWith('/api/')) return
  if (url.pathname.startsWith('/_next/static/')) {
    event.respondWith(caches.match(req).then((hit) => hit ?? fetchAndKeep(req)))
    return
  }
  event.respondWith(fetchAndKeep(req).catch(async () => {
    const hit = await caches.match(req) ??
      (req.mode === 'navigate' ? await caches.match(req, { ignoreSearch: true }) : undefined)
    if (hit) return hit
    throw new Error(`offline and not cached: ${url.pathname}`)
  }))
})

async function fetchAndKeep (req) {
  const res = await fetch(req)
  if (res.ok && res.type === 'basic') {
    const copy = res.clone()
    caches.open(CACHE).then((cache) => cache.put(req, copy)).catch(() => {})
  }
  return res
}
