'use client'
// The documents of this app, from the shared directory document, and a form
// to start a new one.
import Link from 'next/link'
import { useRouter } from 'next/navigation'
import { useEffect, useState, type FormEvent } from 'react'
import { getClient } from '@/lib/collab'
import { openDirectory, validName, type DirectoryEntry } from '@/lib/directory'

export default function DocumentList ({ syncUrl }: { syncUrl: string }) {
  const router = useRouter()
  const [docs, setDocs] = useState<Array<[string, DirectoryEntry]> | null>(null)
  const [name, setName] = useState('')
  const [invalid, setInvalid] = useState(false)

  useEffect(() => {
    let off: (() => void) | undefined
    void getClient(syncUrl).then((client) => {
      const dir = openDirectory(client)
      const map = dir.doc.getMap<DirectoryEntry>('documents')
      const refresh = (): void => {
        setDocs([...map.entries()].sort((a, b) => b[1].createdAt - a[1].createdAt))
      }
      map.observe(refresh)
      off = () => map.unobserve(refresh)
      void dir.loaded.then(refresh)
      window.dispatchEvent(new Event('collab:ready'))
    })
    return () => off?.()
  }, [syncUrl])

  const create = (event: FormEvent): void => {
    event.preventDefault()
    const trimmed = name.trim()
    if (!validName(trimmed)) {
      setInvalid(true)
      return
    }
    router.push(`/doc?name=${encodeURIComponent(trimmed)}`)
  }

  return (
    <div className='list-page'>
      <h1>Documents</h1>
      <form onSubmit={create} className='new-doc'>
        <input
          aria-label='Document name'
          placeholder='team/meeting-notes'
          value={name}
          onChange={(e) => { setName(e.target.value); setInvalid(false) }}
        />
        <button type='submit'>Open</button>
        {invalid && <span className='error'>Use 1-255 of A-Z a-z 0-9 . _ ~ - and /</span>}
      </form>
      {docs === null && <p className='muted'>Loading…</p>}
      {docs !== null && docs.length === 0 && <p className='muted'>No documents yet: open one above.</p>}
      {docs !== null && docs.length > 0 && (
        <ul className='doc-list' data-testid='doc-list'>
          {docs.map(([docName, entry]) => (
            <li key={docName}>
              <Link href={`/doc?name=${encodeURIComponent(docName)}`}>{docName}</Link>
              <span className='muted'>{new Date(entry.createdAt).toLocaleString()}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  )
}
