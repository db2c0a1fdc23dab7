//! The hash chain's arithmetic: the canonical encoding of an event and the
//! hash that links an entry to the one before it.
//!
//! # Canonical encoding (version 1)
//!
//! An entry's hash is
//!
//! ```text
//! hash = SHA-256( "collab-engine/audit-entry/v1" || 0x00
//!                 || seq as 8 bytes, big-endian
//!                 || prev_hash (32 bytes; 32 zero bytes for the first entry)
//!                 || canonical_json(event) as UTF-8 )
//! ```
//!
//! `canonical_json(event)` is the event serialized to JSON (as the
//! `event` object of a JSON Lines export shows it), then written out as:
//!
//! - objects with their keys sorted by their UTF-8 bytes, every key present
//!   (an absent optional field is `null`, never omitted);
//! - no whitespace anywhere outside strings;
//! - strings with the minimal escaping of RFC 8259: `\"`, `\\`, `\b`, `\f`,
//!   `\n`, `\r`, `\t`, other characters below U+0020 as `\u00xx` (lower-case
//!   hex); everything else, including non-ASCII, as raw UTF-8;
//! - integers in plain decimal; other numbers in the shortest form that
//!   reads back to the same 64-bit float, as serde_json writes it
//!   (`0.1`, `1e100`);
//! - `true`, `false`, `null` as themselves; arrays in their order.
//!
//! An auditor can recompute every hash from a JSON Lines export with
//! nothing but this description and a SHA-256 tool.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::event::AuditEvent;

/// Domain separation for entry hashes: a hash of anything else can never be
/// mistaken for one.
const ENTRY_DOMAIN: &[u8] = b"collab-engine/audit-entry/v1\0";

/// A SHA-256 value. Shown and serialized as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev_hash` of a chain's first entry.
    pub const GENESIS: Digest = Digest([0; 32]);

    /// From exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Digest)
    }

    /// From 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut out = [0; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Digest(out))
    }

    /// As 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        Digest::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// The canonical JSON text of an event (see the module docs).
pub fn canonical_event(event: &AuditEvent) -> String {
    // Serializing our own types cannot fail: no maps with non-string keys.
    let value = serde_json::to_value(event).expect("audit events serialize");
    let mut out = String::with_capacity(256);
    write_canonical(&value, &mut out);
    out
}

/// Writes `value` in canonical form (see the module docs).
pub fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: another
            // crate in the build may turn on serde_json's `preserve_order`.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The hash of an entry at `seq` after `prev`, holding the event whose
/// canonical JSON is `canonical`.
pub fn entry_hash(seq: u64, prev: &Digest, canonical: &str) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(ENTRY_DOMAIN);
    hasher.update(seq.to_be_bytes());
    hasher.update(prev.0);
    hasher.update(canonical.as_bytes());
    Digest(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Action, Actor};
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value = json!({"b": [1, 2.5, "x"], "a": {"z": null, "y": true}, "é": "\u{1}\n"});
        let mut out = String::new();
        write_canonical(&value, &mut out);
        assert_eq!(
            out,
            r#"{"a":{"y":true,"z":null},"b":[1,2.5,"x"],"é":"\u0001\n"}"#
        );
    }

    #[test]
    fn an_event_encodes_every_field_even_when_empty() {
        let event = AuditEvent::new(Action::Connect, Actor::user("alice"), "acme", 7);
        assert_eq!(
            canonical_event(&event),
            r#"{"action":"connection.open","actor":{"id":"alice","kind":"user"},"at_ms":7,"details":{},"document":null,"outcome":{"kind":"allowed"},"source":{"ip":null,"node":null,"user_agent":null},"workspace":"acme"}"#
        );
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing the encoding breaks every stored chain: this value must
        // only ever change together with the version in ENTRY_DOMAIN.
        let event = AuditEvent::new(Action::Connect, Actor::user("alice"), "acme", 7);
        let hash = entry_hash(1, &Digest::GENESIS, &canonical_event(&event));
        let mut manual = Vec::new();
        manual.extend_from_slice(b"collab-engine/audit-entry/v1\0");
        manual.extend_from_slice(&1u64.to_be_bytes());
        manual.extend_from_slice(&[0; 32]);
        manual.extend_from_slice(canonical_event(&event).as_bytes());
        assert_eq!(hash, Digest::of(&manual));
        assert_ne!(
            hash,
            entry_hash(2, &Digest::GENESIS, &canonical_event(&event))
        );
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("00"), None);
    }
}
