'use client'
// Who is here: an avatar per connected person, the local user first.
import { useEffect, useState } from 'react'
import type { CollabProvider, Peer } from '@collab-engine/client'
import { initials } from '@/lib/collab'

export default function PresenceBar ({ provider }: { provider: CollabProvider }) {
  const [peers, setPeers] = useState<Peer[]>(() => provider.presence.peers())
  useEffect(() => {
    setPeers(provider.presence.peers())
    return provider.presence.on('change', setPeers)
  }, [provider])
  return (
    <ul className='avatars' data-testid='avatars'>
      {peers.filter((p) => p.user !== undefined).map((p) => (
        <li
          key={p.clientId}
          className={p.isLocal ? 'avatar local' : 'avatar'}
          style={{ background: p.user!.color ?? '#888' }}
          title={p.isLocal ? `${p.user!.name} (you)` : p.user!.name}
          data-name={p.user!.name}
        >
          {initials(p.user!.name)}
        </li>
      ))}
    </ul>
  )
}
