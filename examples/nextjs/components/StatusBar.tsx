'use client'
// Connection status, edits waiting to be sent, and the last error.
import { useEffect, useState } from 'react'
import type { CollabProvider, Status } from '@collab-engine/client'

const LABELS: Record<Status, string> = {
  connecting: 'Connecting…',
  connected: 'Syncing…',
  synced: 'Saved',
  offline: 'Offline: edits are kept on this device',
  stopped: 'Disconnected'
}

export default function StatusBar ({ provider }: { provider: CollabProvider }) {
  const [status, setStatus] = useState<Status>(provider.status)
  const [pending, setPending] = useState(provider.pending)
  const [error, setError] = useState<string | null>(null)
  const [stored, setStored] = useState(provider.stored)
  useEffect(() => {
    setStatus(provider.status)
    setPending(provider.pending)
    setStored(provider.stored)
    const offs = [
      provider.on('stored', setStored),
      provider.on('status', setStatus),
      provider.on('pending', setPending),
      provider.on('error', (e) => setError(e.message)),
      provider.on('synced', (synced) => { if (synced) setError(null) })
    ]
    return () => offs.forEach((off) => off())
  }, [provider])
  return (
    <div className={`status status-${status}`} data-testid='status' data-status={status} data-pending={pending} data-stored={stored}>
      <span className='dot' />
      <span>{LABELS[status]}</span>
      {pending > 0 && (
        <span className='pending' data-testid='pending'>
          {pending} unsent edit{pending === 1 ? '' : 's'}{stored ? ', saved on this device' : ''}
        </span>
      )}
      {error !== null && <span className='error' title={error}>{error}</span>}
    </div>
  )
}
