// Entry point for Node: wasm-bindgen's `nodejs` module (CommonJS), which
// reads the .wasm from disk synchronously.
import { createRequire } from 'node:module'
import { setCoreLoader, type Core } from './core.js'

const require = createRequire(import.meta.url)

setCoreLoader(async (): Promise<Core> => require('../wasm/nodejs/client_wasm.js') as Core)

export * from './sdk.js'
