'use client'
// The document list is itself a collaborative document: a map from name to
// { title, createdAt } that every client of this app shares, live.
import type { CollabClient, CollabProvider } from '@collab-engine/client'

export const DIRECTORY = 'app/directory'

export interface DirectoryEntry {
  createdAt: number
}

let directory: CollabProvider | undefined

/** The shared directory document (one per page). */
export function openDirectory (client: CollabClient): CollabProvider {
  if (directory === undefined) {
    directory = client.open(DIRECTORY)
    // Nobody needs to see who browses the list.
    directory.awareness.setLocalState(null)
  }
  return directory
}

/**
 * Adds `name` to the directory if it is not there yet, through a connection
 * of its own that closes once the entry reached the server (so an open
 * document costs one connection, not two). Offline, the entry waits in
 * IndexedDB like any other edit.
 */
export function registerDocument (client: CollabClient, name: string): void {
  if (directory !== undefined) {
    addEntry(directory, name)
    return
  }
  const dir = client.open(DIRECTORY)
  dir.awareness.setLocalState(null)
  void dir.loaded.then(async () => {
    addEntry(dir, name)
    await dir.whenSynced()
    await dir.destroy()
  })
}

function addEntry (dir: CollabProvider, name: string): void {
  const docs = dir.doc.getMap<DirectoryEntry>('documents')
  if (!docs.has(name)) docs.set(name, { createdAt: Date.now() })
}

/** Document names the server accepts: 1-255 of `A-Z a-z 0-9 . _ ~ - /`. */
export function validName (name: string): boolean {
  return /^[A-Za-z0-9._~\-/]{1,255}$/.test(name) && !name.startsWith('/') && !name.endsWith('/')
}
