//! Large sync replies as several valid updates of bounded size.
//!
//! A 20 MB document sent as one frame trips client timeouts and costs a
//! 20 MB buffer per joiner. yrs can only encode "everything above a state
//! vector", so this module encodes once through [`Recorder`], an encoder
//! that notes where every client section and every struct starts, and cuts
//! the bytes at struct boundaries; a string item too large for one chunk
//! is cut into several items the way Yjs splits items when text is typed
//! into them (a 20 MB paste is one item). Every chunk is a complete v1 update: its
//! own client sections (a section split in two continues at the clock where
//! the first part ended) and an empty delete set; the last chunk carries the
//! delete set. Applied in any order, the chunks are the original update.

use std::borrow::Cow;

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::varint::VarInt;
use yrs::encoding::write::Write;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Any, ClientID, ID, IdSet, ReadTxn, StateVector, Transact};

/// A v1 encoder that records where client sections and structs start.
///
/// Its output is byte-for-byte yrs's `EncoderV1` output (each method below
/// mirrors `EncoderV1`'s one-line body); a test holds it to that.
#[derive(Default)]
struct Recorder {
    buf: Vec<u8>,
    /// Start of the most recent varint, so `write_client` can find the
    /// struct count written just before it.
    last_var: usize,
    sections: Vec<Section>,
}

#[derive(Debug)]
struct Section {
    /// Where the section header (struct count, client, clock) starts.
    header: usize,
    client: ClientID,
    /// Where the clock varint starts.
    clock_at: usize,
    /// Where each struct starts.
    structs: Vec<usize>,
}

impl Write for Recorder {
    fn write_all(&mut self, buf: &[u8]) {
        self.buf.extend_from_slice(buf);
    }

    fn write_u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    fn write_var<T: VarInt>(&mut self, num: T) {
        self.last_var = self.buf.len();
        num.write(self);
    }
}

impl Encoder for Recorder {
    fn to_vec(self) -> Vec<u8> {
        self.buf
    }
    fn reset_ds_cur_val(&mut self) {}
    fn write_ds_clock(&mut self, clock: u32) {
        self.write_var(clock)
    }
    fn write_ds_len(&mut self, len: u32) {
        self.write_var(len)
    }
    fn write_left_id(&mut self, id: &ID) {
        self.write_var(id.client.get());
        self.write_var(id.clock)
    }
    fn write_right_id(&mut self, id: &ID) {
        self.write_var(id.client.get());
        self.write_var(id.clock)
    }
    fn write_client(&mut self, client: ClientID) {
        // Only section headers write a bare client id: the struct count was
        // the varint just before, and the clock is the varint just after.
        let header = self.last_var;
        self.write_var(client.get());
        self.sections.push(Section {
            header,
            client,
            clock_at: self.buf.len(),
            structs: Vec::new(),
        });
    }
    fn write_info(&mut self, info: u8) {
        if let Some(section) = self.sections.last_mut() {
            section.structs.push(self.buf.len());
        }
        self.write_u8(info)
    }
    fn write_parent_info(&mut self, is_y_key: bool) {
        self.write_var(u32::from(is_y_key))
    }
    fn write_type_ref(&mut self, info: u8) {
        self.write_u8(info)
    }
    fn write_len(&mut self, len: u32) {
        self.write_var(len)
    }
    fn write_any(&mut self, any: &Any) {
        any.encode(self)
    }
    fn write_json(&mut self, any: &Any) {
        let mut json = String::new();
        any.to_json(&mut json);
        self.write_string(&json)
    }
    fn write_key(&mut self, key: &str) {
        self.write_string(key)
    }
}

/// Everything `txn` holds above `state_vector`, as v1 updates of at most
/// `max_bytes` each. A string item larger than that is cut into several
/// items, as Yjs itself splits them; any other oversized struct (a huge
/// binary or embed) travels alone.
///
/// Returns one update when the whole fits, or when the encoding is not what
/// this module expects (then the caller still gets a correct, if large,
/// reply).
pub fn encode_chunked<T: ReadTxn>(
    txn: &T,
    state_vector: &StateVector,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut recorder = Recorder::default();
    txn.encode_state_as_update(state_vector, &mut recorder);
    if recorder.buf.len() <= max_bytes {
        return vec![recorder.buf];
    }
    let deleted = txn.snapshot().delete_set;
    split(&recorder, &deleted, max_bytes).unwrap_or_else(|| vec![recorder.buf])
}

/// One struct of the encoding, with the clock it starts at.
struct Span<'a> {
    section: usize,
    clock: u32,
    bytes: Cow<'a, [u8]>,
}

/// Every struct in encoding order, with oversized strings cut into pieces.
fn spans(rec: &Recorder, blocks_end: usize, max_bytes: usize) -> Option<Vec<Span<'_>>> {
    let bytes = &rec.buf;
    let mut spans = Vec::new();
    for (i, section) in rec.sections.iter().enumerate() {
        let section_end = rec
            .sections
            .get(i + 1)
            .map_or(blocks_end, |next| next.header);
        let mut clock = Cursor::new(&bytes[section.clock_at..])
            .read_var::<u32>()
            .ok()?;
        for (j, &start) in section.structs.iter().enumerate() {
            let end = section.structs.get(j + 1).copied().unwrap_or(section_end);
            let encoded = &bytes[start..end];
            let shape = shape(encoded)?;
            match shape.string_at {
                Some(at) if encoded.len() + PART_HEADER + CHUNK_FRAMING > max_bytes => {
                    for (offset, piece) in
                        split_string(encoded, &shape, at, section.client, clock, max_bytes)?
                    {
                        spans.push(Span {
                            section: i,
                            clock: clock + offset,
                            bytes: Cow::Owned(piece),
                        });
                    }
                }
                _ => spans.push(Span {
                    section: i,
                    clock,
                    bytes: Cow::Borrowed(encoded),
                }),
            }
            clock = clock.checked_add(shape.len)?;
        }
    }
    Some(spans)
}

/// What chunking needs to know of one encoded struct.
struct Shape {
    /// Its length in clock units.
    len: u32,
    /// Its right origin, if any.
    right: Option<ID>,
    /// For a string item: where the string (its length prefix) starts.
    string_at: Option<usize>,
}

const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_PARENT_SUB: u8 = 0x20;
const CONTENT: u8 = 0x1f;
const STRING: u8 = 4;

/// Reads a struct's header as yrs's `Item::encode` writes it (v1).
fn shape(encoded: &[u8]) -> Option<Shape> {
    let info = *encoded.first()?;
    let mut c = Cursor::new(&encoded[1..]);
    let read_id = |c: &mut Cursor| -> Option<ID> {
        let client = c.read_var::<u64>().ok()?;
        let clock = c.read_var::<u32>().ok()?;
        Some(ID::new(ClientID::new(client), clock))
    };
    // GC and skip structs: just a length.
    if matches!(info & CONTENT, 0 | 10) {
        let len = c.read_var::<u32>().ok()?;
        return Some(Shape {
            len,
            right: None,
            string_at: None,
        });
    }
    if info & HAS_ORIGIN != 0 {
        read_id(&mut c)?;
    }
    let right = if info & HAS_RIGHT_ORIGIN != 0 {
        Some(read_id(&mut c)?)
    } else {
        None
    };
    if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
        if c.read_var::<u32>().ok()? == 1 {
            c.read_string().ok()?;
        } else {
            read_id(&mut c)?;
        }
        if info & HAS_PARENT_SUB != 0 {
            c.read_string().ok()?;
        }
    }
    let content_at = 1 + c.next;
    let (len, string_at) = match info & CONTENT {
        // Deleted, JSON and Any: a count first.
        1 | 2 | 8 => (c.read_var::<u32>().ok()?, None),
        STRING => {
            let text = c.read_string().ok()?;
            (utf16_len(text)?, Some(content_at))
        }
        3 | 5 | 6 | 7 | 9 => (1, None),
        _ => return None,
    };
    Some(Shape {
        len,
        right,
        string_at,
    })
}

fn utf16_len(text: &str) -> Option<u32> {
    u32::try_from(text.encode_utf16().count()).ok()
}

/// Cuts a string item into items of at most about `max_bytes`, the way Yjs
/// splits items: every piece after the first has the previous piece's last
/// character as its origin and keeps the right origin. Returns each piece
/// with its clock offset.
fn split_string(
    encoded: &[u8],
    shape: &Shape,
    string_at: usize,
    client: ClientID,
    clock: u32,
    max_bytes: usize,
) -> Option<Vec<(u32, Vec<u8>)>> {
    let info = encoded[0];
    let mut cursor = Cursor::new(&encoded[string_at..]);
    let text = cursor.read_string().ok()?;
    let budget = max_bytes.saturating_sub(64).max(16);
    let mut pieces = Vec::new();
    let mut offset = 0u32;
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(budget);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // A single character longer than the budget: take it whole.
            cut = rest.chars().next()?.len_utf8();
        }
        let (piece, tail) = rest.split_at(cut);
        let mut e = EncoderV1::new();
        if offset == 0 {
            e.write_all(&encoded[..string_at]);
        } else {
            e.write_info(HAS_ORIGIN | (info & (HAS_RIGHT_ORIGIN | HAS_PARENT_SUB)) | STRING);
            e.write_left_id(&ID::new(client, clock + offset - 1));
            if let Some(right) = &shape.right {
                e.write_right_id(right);
            }
        }
        e.write_string(piece);
        pieces.push((offset, e.to_vec()));
        offset += utf16_len(piece)?;
        rest = tail;
    }
    Some(pieces)
}

/// A run of consecutive structs of one section inside a chunk.
struct Part<'s, 'a> {
    section: usize,
    clock: u32,
    structs: Vec<&'s Span<'a>>,
}

/// Most bytes a part's header takes: struct count, client id and clock.
const PART_HEADER: usize = 5 + 10 + 5;
/// Most bytes a chunk's own framing takes: part count and an empty delete set.
const CHUNK_FRAMING: usize = 5 + 1;

fn split(rec: &Recorder, deleted: &IdSet, max_bytes: usize) -> Option<Vec<Vec<u8>>> {
    let bytes = &rec.buf;
    let delete_set = deleted.encode_v1();
    let blocks_end = bytes.len().checked_sub(delete_set.len())?;
    if bytes[blocks_end..] != *delete_set {
        return None;
    }
    let spans = spans(rec, blocks_end, max_bytes)?;
    // Group structs into chunks by size, in encoding order.
    let mut chunks: Vec<Vec<Part>> = vec![Vec::new()];
    let mut size = CHUNK_FRAMING;
    let mut previous: Option<&Span> = None;
    for span in &spans {
        let same_part = previous.is_some_and(|p| p.section == span.section);
        let cost = span.bytes.len() + if same_part { 0 } else { PART_HEADER };
        let fresh_chunk = size > CHUNK_FRAMING && size + cost > max_bytes;
        if fresh_chunk {
            chunks.push(Vec::new());
            size = CHUNK_FRAMING;
        }
        let current = chunks.last_mut().expect("at least one chunk");
        match current.last_mut() {
            Some(part) if same_part && !fresh_chunk => part.structs.push(span),
            _ => {
                current.push(Part {
                    section: span.section,
                    clock: span.clock,
                    structs: vec![span],
                });
                if same_part {
                    size += PART_HEADER;
                }
            }
        }
        size += cost;
        previous = Some(span);
    }
    // The delete set rides with the last chunk when it fits, else travels
    // in chunks of its own (any part of a delete set is a valid update).
    let deletes = if size + delete_set.len() <= max_bytes {
        vec![delete_set]
    } else {
        split_deletes(deleted, max_bytes)
    };
    let folded = deletes.len() == 1 && size + deletes[0].len() <= max_bytes;
    let last = chunks.len() - 1;
    let mut out = Vec::with_capacity(chunks.len() + deletes.len());
    for (i, parts) in chunks.iter().enumerate() {
        let mut e = EncoderV1::new();
        e.write_var(parts.len());
        for part in parts {
            e.write_var(part.structs.len());
            e.write_client(rec.sections[part.section].client);
            e.write_var(part.clock);
            for span in &part.structs {
                e.write_all(&span.bytes);
            }
        }
        if i == last && folded {
            e.write_all(&deletes[0]);
        } else {
            e.write_var(0u32);
        }
        out.push(e.to_vec());
    }
    if !folded {
        for part in deletes {
            let mut e = EncoderV1::new();
            e.write_var(0u32);
            e.write_all(&part);
            out.push(e.to_vec());
        }
    }
    Some(out)
}

/// A delete set as several encoded delete sets of about `max_bytes` each.
fn split_deletes(deleted: &IdSet, max_bytes: usize) -> Vec<Vec<u8>> {
    // (client, ranges) groups, each encoded as the delete set format wants.
    let budget = max_bytes
        .saturating_sub(CHUNK_FRAMING + PART_HEADER)
        .max(16);
    let mut parts: Vec<Vec<(ClientID, Vec<std::ops::Range<u32>>)>> = vec![Vec::new()];
    let mut size = 0;
    for (client, ranges) in deleted.iter() {
        for range in ranges.iter() {
            if size + 10 > budget && size > 0 {
                parts.push(Vec::new());
                size = 0;
            }
            let current = parts.last_mut().expect("at least one part");
            match current.last_mut() {
                Some((c, list)) if c == client => list.push(range.clone()),
                _ => {
                    current.push((*client, vec![range.clone()]));
                    size += PART_HEADER;
                }
            }
            size += 10;
        }
    }
    parts
        .into_iter()
        .map(|clients| {
            let mut e = EncoderV1::new();
            e.write_var(clients.len());
            for (client, ranges) in clients {
                e.write_var(client.get());
                e.write_var(ranges.len());
                for range in ranges {
                    e.write_ds_clock(range.start);
                    e.write_ds_len(range.end - range.start);
                }
            }
            e.to_vec()
        })
        .collect()
}

/// [`encode_chunked`] over a whole document.
pub fn state_chunked(doc: &yrs::Doc, max_bytes: usize) -> Vec<Vec<u8>> {
    encode_chunked(&doc.transact(), &StateVector::default(), max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Array, Doc, GetString, Map, OffsetKind, Options, Text, Update, WriteTxn};

    /// Positions in UTF-16 units, as in `Document` and in JavaScript.
    fn new_doc(client: u64) -> Doc {
        let mut options = Options::with_client_id(ClientID::new(client));
        options.offset_kind = OffsetKind::Utf16;
        Doc::with_options(options)
    }

    fn apply_all(chunks: &[Vec<u8>], reversed: bool) -> Doc {
        let doc = new_doc(99);
        let mut order: Vec<&Vec<u8>> = chunks.iter().collect();
        if reversed {
            order.reverse();
        }
        for chunk in order {
            doc.transact_mut()
                .apply_update(Update::decode_v1(chunk).unwrap())
                .unwrap();
        }
        doc
    }

    /// A document written by several clients, with deletions.
    fn busy_doc() -> Doc {
        let doc = new_doc(1);
        for client in 2..6u64 {
            let other = new_doc(client);
            {
                let mut txn = other.transact_mut();
                let text = txn.get_or_insert_text("text");
                for i in 0..300 {
                    text.insert(&mut txn, 0, &format!("client {client} line {i} ünïcödé\n"));
                }
                text.remove_range(&mut txn, 5, 200);
                let map = txn.get_or_insert_map("map");
                map.insert(&mut txn, format!("k{client}"), vec![1.5, 2.0]);
                txn.get_or_insert_array("arr")
                    .push_back(&mut txn, "x".repeat(3000));
            }
            let update = other
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            doc.transact_mut()
                .apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
        }
        doc
    }

    #[test]
    fn the_recorder_writes_exactly_what_yrs_writes() {
        let doc = busy_doc();
        let txn = doc.transact();
        let mut recorder = Recorder::default();
        txn.encode_state_as_update(&StateVector::default(), &mut recorder);
        assert_eq!(
            recorder.buf,
            txn.encode_state_as_update_v1(&StateVector::default())
        );
        assert_eq!(recorder.sections.len(), 4);
    }

    #[test]
    fn chunks_are_bounded_valid_updates_that_rebuild_the_document() {
        let doc = busy_doc();
        let whole = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let chunks = state_chunked(&doc, 4096);
        assert!(
            chunks.len() > 5,
            "{} chunks for {} bytes",
            chunks.len(),
            whole.len()
        );
        assert!(
            chunks.iter().all(|c| c.len() <= 4096),
            "every chunk within the bound"
        );
        for reversed in [false, true] {
            let copy = apply_all(&chunks, reversed);
            let text = |d: &Doc| d.get_or_insert_text("text").get_string(&d.transact());
            assert_eq!(text(&copy), text(&doc), "reversed: {reversed}");
            assert_eq!(
                copy.transact().state_vector(),
                doc.transact().state_vector()
            );
            assert_eq!(
                copy.transact().snapshot().delete_set,
                doc.transact().snapshot().delete_set
            );
        }
    }

    #[test]
    fn small_states_stay_whole_and_oversized_strings_are_cut_like_yjs_cuts_items() {
        let doc = new_doc(9);
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "small");
        assert_eq!(state_chunked(&doc, 1 << 20).len(), 1);
        // One long item between others, with multi-byte and astral
        // characters at the cuts, and a deletion inside it.
        let long: String = (0..3000).map(|i| ["ab", "é", "😀", "中"][i % 4]).collect();
        text.insert(&mut doc.transact_mut(), 2, &long);
        text.insert(&mut doc.transact_mut(), 0, &"z".repeat(10_000));
        text.remove_range(&mut doc.transact_mut(), 10_500, 100);
        let chunks = state_chunked(&doc, 4096);
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        assert!(
            chunks.iter().all(|c| c.len() <= 4096),
            "every chunk within the bound"
        );
        for reversed in [false, true] {
            let copy = apply_all(&chunks, reversed);
            assert_eq!(
                copy.get_or_insert_text("t").get_string(&copy.transact()),
                text.get_string(&doc.transact())
            );
            assert_eq!(
                copy.transact().state_vector(),
                doc.transact().state_vector()
            );
        }
        // Edits made on either side, inside the cut item, apply to the other.
        let copy = apply_all(&chunks, false);
        let edit = |d: &Doc, at: u32, s: &str| {
            let t = d.get_or_insert_text("t");
            let mut txn = d.transact_mut();
            t.insert(&mut txn, at, s);
            txn.encode_update_v1()
        };
        let from_original = edit(&doc, 11_000, "<original>");
        let from_copy = edit(&copy, 12_000, "<copy>");
        copy.transact_mut()
            .apply_update(Update::decode_v1(&from_original).unwrap())
            .unwrap();
        doc.transact_mut()
            .apply_update(Update::decode_v1(&from_copy).unwrap())
            .unwrap();
        let content = |d: &Doc| d.get_or_insert_text("t").get_string(&d.transact());
        assert_eq!(content(&copy), content(&doc));
        assert!(content(&doc).contains("<copy>") && content(&doc).contains("<original>"));
    }
}
