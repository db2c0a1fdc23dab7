//! crdt-core in WebAssembly: the core of the browser and Node SDK
//! (`client-wasm/js`).
//!
//! The SDK hands an application a standard `Y.Doc` and keeps a replica of it
//! here. This crate does the protocol work: it keeps the replica, decodes
//! and bounds every frame from the server, encodes every frame to it,
//! answers the server's state vector with what it lacks (offline edits
//! included) and merges those edits for storage. The logic lives in
//! [`replica`], plain Rust tested natively; this file is only the
//! `#[wasm_bindgen]` surface.
//!
//! Built for `wasm32-unknown-unknown` by `client-wasm/build.sh`; it also
//! builds natively, so `cargo test --workspace` runs its tests.

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

mod replica;

use replica::ReplicaError;

fn js_error(error: ReplicaError) -> JsError {
    JsError::new(&error.to_string())
}

/// A local replica of one document and its link to the server.
#[wasm_bindgen]
pub struct Replica {
    inner: replica::Replica,
}

#[wasm_bindgen]
impl Replica {
    /// An empty replica for the `Y.Doc` whose client id is `localClient`.
    #[wasm_bindgen(constructor)]
    pub fn new(local_client: f64) -> Replica {
        Replica {
            inner: replica::Replica::new(local_client as u64, crdt_core::Limits::default()),
        }
    }

    /// Applies an update read back from storage or fetched over HTTP.
    #[wasm_bindgen(js_name = applyUpdate)]
    pub fn apply_update(&mut self, update: &[u8]) -> Result<(), JsError> {
        self.inner.apply_update(update).map_err(js_error)
    }

    /// Applies a local edit; returns the frame to send if a connection is
    /// open, else counts it as pending.
    #[wasm_bindgen(js_name = localUpdate)]
    pub fn local_update(&mut self, update: &[u8]) -> Result<Option<Vec<u8>>, JsError> {
        self.inner.local_update(update).map_err(js_error)
    }

    /// A connection opened: returns the first frame to send (sync step 1).
    pub fn open(&mut self) -> Vec<u8> {
        self.inner.open()
    }

    /// The connection closed: returns the remote awareness clients to drop.
    pub fn close(&mut self) -> Vec<f64> {
        to_f64(self.inner.close())
    }

    /// Handles a frame from the server at `nowMs`.
    pub fn receive(&mut self, frame: &[u8], now_ms: f64) -> Inbound {
        Inbound {
            inner: self.inner.receive(frame, now_ms as u64),
        }
    }

    /// Wraps a local awareness update (y-protocols encoding) in a frame.
    #[wasm_bindgen(js_name = awarenessFrame)]
    pub fn awareness_frame(&self, update: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inner.awareness_frame(update).map_err(js_error)
    }

    /// Drops remote awareness states not renewed for 30 s; returns them.
    #[wasm_bindgen(js_name = expirePresence)]
    pub fn expire_presence(&mut self, now_ms: f64) -> Vec<f64> {
        to_f64(self.inner.expire_presence(now_ms as u64))
    }

    /// Remote awareness clients known to be here.
    #[wasm_bindgen(js_name = remoteClients)]
    pub fn remote_clients(&self) -> Vec<f64> {
        to_f64(self.inner.remote_clients())
    }

    /// Whether a connection is open.
    #[wasm_bindgen(getter, js_name = isOpen)]
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Whether the server's step 2 arrived on the open connection.
    #[wasm_bindgen(getter, js_name = isSynced)]
    pub fn is_synced(&self) -> bool {
        self.inner.is_synced()
    }

    /// Local edits not yet handed to a connection.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        u32::try_from(self.inner.pending()).unwrap_or(u32::MAX)
    }

    /// The pending edits merged into one v1 update, if any.
    #[wasm_bindgen(js_name = pendingUpdate)]
    pub fn pending_update(&self) -> Option<Vec<u8>> {
        self.inner.pending_update()
    }

    /// Restores a pending count and offline state vector saved by an earlier
    /// page, after its state was applied.
    #[wasm_bindgen(js_name = restorePending)]
    pub fn restore_pending(&mut self, pending: u32, offline_since: &[u8]) -> Result<(), JsError> {
        self.inner
            .restore_pending(pending as usize, offline_since)
            .map_err(js_error)
    }

    /// The state vector when the replica went offline, to save with the
    /// pending count.
    #[wasm_bindgen(js_name = offlineSince)]
    pub fn offline_since(&self) -> Option<Vec<u8>> {
        self.inner.offline_since()
    }

    /// The replica's state vector (v1).
    #[wasm_bindgen(js_name = stateVector)]
    pub fn state_vector(&self) -> Vec<u8> {
        self.inner.state_vector()
    }

    /// What a peer at `stateVector` lacks, as one v1 update.
    pub fn diff(&self, state_vector: &[u8]) -> Result<Vec<u8>, JsError> {
        self.inner.diff(state_vector).map_err(js_error)
    }

    /// The whole state as one v1 update.
    #[wasm_bindgen(js_name = encodeState)]
    pub fn encode_state(&self) -> Vec<u8> {
        self.inner.encode_state()
    }

    /// The content as JSON text, an object keyed by root name.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> Result<String, JsError> {
        self.inner.to_json().map_err(js_error)
    }
}

/// What one frame from the server asks the host to do. Carry out every
/// effect, then handle `error` if there is one.
#[wasm_bindgen]
pub struct Inbound {
    inner: replica::Inbound,
}

#[wasm_bindgen]
impl Inbound {
    /// Frames to send back, in order (`Uint8Array[]`).
    #[wasm_bindgen(getter)]
    pub fn replies(&self) -> Array {
        bytes_array(&self.inner.replies)
    }

    /// Updates to apply to the `Y.Doc` (`Uint8Array[]`).
    #[wasm_bindgen(getter)]
    pub fn updates(&self) -> Array {
        bytes_array(&self.inner.updates)
    }

    /// Accepted awareness entries for `applyAwarenessUpdate`, if any.
    #[wasm_bindgen(getter)]
    pub fn awareness(&self) -> Option<Vec<u8>> {
        self.inner.awareness.clone()
    }

    /// The server's first step 2 on this connection arrived.
    #[wasm_bindgen(getter)]
    pub fn synced(&self) -> bool {
        self.inner.synced
    }

    /// Every pending edit is in `replies`.
    #[wasm_bindgen(getter)]
    pub fn flushed(&self) -> bool {
        self.inner.flushed
    }

    /// The server asked for our awareness state.
    #[wasm_bindgen(getter, js_name = awarenessQueried)]
    pub fn awareness_queried(&self) -> bool {
        self.inner.awareness_queried
    }

    /// Reasons of permission-denied messages.
    #[wasm_bindgen(getter)]
    pub fn denied(&self) -> Vec<String> {
        self.inner.denied.clone()
    }

    /// Why the frame was refused part-way, if it was.
    #[wasm_bindgen(getter)]
    pub fn error(&self) -> Option<String> {
        self.inner.error.as_ref().map(ToString::to_string)
    }
}

fn bytes_array(items: &[Vec<u8>]) -> Array {
    items
        .iter()
        .map(|bytes| Uint8Array::from(bytes.as_slice()))
        .collect()
}

fn to_f64(clients: Vec<u64>) -> Vec<f64> {
    // Yjs client ids are 32-bit; anything a peer sends fits an f64 exactly up
    // to 2^53, far beyond that.
    clients.into_iter().map(|c| c as f64).collect()
}

/// The version of this module (the client-wasm crate).
#[wasm_bindgen(js_name = coreVersion)]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
