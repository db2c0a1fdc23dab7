'use client'
// Offline-first: a service worker keeps the app shell, so a page reloaded
// without a network still starts, and the SDK restores the edits kept in
// IndexedDB. Once the page and the WebAssembly core have loaded, everything
// this page fetched goes into the cache, and <html data-offline-ready>
// says so.
import { useEffect } from 'react'

const CACHE = 'collab-shell-v1'

async function cacheThisPage (): Promise<void> {
  const cache = await caches.open(CACHE)
  const urls = new Set([location.href])
  for (const entry of performance.getEntriesByType('resource')) {
    const url = new URL(entry.name)
    if (url.origin === location.origin && !url.pathname.startsWith('/sync/') && !url.pathname.startsWith('/api/')) {
      urls.add(url.href)
    }
  }
  await Promise.all([...urls].map(async (url) => cache.add(url).catch(() => {})))
}

export default function OfflineShell () {
  useEffect(() => {
    if (!('serviceWorker' in navigator) || process.env.NODE_ENV !== 'production') return
    let ready = false
    const whenReady = async (): Promise<void> => {
      await navigator.serviceWorker.ready
      await cacheThisPage()
      if (ready) document.documentElement.dataset.offlineReady = 'true'
    }
    const onReady = (): void => {
      ready = true
      void whenReady()
    }
    window.addEventListener('collab:ready', onReady)
    navigator.serviceWorker.register('/sw.js').then(() => whenReady()).catch(() => {})
    return () => window.removeEventListener('collab:ready', onReady)
  }, [])
  return null
}
