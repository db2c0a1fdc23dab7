// The SDK is a local package (client-wasm/js, linked by npm). Yjs must be
// one module instance for the app, the SDK and y-prosemirror alike (two
// copies break its type checks), so every import of it resolves here. The
// SDK's .wasm is an asset webpack copies (`new URL(..., import.meta.url)`).
// Built with webpack (`next build --webpack`), whose handling of that asset
// and of linked packages outside the app folder is long established.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const shared = ['yjs', 'y-protocols', 'lib0']

/** @type {import('next').NextConfig} */
const nextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // The linked SDK lives outside this folder.
  outputFileTracingRoot: join(here, '../..'),
  webpack (config) {
    for (const name of shared) {
      config.resolve.alias[name] = join(here, 'node_modules', name)
    }
    return config
  }
}

export default nextConfig
