'use client'
// One document: the provider's lifetime, and the panels around the editor.
import dynamic from 'next/dynamic'
import { useEffect, useState } from 'react'
import type { CollabProvider } from '@collab-engine/client'
import { getClient, localUser } from '@/lib/collab'
import { registerDocument } from '@/lib/directory'
import PresenceBar from './PresenceBar'
import StatusBar from './StatusBar'
import VersionPanel from './VersionPanel'

// ProseMirror needs the DOM: never rendered on the server.
const Editor = dynamic(() => import('./Editor'), { ssr: false })

export default function DocumentView ({ syncUrl }: { syncUrl: string }) {
  const [name, setName] = useState<string | null>(null)
  const [provider, setProvider] = useState<CollabProvider | null>(null)
  const [failure, setFailure] = useState<string | null>(null)

  useEffect(() => {
    setName(new URLSearchParams(location.search).get('name') ?? 'demo/welcome')
  }, [])

  useEffect(() => {
    if (name === null) return
    let cancelled = false
    let opened: CollabProvider | undefined
    getClient(syncUrl).then((client) => {
      if (cancelled) return
      opened = client.open(name, { user: localUser() })
      setProvider(opened)
      registerDocument(client, name)
      // The page and the core are loaded: the service worker may cache them.
      window.dispatchEvent(new Event('collab:ready'))
    }).catch((error: unknown) => setFailure(String(error)))
    return () => {
      cancelled = true
      void opened?.destroy()
      setProvider(null)
    }
  }, [name, syncUrl])

  if (failure !== null) return <p className='error'>Could not start the editor: {failure}</p>
  if (name === null || provider === null) return <p className='muted'>Loading…</p>
  return (
    <div className='doc-page'>
      <section className='doc-main'>
        <div className='doc-head'>
          <h1 data-testid='doc-name'>{name}</h1>
          <PresenceBar provider={provider} />
        </div>
        <StatusBar provider={provider} />
        <Editor provider={provider} />
      </section>
      <aside className='doc-side'>
        <VersionPanel provider={provider} />
      </aside>
    </div>
  )
}
