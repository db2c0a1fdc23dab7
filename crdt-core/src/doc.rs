//! A Yjs document replica whose every mutation from outside is guarded.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

use crate::Limits;
use crate::chunk::encode_chunked;
use crate::guard::count_fits;
use crate::update::{DecodedUpdate, Encoding, UpdateError, decode_with_references};
use crate::v2::encode_v2;
use crate::waiting::{WaitingRoom, is_ready};
use crate::wire;

/// Why an update could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The update was refused before it reached the document.
    #[error(transparent)]
    Decode(#[from] UpdateError),
    /// yrs refused the update part-way through integrating it. The document
    /// is poisoned (see [`Document::is_poisoned`]).
    #[error("invalid update: {0}")]
    Integrate(String),
    /// yrs panicked while integrating the update. The document is poisoned.
    #[error("invalid update: the document rejected it")]
    Panicked,
    /// An earlier update failed part-way; this replica must be rebuilt from
    /// durable state before it is used again.
    #[error("document must be reloaded after a failed update")]
    Poisoned,
    /// Too many updates wait for content this document does not have.
    #[error(
        "too many updates wait for content this document lacks ({updates} updates, {bytes} bytes held)"
    )]
    TooManyWaiting {
        /// Updates held.
        updates: usize,
        /// Bytes held.
        bytes: usize,
    },
}

/// What applying an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The update carried structs or deletions; the document integrated
    /// them, or keeps them pending until their dependencies arrive.
    Changed,
    /// The update was empty: nothing to store or forward.
    Empty,
}

/// A Yjs document replica.
///
/// Updates from peers go through [`Document::apply`], which bounds decoding
/// and contains panics inside yrs. An update that fails part-way may leave
/// yrs's structures half-integrated, so the replica then refuses all further
/// work ([`ApplyError::Poisoned`]) until its host rebuilds it from durable
/// state with [`Document::load`]. A hostile update can cost a reload; it can
/// never corrupt what is stored or served.
pub struct Document {
    doc: Doc,
    limits: Limits,
    poisoned: bool,
    /// Counts changes, so cached encodings know when they are stale.
    version: u64,
    /// The whole state as sync reply frames, and the version it reflects:
    /// clients joining together share one encoding.
    full_sync: Option<(u64, Vec<Bytes>)>,
    /// Updates whose dependencies have not arrived (see [`crate::waiting`]).
    waiting: WaitingRoom,
    /// Held updates dropped because they could not integrate.
    dropped: u64,
}

impl Document {
    /// An empty document with a random client id.
    pub fn new(limits: Limits) -> Self {
        Self::with_options(limits, Options::default())
    }

    /// An empty document with a fixed client id (for tests and peers that
    /// persist their id).
    pub fn with_client_id(limits: Limits, client_id: u64) -> Self {
        Self::with_options(
            limits,
            Options::with_client_id(yrs::ClientID::new(client_id)),
        )
    }

    fn with_options(limits: Limits, mut options: Options) -> Self {
        // JavaScript strings index in UTF-16 code units; matching them keeps
        // positions meaningful across Yjs and this core.
        options.offset_kind = OffsetKind::Utf16;
        Self {
            doc: Doc::with_options(options),
            limits,
            poisoned: false,
            version: 0,
            full_sync: None,
            waiting: WaitingRoom::default(),
            dropped: 0,
        }
    }

    /// Rebuilds a document from a stored snapshot and the update log written
    /// after it, in order. Linear in their total size.
    ///
    /// Stored data was validated when it was accepted, so sizes are not
    /// bounded here (a compacted state may exceed the per-update limit), but
    /// nesting still is, and a bad entry is reported by its index.
    pub fn load<'a>(
        limits: Limits,
        snapshot: Option<(Encoding, &'a [u8])>,
        log: impl IntoIterator<Item = (Encoding, &'a [u8])>,
    ) -> Result<Self, LoadError> {
        let mut doc = Self::new(limits);
        if let Some((encoding, bytes)) = snapshot {
            doc.apply_stored(bytes, encoding)
                .map_err(|error| LoadError::Snapshot { error })?;
        }
        for (index, (encoding, bytes)) in log.into_iter().enumerate() {
            doc.apply_stored(bytes, encoding)
                .map_err(|error| LoadError::LogEntry { index, error })?;
        }
        Ok(doc)
    }

    /// Applies an update read back from storage (or relayed by another node
    /// sharing that storage): it was bounded when first accepted, so its
    /// size is not limited again (a compacted state may exceed the
    /// per-update limit), but nesting still is.
    pub fn apply_stored(
        &mut self,
        bytes: &[u8],
        encoding: Encoding,
    ) -> Result<Applied, ApplyError> {
        let limits = self.limits.clone();
        self.limits.max_update_bytes = usize::MAX;
        let applied = self.apply(bytes, encoding);
        self.limits = limits;
        applied
    }

    /// Applies an update from a peer. See the type's documentation for what
    /// happens when it fails.
    pub fn apply(&mut self, bytes: &[u8], encoding: Encoding) -> Result<Applied, ApplyError> {
        if self.poisoned {
            return Err(ApplyError::Poisoned);
        }
        let update = decode_with_references(bytes, encoding, &self.limits)?;
        self.apply_decoded(update)
    }

    /// Applies an update decoded with [`decode_with_references`]. An update
    /// whose dependencies have not all arrived is held (and counts as
    /// [`Applied::Changed`]: it is valid, and belongs in storage and with
    /// other peers) until they do.
    pub fn apply_decoded(&mut self, decoded: DecodedUpdate) -> Result<Applied, ApplyError> {
        if self.poisoned {
            return Err(ApplyError::Poisoned);
        }
        if decoded.is_empty() {
            return Ok(Applied::Empty);
        }
        self.version += 1;
        let have = self.state_vector();
        if is_ready(&decoded, &have) {
            self.integrate(decoded.update)?;
        } else {
            self.waiting.hold(decoded, &self.limits)?;
            match self.waiting.take_all_if_ready_together(&have) {
                Some(merged) => self.integrate_held(merged)?,
                None => return Ok(Applied::Changed),
            }
        }
        // What waited may now be ready, alone or together, and what that
        // releases in turn. Nearly always nothing waits: skip the state
        // vector then, it is the costliest part of this bookkeeping.
        while !self.waiting.is_empty() {
            let have = self.state_vector();
            if let Some(waiting) = self.waiting.take_ready(&have) {
                self.integrate_held(waiting.decoded.update)?;
            } else if let Some(merged) = self.waiting.take_all_if_ready_together(&have) {
                self.integrate_held(merged)?;
            } else {
                break;
            }
        }
        Ok(Applied::Changed)
    }

    /// Records a change made through [`Document::yrs`] by this host, so
    /// cached encodings are refreshed.
    pub fn changed_locally(&mut self) {
        self.version += 1;
    }

    /// Integrates an update that was held for its dependencies. yrs has
    /// not checked it against the document yet: a held update can name as
    /// parent an item that turns out not to be a shared type, and would
    /// fail half-way, poisoning the replica, and again on every rebuild
    /// from storage. So it is tried on a copy first and dropped (see
    /// [`Document::dropped_updates`]) if it fails there. Held updates are
    /// rare, so the copy's cost is too.
    fn integrate_held(&mut self, update: Update) -> Result<(), ApplyError> {
        let bytes = update.encode_v1();
        let state = self
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        if !self.integrates_fresh([state.as_slice(), &bytes]) {
            self.dropped += 1;
            return Ok(());
        }
        self.integrate(update)
    }

    /// Whether `updates`, in order, integrate into a fresh document.
    fn integrates_fresh<'a>(&self, updates: impl IntoIterator<Item = &'a [u8]>) -> bool {
        let copy = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let updates: Vec<&[u8]> = updates.into_iter().collect();
        catch_unwind(AssertUnwindSafe(|| {
            let mut txn = copy.transact_mut();
            updates.iter().all(|bytes| {
                Update::decode_v1(bytes).is_ok_and(|update| txn.apply_update(update).is_ok())
            })
        }))
        .unwrap_or(false)
    }

    /// Whether `state` loads, as [`Document::load`] loads a snapshot, with
    /// everything this document has integrated integrated there too.
    fn reloads_whole(&self, state: &[u8]) -> bool {
        let Ok(copy) = Document::load(self.limits.clone(), Some((Encoding::V1, state)), []) else {
            return false;
        };
        let (have, loaded) = (self.state_vector(), copy.state_vector());
        have.iter()
            .all(|(client, clock)| loaded.get(client) >= *clock)
    }

    /// Held updates dropped because they could not integrate once their
    /// dependencies were there. (Held updates left out of an encoded state
    /// because the state would not reload whole are not counted: they stay
    /// held in this replica.)
    pub fn dropped_updates(&self) -> u64 {
        self.dropped
    }

    /// Hands an update whose dependencies are all present to yrs.
    fn integrate(&mut self, update: Update) -> Result<(), ApplyError> {
        let doc = &self.doc;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            txn.apply_update(update)
        }));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.poisoned = true;
                Err(ApplyError::Integrate(e.to_string()))
            }
            Err(_) => {
                self.poisoned = true;
                Err(ApplyError::Panicked)
            }
        }
    }

    /// Whether an earlier update failed part-way. A poisoned replica must be
    /// rebuilt with [`Document::load`].
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The document's state vector.
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// Everything this document holds that a peer at `state_vector` lacks,
    /// as a v1 update (what a sync step 2 carries).
    pub fn diff_v1(&self, state_vector: &StateVector) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(state_vector)
    }

    /// The frames that answer a peer's sync step 1: what it lacks, as
    /// updates of at most [`Limits::max_sync_chunk_bytes`], all but the last
    /// sent as sync updates and the last as the step 2 (so a y-websocket
    /// client reports "synced" only once it has everything). A fresh peer's
    /// reply is encoded once and shared until the document changes.
    pub fn sync_reply(&mut self, state_vector: &StateVector) -> Vec<Bytes> {
        let fresh = state_vector.is_empty();
        if fresh
            && let Some((version, frames)) = &self.full_sync
            && *version == self.version
        {
            return frames.clone();
        }
        let mut chunks = encode_chunked(
            &self.doc.transact(),
            state_vector,
            self.limits.max_sync_chunk_bytes,
        );
        // Held updates travel too, whole: the peer's Yjs keeps them pending
        // until their dependencies arrive, as this document does.
        let last = chunks.pop().expect("at least one chunk");
        chunks.extend(self.waiting.updates().map(<[u8]>::to_vec));
        chunks.push(last);
        let last = chunks.len() - 1;
        let frames: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                Bytes::from(if i == last {
                    wire::sync_step2(chunk)
                } else {
                    wire::sync_update(chunk)
                })
            })
            .collect();
        if fresh {
            self.full_sync = Some((self.version, frames.clone()));
        }
        frames
    }

    /// The whole state as one update, pending updates included.
    pub fn encode_state(&self, encoding: Encoding) -> Vec<u8> {
        let mut v1 = self
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        if !self.waiting.is_empty() {
            // Held updates are part of the state: a snapshot without them
            // would drop them once the log they came from is trimmed. But
            // merged, their references can resolve differently: a state
            // that does not load back, or loads with integrated blocks
            // left pending, would lose data once stored. Then it is stored
            // without them (their peers send them again when they sync).
            let parts = std::iter::once(v1.as_slice()).chain(self.waiting.updates());
            let merged = yrs::merge_updates_v1(parts).expect("state and held updates decode");
            if self.reloads_whole(&merged) {
                v1 = merged;
            }
        }
        match encoding {
            Encoding::V1 => v1,
            // Not yrs's own v2 state encoding. It writes the length of a
            // Skip (the gap left by a block that arrived ahead of its
            // client's earlier ones) to the v2 length column where every
            // decoder reads it from the main stream, so such a state does
            // not load, and panics merging it with a pending delete set.
            // `Update` writes Skips as Yjs does; `v2` fixes binary content.
            Encoding::V2 => encode_v2(
                &Update::decode_v1(&v1).expect("yrs decodes the v1 state it just encoded"),
            ),
        }
    }

    /// Whether the document holds updates whose dependencies have not
    /// arrived yet.
    pub fn has_pending(&self) -> bool {
        !self.waiting.is_empty() || self.doc.transact().has_missing_updates()
    }

    /// Number of updates held until their dependencies arrive.
    pub fn waiting_updates(&self) -> usize {
        self.waiting.len()
    }

    /// The limits this replica applies to peer updates.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The underlying yrs document, for local edits and reads. Local edits
    /// are trusted; only updates from peers need [`Document::apply`].
    pub fn yrs(&self) -> &Doc {
        &self.doc
    }
}

/// Why stored state could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The snapshot did not apply.
    #[error("stored snapshot is invalid: {error}")]
    Snapshot {
        /// What went wrong.
        error: ApplyError,
    },
    /// A log entry did not apply.
    #[error("stored update #{index} is invalid: {error}")]
    LogEntry {
        /// Position of the entry in the log given to [`Document::load`].
        index: usize,
        /// What went wrong.
        error: ApplyError,
    },
}

/// Decodes a state vector sent by a peer (for example in an HTTP query).
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, UpdateError> {
    // yrs reserves a hash table for the count it reads first, writing a
    // byte per entry; an entry takes at least two bytes (client, clock).
    if !count_fits(bytes, 2) {
        return Err(UpdateError::Malformed {
            encoding: Encoding::V1,
            reason: "state vector count exceeds its length".into(),
        });
    }
    catch_unwind(|| StateVector::decode_v1(bytes))
        .map_err(|_| UpdateError::DecoderPanicked {
            encoding: Encoding::V1,
        })?
        .map_err(|e| UpdateError::Malformed {
            encoding: Encoding::V1,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Array, GetString, Map, MapPrelim, Text, TextPrelim, WriteTxn};

    #[test]
    fn a_held_update_that_cannot_integrate_is_dropped_not_poisoning() {
        // Bob types into a nested text that Alice's item <1#0> holds...
        let alice = Doc::with_client_id(1);
        let map = alice.get_or_insert_map("m");
        map.insert(&mut alice.transact_mut(), "body", TextPrelim::new(""));
        let bob = Doc::with_client_id(2);
        bob.transact_mut()
            .apply_update(
                Update::decode_v1(
                    &alice
                        .transact()
                        .encode_state_as_update_v1(&StateVector::default()),
                )
                .unwrap(),
            )
            .unwrap();
        let body = bob.get_or_insert_map("m").get(&bob.transact(), "body");
        let body = body.unwrap().cast::<yrs::TextRef>().unwrap();
        let bobs = {
            let mut txn = bob.transact_mut();
            body.insert(&mut txn, 0, "hi");
            txn.encode_update_v1()
        };
        // ...but the <1#0> that reaches the server is plain text.
        let forged = text_update(1, "x");

        let mut server = Document::new(Limits::default());
        server.apply(&bobs, Encoding::V1).unwrap();
        assert_eq!(server.waiting_updates(), 1, "held for <1#0>");
        server.apply(&forged, Encoding::V1).unwrap();
        assert!(!server.is_poisoned());
        assert_eq!(server.dropped_updates(), 1);
        assert_eq!(server.to_json().unwrap()["t"], "x");
        // What it stores loads back.
        let state = server.encode_state(Encoding::V2);
        Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
    }

    fn text_update(client: u64, text: &str) -> Vec<u8> {
        let doc = Doc::with_client_id(client);
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.push(&mut txn, text);
        txn.encode_update_v1()
    }

    fn text_of(doc: &Document) -> String {
        let t = doc.yrs().get_or_insert_text("t");
        t.get_string(&doc.yrs().transact())
    }

    #[test]
    fn applies_and_reencodes() {
        let mut doc = Document::new(Limits::default());
        assert_eq!(
            doc.apply(&text_update(1, "hi"), Encoding::V1),
            Ok(Applied::Changed)
        );
        assert_eq!(text_of(&doc), "hi");
        let v2 = doc.encode_state(Encoding::V2);
        let copy = Document::load(Limits::default(), Some((Encoding::V2, &v2)), []).unwrap();
        assert_eq!(text_of(&copy), "hi");
    }

    #[test]
    fn empty_updates_are_reported_as_such() {
        let mut doc = Document::new(Limits::default());
        assert_eq!(doc.apply(&[0, 0], Encoding::V1), Ok(Applied::Empty));
        assert_eq!(
            doc.apply(Update::EMPTY_V2, Encoding::V2),
            Ok(Applied::Empty)
        );
    }

    #[test]
    fn a_malformed_update_leaves_the_document_untouched() {
        let mut doc = Document::new(Limits::default());
        doc.apply(&text_update(1, "keep"), Encoding::V1).unwrap();
        let bad = text_update(2, "x");
        assert!(matches!(
            doc.apply(&bad[..bad.len() - 2], Encoding::V1),
            Err(ApplyError::Decode(_))
        ));
        assert!(!doc.is_poisoned());
        assert_eq!(text_of(&doc), "keep");
    }

    #[test]
    fn a_state_with_a_gap_encodes_in_both_encodings() {
        // Client 3's second update, without its first: a new root array
        // (integrated behind a Skip for the missing clocks 0..2) and the
        // deletion of a clock-0 map entry (kept as a pending delete set).
        let source = Doc::with_client_id(3);
        let root = source.get_or_insert_map("root");
        root.insert(&mut source.transact_mut(), "map", MapPrelim::default());
        let second = {
            let mut txn = source.transact_mut();
            root.remove(&mut txn, "map");
            txn.get_or_insert_array("list").push_back(&mut txn, "a");
            txn.encode_update_v1()
        };
        let mut doc = Document::new(Limits::default());
        assert_eq!(doc.apply(&second, Encoding::V1), Ok(Applied::Changed));
        for encoding in [Encoding::V1, Encoding::V2] {
            let state = doc.encode_state(encoding);
            let copy = Document::load(Limits::default(), Some((encoding, &state)), [])
                .unwrap_or_else(|e| panic!("{encoding}: {e}"));
            assert_eq!(
                copy.encode_state(Encoding::V1),
                doc.encode_state(Encoding::V1)
            );
        }
    }

    #[test]
    fn binary_content_survives_a_v2_state() {
        // A Yjs array holding `Uint8Array [1, 2]` (yrs never writes binary
        // content itself).
        let update = [1, 1, 5, 0, 3, 1, 1, b'a', 2, 1, 2, 0];
        let mut doc = Document::new(Limits::default());
        doc.apply(&update, Encoding::V1).unwrap();
        let state = doc.encode_state(Encoding::V2);
        let copy = Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
        assert_eq!(
            copy.to_json().unwrap(),
            serde_json::json!({ "a": [[1, 2]] })
        );
    }

    #[test]
    fn a_lying_state_vector_count_is_refused_before_reserving() {
        // 2^29-1 entries in five bytes: yrs would touch half a gigabyte.
        let err = decode_state_vector(&[0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert!(format!("{err}").contains("count exceeds"), "{err}");
        let sv = StateVector::from_iter([(yrs::ClientID::new(7), 3)]);
        assert_eq!(decode_state_vector(&sv.encode_v1()), Ok(sv));
    }

    #[test]
    fn an_update_ahead_of_its_dependencies_waits_and_still_travels() {
        let author = Doc::with_client_id(3);
        let text = author.get_or_insert_text("t");
        let first = {
            let mut txn = author.transact_mut();
            text.push(&mut txn, "ab");
            txn.encode_update_v1()
        };
        let second = {
            let mut txn = author.transact_mut();
            text.insert(&mut txn, 1, "X");
            txn.encode_update_v1()
        };
        let mut doc = Document::new(Limits::default());
        assert_eq!(doc.apply(&second, Encoding::V1), Ok(Applied::Changed));
        assert_eq!(doc.waiting_updates(), 1);
        assert!(doc.has_pending());
        // A state handed out meanwhile carries the waiting update.
        let state = doc.encode_state(Encoding::V2);
        let frames = doc.sync_reply(&StateVector::default());
        assert_eq!(
            frames.len(),
            2,
            "the state, then the held update before the step 2"
        );

        doc.apply(&first, Encoding::V1).unwrap();
        assert_eq!(doc.waiting_updates(), 0);
        assert_eq!(text_of(&doc), "aXb");
        let mut copy = Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
        copy.apply(&first, Encoding::V1).unwrap();
        assert_eq!(
            text_of(&copy),
            "aXb",
            "the held update survived in the state"
        );
    }

    #[test]
    fn a_load_names_the_bad_entry() {
        let good = text_update(1, "a");
        let err = Document::load(
            Limits::default(),
            None,
            [(Encoding::V1, &good[..]), (Encoding::V1, &[1, 2, 3][..])],
        )
        .err()
        .unwrap();
        assert!(matches!(err, LoadError::LogEntry { index: 1, .. }), "{err}");
    }
}
