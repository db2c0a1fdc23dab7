// Entry point for browsers and bundlers: wasm-bindgen's `web` module, which
// fetches the .wasm next to it (bundlers copy it as an asset).
import initWasm, * as wasm from '../wasm/web/client_wasm.js'
import { setCoreLoader, type Core, type WasmSource } from './core.js'

setCoreLoader(async (source?: WasmSource): Promise<Core> => {
  await initWasm(source === undefined ? undefined : { module_or_path: source })
  return wasm
})

export * from './sdk.js'
