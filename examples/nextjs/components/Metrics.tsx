'use client'
// Live server metrics: active users (open connections), documents in
// memory and edits per minute, polled from the app's /api/metrics.
import { useEffect, useState } from 'react'

interface Sample {
  at: number
  connections: number
  documents: number
  updates: number
}

const POLL_MS = 2000
const WINDOW_MS = 60_000

/** Edits per minute over the last minute of samples. */
function editsPerMinute (samples: Sample[]): number | undefined {
  const last = samples.at(-1)
  if (last === undefined) return undefined
  const first = samples.find((s) => last.at - s.at <= WINDOW_MS) ?? last
  const elapsed = last.at - first.at
  if (elapsed < POLL_MS / 2) return undefined
  return Math.max(0, (last.updates - first.updates) / elapsed * 60_000)
}

export default function Metrics () {
  const [samples, setSamples] = useState<Sample[]>([])
  const [history, setHistory] = useState<number[]>([])
  const [error, setError] = useState<string | null>(null)

  useEffect(() => {
    let stopped = false
    const poll = async (): Promise<void> => {
      try {
        const res = await fetch('/api/metrics', { cache: 'no-store' })
        const body = await res.json() as Sample & { error?: string }
        if (!res.ok) throw new Error(body.error ?? `answered ${res.status}`)
        if (stopped) return
        setError(null)
        setSamples((prev) => {
          const next = [...prev.filter((s) => body.at - s.at <= 5 * WINDOW_MS), body]
          const rate = editsPerMinute(next)
          if (rate !== undefined) setHistory((h) => [...h, rate].slice(-60))
          return next
        })
      } catch (e) {
        if (!stopped) setError(String(e))
      }
    }
    void poll()
    const timer = setInterval(() => { void poll() }, POLL_MS)
    return () => { stopped = true; clearInterval(timer) }
  }, [])

  const last = samples.at(-1)
  const rate = editsPerMinute(samples)
  const max = Math.max(1, ...history)
  return (
    <div className='admin'>
      <h1>Server metrics</h1>
      {error !== null && <p className='error'>{error}</p>}
      <div className='cards'>
        <div className='card'><div className='value' data-testid='metric-users'>{last?.connections ?? '–'}</div><div className='label'>active users (open connections)</div></div>
        <div className='card'><div className='value' data-testid='metric-documents'>{last?.documents ?? '–'}</div><div className='label'>documents in memory</div></div>
        <div className='card'><div className='value' data-testid='metric-edits'>{rate === undefined ? '–' : Math.round(rate)}</div><div className='label'>edits per minute</div></div>
      </div>
      <svg className='spark' viewBox={`0 0 ${Math.max(history.length, 2) - 1} 40`} preserveAspectRatio='none' aria-label='edits per minute, last two minutes'>
        <polyline fill='none' stroke='currentColor' strokeWidth='0.5' vectorEffect='non-scaling-stroke'
          points={history.map((v, i) => `${i},${40 - (v / max) * 38}`).join(' ')} />
      </svg>
      <p className='muted'>Polled every {POLL_MS / 1000} s from the sync server&apos;s <code>/metrics</code>; edits are updates received.</p>
    </div>
  )
}
