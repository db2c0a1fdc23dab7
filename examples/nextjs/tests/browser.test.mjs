// The Next.js example in headless Chromium against a real sync server: two
// browser contexts (two people) on one document, typing, presence, one of
// them offline across a page reload, then both converging.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'
import { startServer, waitFor, sleep } from '../../../client-wasm/js/test/lib.mjs'

const app = resolve(import.meta.dirname, '..')
const root = resolve(app, '../..')
const artifacts = join(root, 'test-artifacts')

async function freePort () {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolvePort(port))
    })
  })
}

/** `next start` on a free loopback port, talking to `syncUrl`. */
async function startNext (syncUrl) {
  const port = await freePort()
  const child = spawn(process.execPath, [join(app, 'node_modules/next/dist/bin/next'), 'start', '--hostname', '127.0.0.1', '--port', String(port)], {
    cwd: app,
    env: { ...process.env, SYNC_URL: syncUrl, NEXT_TELEMETRY_DISABLED: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let log = ''
  child.stdout.on('data', (c) => { log += c })
  child.stderr.on('data', (c) => { log += c })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`next start exited:\n${log}`)
    return fetch(url).then((r) => r.ok, () => false)
  }, { timeout: 30000, describe: () => log })
  return {
    url,
    log: () => log,
    stop: () => new Promise((r) => {
      if (child.exitCode !== null) return r()
      child.once('exit', () => r())
      child.kill('SIGTERM')
    })
  }
}

/** The editor's text, without the remote cursors' name labels. */
const editorText = (page) => page.evaluate(() => {
  const copy = document.querySelector('.ProseMirror').cloneNode(true)
  for (const cursor of copy.querySelectorAll('.ProseMirror-yjs-cursor')) cursor.remove()
  return copy.textContent
})
const status = (page) => page.getAttribute('[data-testid=status]', 'data-status')
const pending = async (page) => Number(await page.getAttribute('[data-testid=status]', 'data-pending'))

test('two people edit one document in Chromium, one of them offline across a reload', async (t) => {
  const sync = await startServer()
  t.after(() => sync.stop())
  const next = await startNext(sync.http)
  t.after(() => next.stop())
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run']
  })
  t.after(() => browser.close())

  const errors = []
  const open = async (user) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } })
    const page = await context.newPage()
    page.on('pageerror', (e) => errors.push(`${user}: ${e.message}`))
    if (process.env.DEBUG_PAGES) page.on('console', (m) => console.log(`[${user}] ${m.text()}`))
    await page.goto(`${next.url}/doc?name=${encodeURIComponent(doc)}&user=${user}`)
    await page.waitForSelector('[data-testid=status][data-status=synced]', { timeout: 30000 })
    // The service worker holds the app shell and the core: offline reloads work.
    await page.waitForSelector('html[data-offline-ready=true]', { timeout: 30000 })
    return { context, page }
  }
  const doc = 'e2e/meeting-notes'
  const alice = await open('Alice')
  const bob = await open('Bob')

  // 1. Both type; each sees the other's text, avatar and cursor.
  await alice.page.click('.ProseMirror')
  await alice.page.keyboard.type('Hello from Alice.')
  await waitFor(async () => (await editorText(bob.page)).includes('Hello from Alice.'), {
    describe: () => 'Bob sees Alice\'s text'
  })
  await bob.page.click('.ProseMirror')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type(' Hello from Bob.')
  await waitFor(async () => (await editorText(alice.page)).includes('Hello from Alice. Hello from Bob.'), {
    describe: () => 'Alice sees Bob\'s text'
  })
  for (const [me, other] of [[alice, 'Bob'], [bob, 'Alice']]) {
    await me.page.waitForSelector(`.ProseMirror-yjs-cursor >> text=${other}`, { timeout: 15000 })
    await me.page.waitForSelector(`[data-testid=avatars] [data-name=${other}]`, { timeout: 15000 })
    assert.equal(await me.page.locator('[data-testid=avatars] .avatar').count(), 2)
  }

  // 2. Bob goes offline and keeps typing; nothing reaches Alice.
  await bob.context.setOffline(true)
  await waitFor(async () => (await status(bob.page)) === 'offline', { describe: () => 'Bob offline' })
  await bob.page.click('.ProseMirror')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type(' Bob offline, first.')
  await waitFor(async () => (await pending(bob.page)) > 0, { describe: () => 'Bob has unsent edits' })
  // Alice's avatar list drops Bob when his connection goes.
  await waitFor(async () => (await alice.page.locator('[data-testid=avatars] .avatar').count()) === 1,
    { describe: () => 'Bob gone from Alice\'s avatars' })

  // His edits are durable in IndexedDB (the status bar says so).
  await bob.page.waitForSelector('[data-testid=status][data-stored=true]')
  // He reloads the page while offline: the shell comes from the service
  // worker, the document and his unsent edits from IndexedDB.
  const reloaded = await bob.page.reload({ waitUntil: 'load' })
  assert.ok(reloaded === null || reloaded.fromServiceWorker(), 'the page came from the service worker')
  await bob.page.waitForSelector('.ProseMirror', { timeout: 30000 })
  await waitFor(async () => (await editorText(bob.page)).includes('Hello from Alice. Hello from Bob. Bob offline, first.'), {
    describe: async () => `Bob's offline edits survived the reload: ${await editorText(bob.page)}`
  })
  assert.equal(await status(bob.page), 'offline')
  assert.ok(await pending(bob.page) > 0, 'still unsent after the reload')
  await bob.page.click('.ProseMirror')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type(' Second.')
  // Alice edits meanwhile, at the start.
  await alice.page.click('.ProseMirror')
  await alice.page.keyboard.press('Control+Home')
  await alice.page.keyboard.type('Agenda: ')
  await sleep(300)
  assert.ok(!(await editorText(alice.page)).includes('offline'), 'nothing leaked while offline')

  // 3. Bob comes back; both converge.
  await bob.context.setOffline(false)
  await waitFor(async () => (await status(bob.page)) === 'synced' && (await pending(bob.page)) === 0, {
    timeout: 30000, describe: () => 'Bob synced again'
  })
  const expected = 'Agenda: Hello from Alice. Hello from Bob. Bob offline, first. Second.'
  await waitFor(async () => (await editorText(alice.page)) === expected && (await editorText(bob.page)) === expected, {
    describe: async () => `Alice: ${await editorText(alice.page)} | Bob: ${await editorText(bob.page)}`
  })
  await bob.page.waitForSelector('.ProseMirror-yjs-cursor >> text=Alice', { timeout: 15000 })
  // The server holds the converged document too.
  const stored = await (await fetch(`${sync.http}/api/docs/${encodeURIComponent(doc)}`)).json()
  assert.match(stored.prosemirror, /Agenda: Hello from Alice\. Hello from Bob\. Bob offline, first\. Second\./)

  // Versions: both panels reach the server's history API (Bob's once he is
  // back online); a version saved through the REST API shows up in Alice's
  // panel after a refresh.
  await alice.page.waitForSelector('[data-testid=versions][data-state=ready]')
  await bob.page.waitForSelector('[data-testid=versions][data-state=ready]')
  const saved = await fetch(`${sync.http}/api/docs/${encodeURIComponent(doc)}/versions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ label: 'Agenda agreed' })
  })
  assert.equal(saved.status, 201)
  await alice.page.click('[data-testid=versions] button:has-text("Refresh")')
  await alice.page.waitForSelector('[data-testid=versions] >> text=Agenda agreed')

  // 4. Screenshots of the final state.
  mkdirSync(artifacts, { recursive: true })
  const shots = {}
  for (const [who, page] of [['alice', alice.page], ['bob', bob.page]]) {
    const path = join(artifacts, `nextjs-${who}.png`)
    shots[who] = await page.screenshot({ path, fullPage: true })
    assert.ok(statSync(path).size > 5000)
  }
  // Both side by side in one picture.
  const board = await alice.context.newPage()
  await board.setViewportSize({ width: 1400, height: 520 })
  await board.setContent(`<body style="margin:0;display:flex;gap:8px;background:#334">
    ${['alice', 'bob'].map((who) => `<figure style="margin:0;flex:1;color:#fff;font:14px sans-serif">
      <figcaption style="padding:4px">${who === 'alice' ? 'Alice' : 'Bob (was offline, reloaded)'}</figcaption>
      <img style="width:100%" src="data:image/png;base64,${shots[who].toString('base64')}"></figure>`).join('')}</body>`)
  await board.screenshot({ path: join(artifacts, 'nextjs-final.png'), fullPage: true })
  await board.close()

  // The document list and the admin page, live.
  await alice.page.goto(`${next.url}/`)
  await alice.page.waitForSelector(`[data-testid=doc-list] >> text=${doc}`)
  await alice.page.goto(`${next.url}/admin`)
  await waitFor(async () => Number(await alice.page.locator('[data-testid=metric-users]').innerText()) >= 1, {
    describe: () => 'admin shows connections'
  })
  assert.ok(Number(await alice.page.locator('[data-testid=metric-documents]').innerText()) >= 1)
  // Bob types while Alice watches the edit rate.
  await bob.page.click('.ProseMirror')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type(' More.', { delay: 50 })
  await waitFor(async () => Number(await alice.page.locator('[data-testid=metric-edits]').innerText()) > 0, {
    describe: () => 'admin shows edits per minute'
  })
  await alice.page.screenshot({ path: join(artifacts, 'nextjs-admin.png'), fullPage: true })
  assert.deepEqual(errors, [], 'no errors in the pages')
})
