'use client'
// One SDK client per page, and who the local user is.
import type { CollabClient } from '@collab-engine/client'

let client: Promise<CollabClient> | undefined

/**
 * The SDK client. WebSockets go straight to the sync server; REST calls
 * (versions) go through this app's `/sync` proxy, so the browser never
 * makes a cross-origin request.
 */
export function getClient (syncUrl: string): Promise<CollabClient> {
  client ??= import('@collab-engine/client').then(({ createClient }) =>
    createClient({ url: syncUrl, httpUrl: `${location.origin}/sync` }))
  return client
}

export interface LocalUser {
  name: string
  color: string
  [field: string]: unknown
}

const NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Radia']
const COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324']
const KEY = 'collab-user'

/** The local user: `?user=Name` in the URL, else the one saved, else a random one. */
export function localUser (): LocalUser {
  const fromUrl = new URLSearchParams(location.search).get('user')
  const saved = (() => {
    try { return JSON.parse(localStorage.getItem(KEY) ?? 'null') as LocalUser | null } catch { return null }
  })()
  const pick = <T,>(list: T[]): T => list[Math.floor(Math.random() * list.length)]
  const user: LocalUser = {
    name: fromUrl ?? saved?.name ?? pick(NAMES),
    color: saved?.color ?? pick(COLORS)
  }
  localStorage.setItem(KEY, JSON.stringify(user))
  return user
}

/** The initials shown in an avatar. */
export function initials (name: string): string {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('') || '?'
}
