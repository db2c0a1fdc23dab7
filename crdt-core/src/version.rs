//! Versions: comparing two states of a document, and restoring one.
//!
//! **Comparing.** Both states are applied, older first, to one scratch
//! document that keeps deleted content (garbage collection off). Text that
//! the later state deleted keeps its content from the earlier one, so yrs's
//! snapshot diff can name every run as inserted, deleted or unchanged, each
//! with the id of the item it belongs to; the host maps item ids (a Yjs
//! client id and a clock) to the people who wrote them. Maps are compared
//! key by key and arrays item by item.
//!
//! **Restoring** never rewrites history: [`Document::restore_to`] makes
//! local edits that turn the current content into the target's, and returns
//! them as one update, which the host stores and sends like any other
//! change. Clients that edit meanwhile merge with it as usual.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use similar::{Algorithm, DiffOp, capture_diff_slices};
use yrs::branch::BranchPtr;
use yrs::types::AsPrelim;
use yrs::types::text::{ChangeKind, YChange};
use yrs::types::xml::XmlOut;
use yrs::updates::decoder::Decode;
use yrs::{
    Array, ArrayRef, Doc, GetString, Map, MapRef, OffsetKind, Options, Out, ReadTxn, Snapshot,
    Text, TextRef, Transact, Update, WriteTxn, XmlFragment,
};

use crate::doc::{Document, LoadError};
use crate::update::Encoding;
use crate::{JsonError, Limits};

/// Why two versions could not be compared or one restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// A stored state did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Content nests too deeply to walk.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// yrs rejected a state while building the comparison.
    #[error("version state is invalid: {0}")]
    Invalid(String),
}

/// What kind of shared type a root holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// `Y.Text`.
    Text,
    /// `Y.Map`.
    Map,
    /// `Y.Array`.
    Array,
    /// `Y.XmlFragment` (rich-text editors).
    Xml,
    /// Nothing in it yet.
    Empty,
}

/// How one run of text changed between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextChangeKind {
    /// In the later version only.
    Inserted,
    /// In the earlier version only.
    Deleted,
    /// In both.
    Unchanged,
}

/// A run of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextRun {
    /// How it changed.
    pub change: TextChangeKind,
    /// The text (for unchanged runs too, so a client can render the diff).
    pub text: String,
    /// The Yjs client id of the item the run starts in: who wrote it.
    pub client: Option<u64>,
    /// The clock of that item.
    pub clock: Option<u32>,
}

/// How one map entry changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// Its value before (absent: added).
    pub before: Option<Value>,
    /// Its value after (absent: removed).
    pub after: Option<Value>,
}

/// How array items changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemChange {
    /// Index in the earlier version (removed) or the later one (inserted).
    pub index: usize,
    /// Whether the item was inserted (`true`) or removed.
    pub inserted: bool,
    /// The item.
    pub value: Value,
}

/// How one root changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootDiff {
    /// Text runs, in document order.
    Text {
        /// Every run; unchanged runs included.
        runs: Vec<TextRun>,
    },
    /// Changed map entries.
    Map {
        /// Entries added, removed or changed.
        changes: Vec<KeyChange>,
    },
    /// Changed array items.
    Array {
        /// Items inserted or removed.
        changes: Vec<ItemChange>,
    },
    /// Anything else (XML, or a root whose kind changed): both renderings.
    Replaced {
        /// The earlier content as JSON.
        before: Value,
        /// The later content as JSON.
        after: Value,
    },
}

/// The difference between two versions of a document, by root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocDiff {
    /// Only roots that changed.
    pub roots: BTreeMap<String, RootDiff>,
}

/// Compares two stored states (`from` earlier, `to` later; either order
/// works, runs are named relative to `from`).
pub fn diff(
    limits: &Limits,
    from: (Encoding, &[u8]),
    to: (Encoding, &[u8]),
) -> Result<DocDiff, VersionError> {
    let a = Document::load(limits.clone(), Some(from), [])?;
    let b = Document::load(limits.clone(), Some(to), [])?;
    let (a_json, b_json) = (a.to_json()?, b.to_json()?);
    let snapshot = |d: &Document| d.yrs().transact().snapshot();
    let (snap_a, snap_b) = (snapshot(&a), snapshot(&b));

    // Both states in one document that keeps deleted content.
    let mut options = Options::with_client_id(yrs::ClientID::new(1));
    options.offset_kind = OffsetKind::Utf16;
    options.skip_gc = true;
    let both = Doc::with_options(options);
    for state in [a.encode_state(Encoding::V1), b.encode_state(Encoding::V1)] {
        let update = Update::decode_v1(&state).map_err(|e| VersionError::Invalid(e.to_string()))?;
        both.transact_mut()
            .apply_update(update)
            .map_err(|e| VersionError::Invalid(e.to_string()))?;
    }

    let names: BTreeSet<String> = [&a_json, &b_json]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    let mut roots = BTreeMap::new();
    for name in names {
        let before = a_json.get(&name).cloned().unwrap_or(Value::Null);
        let after = b_json.get(&name).cloned().unwrap_or(Value::Null);
        if before == after {
            continue;
        }
        let kind_a = root_kind(&a, &name);
        let kind_b = root_kind(&b, &name);
        let kind = if kind_a == RootKind::Empty {
            kind_b
        } else {
            kind_a
        };
        let changed = match kind {
            RootKind::Text if kind_b != RootKind::Map && kind_b != RootKind::Array => {
                text_runs(&both, &name, &snap_b, &snap_a)
            }
            RootKind::Map if kind_b != RootKind::Text && kind_b != RootKind::Array => {
                RootDiff::Map {
                    changes: key_changes(&before, &after),
                }
            }
            RootKind::Array if kind_b != RootKind::Text && kind_b != RootKind::Map => {
                RootDiff::Array {
                    changes: item_changes(&before, &after),
                }
            }
            _ => RootDiff::Replaced { before, after },
        };
        roots.insert(name, changed);
    }
    Ok(DocDiff { roots })
}

/// The kind of root `name` in `doc`, inferred from its content as
/// [`Document::to_json`] does.
pub fn root_kind(doc: &Document, name: &str) -> RootKind {
    let txn = doc.yrs().transact();
    let Some(out) = txn.root_refs().find(|(n, _)| *n == name).map(|(_, o)| o) else {
        return RootKind::Empty;
    };
    match out {
        Out::YText(_) => RootKind::Text,
        Out::YMap(_) => RootKind::Map,
        Out::YArray(_) => RootKind::Array,
        Out::YXmlFragment(_) | Out::YXmlElement(_) | Out::YXmlText(_) => RootKind::Xml,
        Out::UndefinedRef(branch) => undeclared_kind(&txn, branch),
        _ => RootKind::Empty,
    }
}

fn undeclared_kind<T: ReadTxn>(txn: &T, branch: BranchPtr) -> RootKind {
    if MapRef::from(branch).len(txn) > 0 {
        return RootKind::Map;
    }
    if !TextRef::from(branch).get_string(txn).is_empty() {
        return RootKind::Text;
    }
    match ArrayRef::from(branch).get(txn, 0) {
        Some(Out::YXmlElement(_) | Out::YXmlText(_)) => RootKind::Xml,
        Some(_) => RootKind::Array,
        None => RootKind::Empty,
    }
}

fn text_runs(both: &Doc, name: &str, later: &Snapshot, earlier: &Snapshot) -> RootDiff {
    let text = both.get_or_insert_text(name);
    let mut txn = both.transact_mut();
    let chunks = text.diff_range(&mut txn, Some(later), Some(earlier), YChange::identity);
    let mut runs: Vec<TextRun> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let Out::Any(yrs::Any::String(s)) = chunk.insert else {
            continue; // embeds have no text to show
        };
        let (change, id) = match chunk.ychange {
            Some(YChange {
                kind: ChangeKind::Added,
                id,
            }) => (TextChangeKind::Inserted, Some(id)),
            Some(YChange {
                kind: ChangeKind::Removed,
                id,
            }) => (TextChangeKind::Deleted, Some(id)),
            None => (TextChangeKind::Unchanged, None),
        };
        // yrs splits unchanged text at formatting; join it back.
        if let Some(last) = runs.last_mut()
            && change == TextChangeKind::Unchanged
            && last.change == TextChangeKind::Unchanged
        {
            last.text.push_str(&s);
            continue;
        }
        runs.push(TextRun {
            change,
            text: s.to_string(),
            client: id.map(|id| id.client.get()),
            clock: id.map(|id| id.clock),
        });
    }
    RootDiff::Text { runs }
}

fn key_changes(before: &Value, after: &Value) -> Vec<KeyChange> {
    let empty = serde_json::Map::new();
    let a = before.as_object().unwrap_or(&empty);
    let b = after.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| KeyChange {
            key: k.clone(),
            before: a.get(k).cloned(),
            after: b.get(k).cloned(),
        })
        .collect()
}

fn item_changes(before: &Value, after: &Value) -> Vec<ItemChange> {
    let empty = Vec::new();
    let a = before.as_array().unwrap_or(&empty);
    let b = after.as_array().unwrap_or(&empty);
    let mut changes = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, a, b) {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete {
                old_index, old_len, ..
            } => {
                changes.extend((old_index..old_index + old_len).map(|i| ItemChange {
                    index: i,
                    inserted: false,
                    value: a[i].clone(),
                }));
            }
            DiffOp::Insert {
                new_index, new_len, ..
            } => {
                changes.extend((new_index..new_index + new_len).map(|i| ItemChange {
                    index: i,
                    inserted: true,
                    value: b[i].clone(),
                }));
            }
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                changes.extend((old_index..old_index + old_len).map(|i| ItemChange {
                    index: i,
                    inserted: false,
                    value: a[i].clone(),
                }));
                changes.extend((new_index..new_index + new_len).map(|i| ItemChange {
                    index: i,
                    inserted: true,
                    value: b[i].clone(),
                }));
            }
        }
    }
    changes
}

impl Document {
    /// Edits this document locally so its content equals `target`'s, and
    /// returns the edits as one v1 update (`None` if nothing differs). Text
    /// keeps what the two share at its start and end; maps are changed key
    /// by key; arrays and XML are replaced by copies of the target's.
    pub fn restore_to(&mut self, target: &Document) -> Result<Option<Vec<u8>>, VersionError> {
        // Both walks below recurse as deep as the content; bound it first.
        let current_json = self.to_json()?;
        let target_json = target.to_json()?;
        if current_json == target_json {
            return Ok(None);
        }
        let names: BTreeSet<String> = [&current_json, &target_json]
            .iter()
            .filter_map(|v| v.as_object())
            .flat_map(|o| o.keys().cloned())
            .collect();
        let kinds: Vec<(String, RootKind, RootKind)> = names
            .into_iter()
            .map(|n| {
                let (k_now, k_target) = (root_kind(self, &n), root_kind(target, &n));
                (n, k_now, k_target)
            })
            .collect();
        let target_txn = target.yrs().transact();
        let doc = self.yrs();
        let mut txn = doc.transact_mut();
        for (name, now, wanted) in kinds {
            if current_json.get(&name) == target_json.get(&name) {
                continue;
            }
            let kind = if wanted == RootKind::Empty {
                now
            } else {
                wanted
            };
            match kind {
                RootKind::Text => {
                    let text = txn.get_or_insert_text(name.as_str());
                    let from = text.get_string(&txn);
                    let to = target_txn
                        .get_text(name.as_str())
                        .map(|t| t.get_string(&target_txn))
                        .unwrap_or_default();
                    replace_middle(&text, &mut txn, &from, &to);
                }
                RootKind::Map => {
                    let map = txn.get_or_insert_map(name.as_str());
                    let source = target_txn.get_map(name.as_str());
                    let keys: Vec<String> = map.keys(&txn).map(str::to_owned).collect();
                    for key in keys {
                        if source
                            .as_ref()
                            .and_then(|s| s.get(&target_txn, &key))
                            .is_none()
                        {
                            map.remove(&mut txn, &key);
                        }
                    }
                    if let Some(source) = source {
                        for (key, value) in source.iter(&target_txn) {
                            let wanted =
                                current_json[&name].get(key) != target_json[&name].get(key);
                            if wanted {
                                map.insert(&mut txn, key, value.as_prelim(&target_txn));
                            }
                        }
                    }
                }
                RootKind::Array => {
                    let array = txn.get_or_insert_array(name.as_str());
                    let len = array.len(&txn);
                    array.remove_range(&mut txn, 0, len);
                    if let Some(source) = target_txn.get_array(name.as_str()) {
                        for value in source.iter(&target_txn) {
                            array.push_back(&mut txn, value.as_prelim(&target_txn));
                        }
                    }
                }
                RootKind::Xml => {
                    let fragment = txn.get_or_insert_xml_fragment(name.as_str());
                    let len = fragment.len(&txn);
                    fragment.remove_range(&mut txn, 0, len);
                    if let Some(source) = target_txn.get_xml_fragment(name.as_str()) {
                        for child in source.children(&target_txn) {
                            match child {
                                XmlOut::Element(e) => {
                                    fragment.push_back(&mut txn, e.as_prelim(&target_txn));
                                }
                                // Text directly under the fragment: its
                                // characters (formatting here is rare; text
                                // inside elements is copied whole above).
                                XmlOut::Text(t) => {
                                    let plain: String = t
                                        .diff(&target_txn, YChange::identity)
                                        .into_iter()
                                        .filter_map(|d| match d.insert {
                                            Out::Any(yrs::Any::String(s)) => Some(s.to_string()),
                                            _ => None,
                                        })
                                        .collect();
                                    fragment.push_back(&mut txn, yrs::XmlTextPrelim::new(plain));
                                }
                                // A fragment never holds a fragment.
                                XmlOut::Fragment(_) => {}
                            }
                        }
                    }
                }
                RootKind::Empty => {}
            }
        }
        let update = txn.encode_update_v1();
        drop(txn);
        self.changed_locally();
        Ok(Some(update))
    }
}

/// Replaces what differs between `from` and `to` (both UTF-16 indexed in
/// yrs), keeping their common start and end.
fn replace_middle(text: &TextRef, txn: &mut yrs::TransactionMut, from: &str, to: &str) {
    let a: Vec<u16> = from.encode_utf16().collect();
    let b: Vec<u16> = to.encode_utf16().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let removed = a.len() - prefix - suffix;
    if removed > 0 {
        text.remove_range(txn, prefix as u32, removed as u32);
    }
    let inserted = &b[prefix..b.len() - suffix];
    if !inserted.is_empty() {
        text.insert(txn, prefix as u32, &String::from_utf16_lossy(inserted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(doc: &mut Document, edit: impl FnOnce(&Doc)) -> Vec<u8> {
        edit(doc.yrs());
        doc.encode_state(Encoding::V2)
    }

    #[test]
    fn text_runs_name_inserted_and_deleted_text_with_their_items() {
        let mut doc = Document::with_client_id(Limits::default(), 7);
        let v1 = edited(&mut doc, |d| {
            d.get_or_insert_text("t")
                .insert(&mut d.transact_mut(), 0, "hello world")
        });
        let v2 = edited(&mut doc, |d| {
            let t = d.get_or_insert_text("t");
            let mut txn = d.transact_mut();
            t.remove_range(&mut txn, 0, 6);
            t.insert(&mut txn, 5, "!");
        });
        let diff = diff(&Limits::default(), (Encoding::V2, &v1), (Encoding::V2, &v2)).unwrap();
        let RootDiff::Text { runs } = &diff.roots["t"] else {
            panic!("{diff:?}")
        };
        let summary: Vec<(TextChangeKind, &str)> = runs
            .iter()
            .map(|r| (r.change.clone(), r.text.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (TextChangeKind::Deleted, "hello "),
                (TextChangeKind::Unchanged, "world"),
                (TextChangeKind::Inserted, "!"),
            ]
        );
        assert!(
            runs.iter()
                .filter(|r| r.change != TextChangeKind::Unchanged)
                .all(|r| r.client == Some(7))
        );
    }

    #[test]
    fn maps_and_arrays_diff_by_key_and_item() {
        let mut doc = Document::with_client_id(Limits::default(), 1);
        let v1 = edited(&mut doc, |d| {
            let mut txn = d.transact_mut();
            let m = txn.get_or_insert_map("m");
            m.insert(&mut txn, "keep", 1);
            m.insert(&mut txn, "change", "a");
            m.insert(&mut txn, "drop", true);
            let a = txn.get_or_insert_array("a");
            a.insert_range(&mut txn, 0, [1, 2, 3]);
        });
        let v2 = edited(&mut doc, |d| {
            let mut txn = d.transact_mut();
            let m = txn.get_or_insert_map("m");
            m.insert(&mut txn, "change", "b");
            m.remove(&mut txn, "drop");
            m.insert(&mut txn, "new", 2);
            let a = txn.get_or_insert_array("a");
            a.remove(&mut txn, 1);
            a.push_back(&mut txn, 4);
        });
        let diff = diff(&Limits::default(), (Encoding::V2, &v1), (Encoding::V2, &v2)).unwrap();
        let RootDiff::Map { changes } = &diff.roots["m"] else {
            panic!()
        };
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["change", "drop", "new"]);
        let RootDiff::Array { changes } = &diff.roots["a"] else {
            panic!()
        };
        assert_eq!(changes.len(), 2);
        assert!(!changes[0].inserted && changes[0].value == 2.0);
    }

    #[test]
    fn restoring_is_a_new_change_that_converges_with_concurrent_edits() {
        let mut doc = Document::with_client_id(Limits::default(), 1);
        let old = edited(&mut doc, |d| {
            let mut txn = d.transact_mut();
            txn.get_or_insert_text("t")
                .insert(&mut txn, 0, "version one");
            txn.get_or_insert_map("m").insert(&mut txn, "k", "old");
        });
        edited(&mut doc, |d| {
            let mut txn = d.transact_mut();
            let t = txn.get_or_insert_text("t");
            t.remove_range(&mut txn, 8, 3);
            t.insert(&mut txn, 8, "two, edited");
            txn.get_or_insert_map("m").insert(&mut txn, "k", "new");
        });
        // A peer that has the current state edits while the restore happens.
        let mut peer = Document::with_client_id(Limits::default(), 2);
        peer.apply(&doc.encode_state(Encoding::V1), Encoding::V1)
            .unwrap();
        let concurrent = {
            let t = peer.yrs().get_or_insert_text("t");
            let mut txn = peer.yrs().transact_mut();
            t.insert(&mut txn, 0, ">> ");
            txn.encode_update_v1()
        };
        let target = Document::load(Limits::default(), Some((Encoding::V2, &old)), []).unwrap();
        let restore = doc
            .restore_to(&target)
            .unwrap()
            .expect("something to restore");
        assert_eq!(doc.to_json().unwrap(), target.to_json().unwrap());
        doc.apply(&concurrent, Encoding::V1).unwrap();
        peer.apply(&restore, Encoding::V1).unwrap();
        assert_eq!(
            doc.to_json().unwrap(),
            peer.to_json().unwrap(),
            "both converge"
        );
        assert_eq!(doc.to_json().unwrap()["t"], ">> version one");
        assert!(
            doc.restore_to(&doc_copy(&doc)).unwrap().is_none(),
            "nothing left to restore"
        );
    }

    fn doc_copy(doc: &Document) -> Document {
        Document::load(
            Limits::default(),
            Some((Encoding::V2, &doc.encode_state(Encoding::V2))),
            [],
        )
        .unwrap()
    }
}
