'use client'
// Version history: list, view and restore, through the SDK's versions API.
// A server without history says so, and the panel says it too.
import { useCallback, useEffect, useState } from 'react'
import type { CollabProvider, Version, VersionInfo } from '@collab-engine/client'

type State =
  | { kind: 'loading' }
  | { kind: 'unsupported', message: string }
  | { kind: 'error', message: string }
  | { kind: 'ready', versions: VersionInfo[] }

function when (info: VersionInfo): string {
  if (info.createdAt === undefined) return ''
  const date = new Date(info.createdAt)
  return Number.isNaN(date.getTime()) ? String(info.createdAt) : date.toLocaleString()
}

export default function VersionPanel ({ provider }: { provider: CollabProvider }) {
  const [state, setState] = useState<State>({ kind: 'loading' })
  const [viewing, setViewing] = useState<Version | null>(null)
  const [busy, setBusy] = useState(false)

  const load = useCallback(async () => {
    setState({ kind: 'loading' })
    try {
      const versions = await provider.versions.list()
      // Newest first.
      versions.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))
      setState({ kind: 'ready', versions })
    } catch (error) {
      const e = error as { code?: string, message?: string }
      setState(e.code === 'versions-not-supported'
        ? { kind: 'unsupported', message: 'Version history is not supported by this server yet.' }
        : { kind: 'error', message: provider.synced ? e.message ?? String(error) : 'Version history needs a connection.' })
    }
  }, [provider])

  // Load now, and again each time the provider (re)connects: a panel
  // opened offline fills in once the server is reachable.
  useEffect(() => {
    void load()
    return provider.on('synced', (synced) => { if (synced) void load() })
  }, [load, provider])

  const view = async (id: string): Promise<void> => {
    try {
      setViewing(await provider.versions.get(id))
    } catch (error) {
      setState({ kind: 'error', message: (error as Error).message })
    }
  }

  const restore = async (id: string): Promise<void> => {
    setBusy(true)
    try {
      await provider.versions.restore(id)
      setViewing(null)
      await load()
    } catch (error) {
      setState({ kind: 'error', message: (error as Error).message })
    } finally {
      setBusy(false)
    }
  }

  return (
    <div className='versions' data-testid='versions' data-state={state.kind}>
      <div className='versions-head'>
        <h2>Version history</h2>
        <button type='button' onClick={() => { void load() }} disabled={state.kind === 'loading'}>Refresh</button>
      </div>
      {state.kind === 'loading' && <p className='muted'>Loading…</p>}
      {state.kind === 'unsupported' && <p className='muted' data-testid='versions-unsupported'>{state.message}</p>}
      {state.kind === 'error' && <p className='error'>{state.message}</p>}
      {state.kind === 'ready' && state.versions.length === 0 && <p className='muted'>No saved versions yet.</p>}
      {state.kind === 'ready' && (
        <ol className='version-list'>
          {state.versions.map((v) => (
            <li key={v.id}>
              <div>
                <strong>{v.label ?? `Version ${v.id}`}</strong>
                <span className='muted'> {when(v)}{v.author === undefined ? '' : ` · ${v.author}`}</span>
              </div>
              <div className='actions'>
                <button type='button' onClick={() => { void view(v.id) }}>View</button>
                <button type='button' disabled={busy} onClick={() => { void restore(v.id) }}>Restore</button>
              </div>
            </li>
          ))}
        </ol>
      )}
      {viewing !== null && (
        <div className='version-view'>
          <h3>{viewing.label ?? `Version ${viewing.id}`}</h3>
          <pre>{JSON.stringify(viewing.content ?? viewing, null, 2)}</pre>
          <button type='button' onClick={() => setViewing(null)}>Close</button>
        </div>
      )}
    </div>
  )
}
