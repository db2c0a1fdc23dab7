// Everything the SDK exports, for both entry points.
export { createClient, CollabClient, type ClientOptions, type ClientEvents } from './client.js'
export {
  CollabProvider, type ProviderOptions, type ProviderEvents, type Status,
  type WebSocketLike, type WebSocketConstructor
} from './provider.js'
export { Presence, type Peer, type PresenceUser, type PresenceSelection } from './presence.js'
export { CollabDocument, SharedText, SharedMap, SharedList, type ChangeSource } from './document.js'
export { Versions, type Version, type VersionInfo } from './versions.js'
export { CollabError, VersionsNotSupportedError, type CollabErrorCode } from './errors.js'
export {
  indexedDbStore, memoryStore, type OfflineStore, type OfflineStoreFactory,
  type PendingState, type StoredDocument, type IndexedDbStoreOptions
} from './offline.js'
export { backoffDelay, type BackoffOptions } from './backoff.js'
export { tokenExpiry, type TokenSource } from './token.js'
export { loadCore, core, type Core, type Replica, type Inbound, type WasmSource } from './core.js'
