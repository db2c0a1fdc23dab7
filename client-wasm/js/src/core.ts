// The WebAssembly core, loaded once per process by the entry point that fits
// the platform (index.ts for browsers and bundlers, node.ts for Node).
import type * as Wasm from '../wasm/web/client_wasm.js'

/** A local replica of one document and its link to the server (crdt-core in WebAssembly). */
export type Replica = Wasm.Replica
/** What one frame from the server asks the provider to do. */
export type Inbound = Wasm.Inbound

/** What the SDK uses from the WebAssembly module. */
export interface Core {
  Replica: typeof Wasm.Replica
  coreVersion: typeof Wasm.coreVersion
}

/**
 * Where the browser build fetches the `.wasm` from: a URL, a `Response`, the
 * bytes, or a compiled module. By default, next to the module that loads
 * it (bundlers copy it as an asset).
 */
export type WasmSource = RequestInfo | URL | Response | BufferSource | WebAssembly.Module

type Loader = (source?: WasmSource) => Promise<Core>

let loader: Loader | undefined
let loading: Promise<Core> | undefined
let loaded: Core | undefined

/** Called by the entry point: how this platform loads the core. */
export function setCoreLoader (load: Loader): void {
  loader = load
}

/** Loads the core (once); later calls return the same module. */
export async function loadCore (source?: WasmSource): Promise<Core> {
  if (loader === undefined) throw new Error('@collab-engine/client: no WebAssembly loader for this platform')
  loading ??= loader(source).then((core) => {
    loaded = core
    return core
  })
  return loading
}

/** The loaded core; `createClient` loads it first. */
export function core (): Core {
  if (loaded === undefined) throw new Error('@collab-engine/client: the WebAssembly core is not loaded; use `await createClient(...)` or `await loadCore()`')
  return loaded
}
