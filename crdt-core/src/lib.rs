//! A Yjs-compatible document core with no I/O.
//!
//! It turns bytes from peers into document changes and bytes for peers, and
//! treats every input as hostile: decoding is bounded by [`Limits`], panics
//! inside yrs become typed errors, and a document that an update failed
//! part-way through refuses further use until it is rebuilt.
//!
//! The pieces, layered wire → message → state:
//! - [`wire`]: y-websocket frames in and out (yrs's `sync` message types);
//! - [`update`]: bounded decoding of Yjs updates;
//! - [`Document`]: a replica with guarded mutation and JSON export;
//! - [`Presence`]: awareness states with the 30 s expiry, clock passed in;
//! - [`Session`]: one peer's protocol state, messages in, [`Effect`]s out;
//! - [`compact()`]: a log of updates into one state, in linear time.
//!
//! # Quick start: a server and a client sync through sessions
//!
//! ```
//! use crdt_core::{Document, Effect, Limits, Presence, Scope, Session};
//! use yrs::{GetString, Text, Transact};
//!
//! // The server's replica and one session for the connected client.
//! let mut server = Document::new(Limits::default());
//! let mut presence = Presence::default();
//! let mut session = Session::new(Scope::ReadWrite);
//!
//! // The client edits locally and sends its update in a sync-update frame.
//! let client = yrs::Doc::new();
//! let text = client.get_or_insert_text("content");
//! let update = {
//!     let mut txn = client.transact_mut();
//!     text.insert(&mut txn, 0, "hello");
//!     txn.encode_update_v1()
//! };
//! let frame = crdt_core::wire::sync_update(&update);
//!
//! let mut effects = Vec::new();
//! session
//!     .receive_frame(&frame, &mut server, &mut presence, 0, &mut effects)
//!     .unwrap();
//! // The host stores and forwards the change.
//! assert!(matches!(&effects[..], [Effect::Changed(c)] if c.update == update));
//! assert_eq!(server.to_json().unwrap()["content"], "hello");
//! ```
//!
//! Read-only peers are refused writes with a message that says why:
//!
//! ```
//! # use crdt_core::{Document, Effect, Limits, Presence, Scope, Session};
//! # use yrs::{Text, Transact};
//! let mut server = Document::new(Limits::default());
//! let mut session = Session::new(Scope::ReadOnly);
//! let client = yrs::Doc::new();
//! let update = {
//!     let text = client.get_or_insert_text("t");
//!     let mut txn = client.transact_mut();
//!     text.insert(&mut txn, 0, "x");
//!     txn.encode_update_v1()
//! };
//! let mut effects = Vec::new();
//! session
//!     .receive_frame(
//!         &crdt_core::wire::sync_update(&update),
//!         &mut server,
//!         &mut Presence::default(),
//!         0,
//!         &mut effects,
//!     )
//!     .unwrap();
//! assert!(matches!(&effects[1], Effect::Refused { reason } if reason.contains("read-only")));
//! assert_eq!(server.state_vector(), yrs::StateVector::default());
//! ```

pub mod change;
pub mod chunk;
pub mod compact;
mod doc;
mod erase;
mod guard;
mod json;
mod limits;
pub mod presence;
pub mod session;
pub mod update;
mod v2;
pub mod version;
mod waiting;
pub mod wire;

pub use change::Change;
pub use compact::compact;
pub use doc::{Applied, ApplyError, Document, LoadError, decode_state_vector};
pub use erase::{EraseError, Erasure};
pub use json::{JsonError, MAX_JSON_DEPTH};
pub use limits::Limits;
pub use presence::{Presence, PresenceChange};
pub use session::{Effect, Scope, Session, SessionError};
pub use update::{DecodedUpdate, Encoding, UpdateError, decode_update, decode_with_references};
pub use version::{DocDiff, RootDiff, VersionError};
pub use wire::FrameError;

/// The yrs version this core is built on, re-exported so hosts use the same
/// types.
pub use yrs;
