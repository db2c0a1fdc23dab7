// The built-in page in headless Chromium: two editors, one document.
//
// The page loads yjs and y-websocket from esm.sh. This machine has no
// internet, so the test serves the same npm packages, bundled here with
// esbuild, at those URLs: what runs is the page's own code and stock Yjs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'
import { root, startServer, waitFor, yjsClient, synced } from './lib.mjs'

const artifacts = join(root, 'test-artifacts')

async function bundle (entry, external) {
  const out = await build({
    stdin: { contents: `export * from '${entry}'`, resolveDir: import.meta.dirname },
    bundle: true,
    format: 'esm',
    write: false,
    external
  })
  return out.outputFiles[0].text
}

test('the built-in page syncs two editors with presence and carets', async (t) => {
  const server = await startServer()
  t.after(() => server.stop())
  const modules = {
    yjs: await bundle('yjs', []),
    'y-websocket': await bundle('y-websocket', ['yjs'])
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run']
  })
  t.after(() => browser.close())
  const page = await browser.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.route('https://esm.sh/**', (route) => {
    const url = route.request().url()
    const name = url.includes('/y-websocket@') ? 'y-websocket' : url.includes('/yjs@') ? 'yjs' : null
    if (!name) return route.abort()
    return route.fulfill({ contentType: 'text/javascript', body: modules[name] })
  })

  const doc = 'browser/page-test'
  await page.goto(`${server.http}/?doc=${doc}`)
  const left = page.locator('[data-testid=left] textarea')
  const right = page.locator('[data-testid=right] textarea')
  await waitFor(async () => (await page.locator('.dot.synced').count()) === 2, { describe: () => 'both panes synced' })

  await left.click()
  await left.pressSequentially('Hello from the left. ')
  await waitFor(async () => (await right.inputValue()) === 'Hello from the left. ', {
    describe: () => 'right pane shows the left text'
  })
  await right.click()
  await right.press('End')
  await right.pressSequentially('And from the right.')
  const both = 'Hello from the left. And from the right.'
  await waitFor(async () => (await left.inputValue()) === both, { describe: () => 'left pane shows both' })

  // Presence: each pane shows two avatars and the other side's caret.
  await waitFor(async () => (await page.locator('[data-testid=left] .avatar').count()) === 2)
  await waitFor(async () => (await page.locator('[data-testid=left] .caret').count()) === 1, {
    describe: () => 'remote caret in the left pane'
  })

  // A stock Node client on the same document sees the browser's text.
  const node = yjsClient(server, doc)
  t.after(() => node.destroy())
  await synced(node.provider)
  assert.equal(node.doc.getText('content').toString(), both)

  mkdirSync(artifacts, { recursive: true })
  await page.screenshot({ path: join(artifacts, 'built-in-page.png'), fullPage: true })
  assert.ok(readFileSync(join(artifacts, 'built-in-page.png')).length > 1000)
  assert.deepEqual(errors, [], 'no errors in the page')
})
