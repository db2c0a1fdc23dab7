//! A wrapper around yrs's decoders that bounds what an attacker can make
//! them do, shared by frame and update decoding.
//!
//! It changes five things and delegates everything else to yrs:
//! - lib0 `Any` values are read with a depth limit (yrs recurses without one);
//! - an update may decode to a bounded number of blocks (v2 packs runs of
//!   blocks into a few bytes);
//! - an update that lists a client twice is refused (see `read_client`);
//! - legacy JSON content blocks are refused (yrs misreads them, see
//!   `read_info`);
//! - bytes read through it are counted, so a frame decoder can tell a clean
//!   end of input from a message cut short.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use yrs::block::BLOCK_ITEM_JSON_REF_NUMBER;
use yrs::encoding::read::{Cursor, Error as ReadError, Read};
use yrs::updates::decoder::Decoder;
use yrs::{Any, ClientID, ID, Number};

/// A yrs decoder with a depth-limited `Any` reader and a byte count.
pub(crate) struct Guarded<D> {
    inner: D,
    /// Every item id the decoded structs point at (origins, right origins
    /// and parent items): the update's dependencies on other structs.
    pub(crate) references: Vec<ID>,
    max_depth: usize,
    /// v2 keeps strings in their own column and encodes JSON as `Any`; v1
    /// reads strings inline and JSON as text (which serde_json reads with a
    /// recursion limit of its own).
    v2: bool,
    /// Set when the depth limit stopped decoding, so callers can report that
    /// rather than a generic decode error.
    pub(crate) too_deep: bool,
    /// Blocks the update may still decode to.
    blocks_left: usize,
    /// Set when the block limit stopped decoding.
    pub(crate) too_many_blocks: bool,
    /// Bytes taken from the main stream through this wrapper. Only
    /// meaningful for v1, where every read goes through it.
    pub(crate) consumed: usize,
    /// Clients whose blocks the update has listed so far.
    clients: HashSet<ClientID>,
}

impl<D: Decoder> Guarded<D> {
    pub(crate) fn v1(inner: D, max_depth: usize) -> Self {
        Self::new(inner, max_depth, false)
    }

    pub(crate) fn v2(inner: D, max_depth: usize) -> Self {
        Self::new(inner, max_depth, true)
    }

    fn new(inner: D, max_depth: usize, v2: bool) -> Self {
        Self {
            inner,
            references: Vec::new(),
            max_depth,
            v2,
            too_deep: false,
            blocks_left: usize::MAX,
            too_many_blocks: false,
            consumed: 0,
            clients: HashSet::new(),
        }
    }

    /// Stops decoding past `max` blocks.
    pub(crate) fn with_max_blocks(mut self, max: usize) -> Self {
        self.blocks_left = max;
        self
    }

    fn read_any_bounded(&mut self) -> Result<Any, ReadError> {
        let mut reader = AnyReader {
            src: self,
            too_deep: false,
        };
        let result = reader.read(0);
        let too_deep = reader.too_deep;
        self.too_deep |= too_deep;
        result
    }
}

impl<D: Decoder> Read for Guarded<D> {
    fn read_exact(&mut self, len: usize) -> Result<&[u8], ReadError> {
        let bytes = self.inner.read_exact(len)?;
        self.consumed += len;
        Ok(bytes)
    }

    fn read_u8(&mut self) -> Result<u8, ReadError> {
        let byte = self.inner.read_u8()?;
        self.consumed += 1;
        Ok(byte)
    }

    fn read_string(&mut self) -> Result<&str, ReadError> {
        if self.v2 {
            // v2 reads strings from a separate column: keep the inner decoder's choice.
            self.inner.read_string()
        } else {
            let buf = self.read_buf()?;
            std::str::from_utf8(buf).map_err(|_| ReadError::UnexpectedValue)
        }
    }
}

impl<D: Decoder> Decoder for Guarded<D> {
    fn reset_ds_cur_val(&mut self) {
        self.inner.reset_ds_cur_val()
    }
    fn read_ds_clock(&mut self) -> Result<u32, ReadError> {
        self.inner.read_ds_clock()
    }
    fn read_ds_len(&mut self) -> Result<u32, ReadError> {
        self.inner.read_ds_len()
    }
    fn read_left_id(&mut self) -> Result<ID, ReadError> {
        // Origins and parent items: what an update depends on.
        let id = self.inner.read_left_id()?;
        self.references.push(id);
        Ok(id)
    }
    fn read_right_id(&mut self) -> Result<ID, ReadError> {
        let id = self.inner.read_right_id()?;
        self.references.push(id);
        Ok(id)
    }
    fn read_client(&mut self) -> Result<ClientID, ReadError> {
        // yrs 0.28 reads a client id only to open a client's run of blocks
        // in `Update::decode`. Yjs writes each client once; a second run
        // whose clocks overlap the first makes yrs integrate two blocks at
        // the same clock, and the second frees the first while the document
        // still points to it (a use-after-free).
        let client = self.inner.read_client()?;
        if !self.clients.insert(client) {
            return Err(ReadError::Custom(format!(
                "client {client} is listed twice in the update"
            )));
        }
        Ok(client)
    }
    fn read_info(&mut self) -> Result<u8, ReadError> {
        // yrs reads one info per block, before the block's allocations.
        let Some(left) = self.blocks_left.checked_sub(1) else {
            self.too_many_blocks = true;
            return Err(ReadError::Custom("too many blocks".into()));
        };
        self.blocks_left = left;
        let info = self.inner.read_info()?;
        // yrs 0.28 reads one string more than a JSON block's count (Yjs
        // reads the count) and writes the count of what it read, so a block
        // it accepted never decodes again: the document's state would not
        // reload, and yrs panics merging it while it is pending. Yjs writes
        // values as `Any` content and keeps JSON content only to read old
        // documents, which yrs misreads anyway.
        if info & 0b1111 == BLOCK_ITEM_JSON_REF_NUMBER {
            return Err(ReadError::Custom(
                "legacy JSON content blocks are not supported".into(),
            ));
        }
        Ok(info)
    }
    fn read_parent_info(&mut self) -> Result<bool, ReadError> {
        self.inner.read_parent_info()
    }
    fn read_type_ref(&mut self) -> Result<u8, ReadError> {
        self.inner.read_type_ref()
    }
    fn read_len(&mut self) -> Result<u32, ReadError> {
        self.inner.read_len()
    }
    fn read_any(&mut self) -> Result<Any, ReadError> {
        self.read_any_bounded()
    }
    fn read_json(&mut self) -> Result<Any, ReadError> {
        if self.v2 {
            self.read_any_bounded()
        } else {
            self.inner.read_json()
        }
    }
    fn read_key(&mut self) -> Result<Arc<str>, ReadError> {
        self.inner.read_key()
    }
    fn read_to_end(&mut self) -> Result<&[u8], ReadError> {
        self.inner.read_to_end()
    }
}

/// Most entries reserved up front for a map or array. A count read from the
/// input can be a lie: reserving it in full would let a few bytes claim
/// gigabytes. Honest larger collections grow as their items arrive.
const PRE_RESERVE_CAP: usize = 4096;

/// Reads one lib0 `Any` with a depth limit. In both encodings `Any` reads its
/// strings from the main byte stream (`read_buf`), never from a v2 column.
struct AnyReader<'a, D> {
    src: &'a mut Guarded<D>,
    too_deep: bool,
}

impl<D: Decoder> AnyReader<'_, D> {
    fn read(&mut self, depth: usize) -> Result<Any, ReadError> {
        Ok(match self.src.read_u8()? {
            127 => Any::Undefined,
            126 => Any::Null,
            125 => Any::Number(Number::Int(self.src.read_var::<i64>()?)),
            124 => Any::Number(Number::Float(self.src.read_f32()? as f64)),
            123 => Any::Number(Number::Float(self.src.read_f64()?)),
            122 => Any::Number(Number::Int(self.src.read_i64()?)),
            121 => Any::Bool(false),
            120 => Any::Bool(true),
            119 => Any::String(Arc::from(self.read_str()?)),
            118 => {
                self.descend(depth)?;
                let len: usize = self.src.read_var()?;
                let mut map = HashMap::new();
                map.try_reserve(len.min(PRE_RESERVE_CAP))?;
                for _ in 0..len {
                    let key = self.read_str()?.to_owned();
                    let value = self.read(depth + 1)?;
                    map.insert(key, value);
                }
                Any::Map(Arc::new(map))
            }
            117 => {
                self.descend(depth)?;
                let len: usize = self.src.read_var()?;
                let mut items = Vec::new();
                items.try_reserve(len.min(PRE_RESERVE_CAP))?;
                for _ in 0..len {
                    items.push(self.read(depth + 1)?);
                }
                Any::Array(Arc::from(items))
            }
            116 => Any::Buffer(Arc::from(self.src.read_buf()?)),
            _ => return Err(ReadError::UnexpectedValue),
        })
    }

    fn descend(&mut self, depth: usize) -> Result<(), ReadError> {
        if depth >= self.src.max_depth {
            self.too_deep = true;
            return Err(ReadError::Custom(format!(
                "value nested deeper than {} levels",
                self.src.max_depth
            )));
        }
        Ok(())
    }

    fn read_str(&mut self) -> Result<&str, ReadError> {
        let buf = self.src.read_buf()?;
        std::str::from_utf8(buf).map_err(|_| ReadError::UnexpectedValue)
    }
}

/// Whether the leading varUint count of `bytes` could be honest: every
/// counted entry takes at least `min_entry_bytes`, so a count that would need
/// more bytes than follow it is refused before yrs reserves memory for it.
pub(crate) fn count_fits(bytes: &[u8], min_entry_bytes: usize) -> bool {
    let mut cursor = Cursor::new(bytes);
    match cursor.read_var::<u64>() {
        Ok(count) => {
            let rest = bytes.len() - cursor.next;
            count.saturating_mul(min_entry_bytes as u64) <= rest as u64
        }
        // Let the real decoder produce the precise error.
        Err(_) => true,
    }
}
