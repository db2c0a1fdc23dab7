//! Erasing what one author wrote, for GDPR erasure.
//!
//! The host knows which Yjs items an author inserted (their ids, from its
//! attribution). [`Document::erase`] deletes the ones still visible with an
//! ordinary CRDT delete, so every replica converges on the document without
//! them, and returns that delete as one update to store and send.
//!
//! Shared types are the one subtlety. Deleting a type deletes everything in
//! it, so a paragraph the author created that others then typed into would
//! take their text with it. The author's *content* (text, embeds, values,
//! formatting marks, subdocuments) is always deleted; the author's
//! *containers* (maps, arrays, text and XML nodes) are deleted only once
//! nothing visible is left in them, so others' content stays where it was.
//!
//! Once a host compacts the document (with garbage collection on, as
//! [`Document`] has it), the deleted items keep only their ids and lengths:
//! the content itself is gone from the stored state.

use yrs::branch::BranchPtr;
use yrs::encoding::write::Write as _;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Array, ArrayRef, BranchID, ID, IdSet, Map, MapRef, Out, ReadTxn, Transact, Update};

use crate::doc::{ApplyError, Document};
use crate::json::{JsonError, MAX_JSON_DEPTH};
use crate::update::Encoding;

/// Why an erasure could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EraseError {
    /// The content nests deeper than can be walked.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The document refused the delete (it is poisoned, or its state is
    /// broken).
    #[error("erasure could not be applied: {0}")]
    Apply(#[from] ApplyError),
}

/// What [`Document::erase`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The delete as one v1 update (no inserts, only a delete set), to be
    /// stored and sent like any other change.
    pub update: Vec<u8>,
    /// Content units deleted: characters (UTF-16) of text, array elements,
    /// map values, marks.
    pub deleted: u64,
    /// The author's shared types deleted because they were left empty.
    pub containers: usize,
    /// The author's shared types kept because others' content is in them.
    pub kept_containers: usize,
}

impl Document {
    /// Deletes every still-visible item among `items` (see the module
    /// documentation for shared types), applies the delete to this
    /// document, and returns it. `None` when nothing of `items` is visible.
    pub fn erase(&mut self, items: &IdSet) -> Result<Option<Erasure>, EraseError> {
        if items.is_empty() {
            return Ok(None);
        }
        let mine = self.visible().intersect(items);
        if mine.is_empty() {
            return Ok(None);
        }
        let mut containers = Vec::new();
        self.walk(&mut |id, _| containers.push(id))?;
        let mut content = mine.clone();
        let mut own_containers = 0;
        for id in &containers {
            if mine.contains(id) {
                own_containers += 1;
                content.remove_range(&yrs::block::BlockRange::new(*id, 1));
            }
        }
        let deleted: u64 = content
            .iter()
            .flat_map(|(_, ranges)| ranges.iter())
            .map(|r| u64::from(r.end - r.start))
            .sum();
        let mut all = content.clone();
        self.delete(content)?;
        // Emptied containers of the author go too, innermost first: one
        // round per level of nesting, bounded by the walk's depth limit.
        let mut removed = 0;
        loop {
            let mut empty = IdSet::default();
            self.walk(&mut |id, is_empty| {
                if is_empty && mine.contains(&id) {
                    empty.insert(id, 1);
                }
            })?;
            if empty.is_empty() {
                break;
            }
            removed += empty.iter().flat_map(|(_, r)| r.iter()).count();
            all.merge_with(empty.clone());
            self.delete(empty)?;
        }
        Ok(Some(Erasure {
            update: delete_update(&all),
            deleted,
            containers: removed,
            kept_containers: own_containers - removed,
        }))
    }

    /// Items inserted and not deleted.
    fn visible(&self) -> IdSet {
        let state = self.encode_state(Encoding::V1);
        match Update::decode_v1(&state) {
            Ok(update) => update.insertions(false).diff(update.delete_set()),
            // Our own encoding always decodes.
            Err(_) => IdSet::default(),
        }
    }

    fn delete(&mut self, items: IdSet) -> Result<(), ApplyError> {
        if items.is_empty() {
            return Ok(());
        }
        self.apply_stored(&delete_update(&items), Encoding::V1)
            .map(drop)
    }

    /// Calls `visit(id, is_empty)` for every visible nested shared type.
    fn walk(&self, visit: &mut dyn FnMut(ID, bool)) -> Result<(), JsonError> {
        let txn = self.yrs().transact();
        for (_, root) in txn.root_refs() {
            if let Some(branch) = branch_of(&root) {
                walk_branch(&txn, branch, 1, visit)?;
            }
        }
        Ok(())
    }
}

/// An update that only deletes `items`.
fn delete_update(items: &IdSet) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(0u32); // no structs
    items.encode(&mut encoder);
    encoder.to_vec()
}

fn branch_of(out: &Out) -> Option<BranchPtr> {
    let branch = match out {
        Out::YText(r) => r.as_ref(),
        Out::YArray(r) => r.as_ref(),
        Out::YMap(r) => r.as_ref(),
        Out::YXmlElement(r) => r.as_ref(),
        Out::YXmlFragment(r) => r.as_ref(),
        Out::YXmlText(r) => r.as_ref(),
        Out::UndefinedRef(branch) => return Some(*branch),
        // Subdocuments are content, not containers: they are erased whole.
        Out::Any(_) | Out::YDoc(_) => return None,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(BranchPtr::from(branch))
}

fn walk_branch<T: ReadTxn>(
    txn: &T,
    branch: BranchPtr,
    depth: usize,
    visit: &mut dyn FnMut(ID, bool),
) -> Result<(), JsonError> {
    if depth > MAX_JSON_DEPTH {
        return Err(JsonError::TooDeep {
            limit: MAX_JSON_DEPTH,
        });
    }
    let map = MapRef::from(branch);
    let sequence = ArrayRef::from(branch);
    if let BranchID::Nested(id) = branch.id() {
        visit(id, branch.len() == 0 && map.len(txn) == 0);
    }
    let children: Vec<Out> = map
        .iter(txn)
        .map(|(_, value)| value)
        .chain(sequence.iter(txn))
        .collect();
    for child in children {
        if let Some(child) = branch_of(&child) {
            walk_branch(txn, child, depth + 1, visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use yrs::types::xml::XmlElementPrelim;
    use yrs::{
        ClientID, Doc, GetString, MapPrelim, Options, Text, TextPrelim, XmlFragment, XmlTextPrelim,
    };

    use super::*;
    use crate::Limits;

    fn peer(client: u64) -> Doc {
        Doc::with_options(Options {
            offset_kind: yrs::OffsetKind::Utf16,
            ..Options::with_client_id(ClientID::new(client))
        })
    }

    fn sync(from: &Doc, to: &Doc) {
        let update = from
            .transact()
            .encode_state_as_update_v1(&to.transact().state_vector());
        to.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
    }

    fn server_of(docs: &[&Doc]) -> Document {
        let mut server = Document::new(Limits::default());
        for doc in docs {
            let state = doc
                .transact()
                .encode_state_as_update_v1(&Default::default());
            server.apply(&state, Encoding::V1).unwrap();
        }
        server
    }

    fn client_items(doc: &Document, client: u64) -> IdSet {
        let state = doc.encode_state(Encoding::V1);
        let all = Update::decode_v1(&state).unwrap().insertions(true);
        let mut mine = IdSet::default();
        if let Some(ranges) = all.get(&ClientID::new(client)) {
            for (range, _) in ranges.iter() {
                let start = ID::new(ClientID::new(client), range.start);
                mine.insert(start, range.end - range.start);
            }
        }
        mine
    }

    #[test]
    fn removes_one_authors_text_and_keeps_the_others() {
        let (alice, bob) = (peer(1), peer(2));
        let text = alice.get_or_insert_text("t");
        text.insert(&mut alice.transact_mut(), 0, "Alice wrote this. ");
        sync(&alice, &bob);
        let bob_text = bob.get_or_insert_text("t");
        bob_text.insert(&mut bob.transact_mut(), 18, "Bob added that.");
        bob_text.insert(&mut bob.transact_mut(), 6, "[b]");
        let mut server = server_of(&[&alice, &bob]);

        let erasure = server.erase(&client_items(&server, 1)).unwrap().unwrap();
        assert_eq!(erasure.deleted, 18);
        assert_eq!(server.to_json().unwrap()["t"], "[b]Bob added that.");

        // Replicas converge on the same text with the erasure update alone.
        bob.transact_mut()
            .apply_update(Update::decode_v1(&erasure.update).unwrap())
            .unwrap();
        assert_eq!(bob_text.get_string(&bob.transact()), "[b]Bob added that.");
        // Nothing left to erase the second time.
        assert_eq!(server.erase(&client_items(&server, 1)).unwrap(), None);
    }

    #[test]
    fn compaction_leaves_no_trace_of_the_erased_content() {
        let alice = peer(1);
        let text = alice.get_or_insert_text("t");
        text.insert(&mut alice.transact_mut(), 0, "secret-sauce ");
        let bob = peer(2);
        sync(&alice, &bob);
        bob.get_or_insert_text("t")
            .insert(&mut bob.transact_mut(), 13, "public");
        let mut server = server_of(&[&alice, &bob]);
        server.erase(&client_items(&server, 1)).unwrap().unwrap();

        let state = server.encode_state(Encoding::V2);
        let needle = b"secret-sauce";
        assert!(!state.windows(needle.len()).any(|w| w == needle));
        let reloaded = Document::load(Limits::default(), Some((Encoding::V2, &state)), []).unwrap();
        assert_eq!(reloaded.to_json().unwrap()["t"], "public");
    }

    #[test]
    fn containers_with_others_content_stay_and_emptied_ones_go() {
        let (alice, bob) = (peer(1), peer(2));
        let root = alice.get_or_insert_xml_fragment("prosemirror");
        {
            let mut txn = alice.transact_mut();
            // Two paragraphs by Alice; Bob will type into the second.
            let first = root.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            first.push_back(&mut txn, XmlTextPrelim::new("only alice"));
            let second = root.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            second.push_back(&mut txn, XmlTextPrelim::new("alice "));
        }
        sync(&alice, &bob);
        {
            let fragment = bob.get_or_insert_xml_fragment("prosemirror");
            let mut txn = bob.transact_mut();
            let second = fragment.get(&txn, 1).unwrap().into_xml_element().unwrap();
            let text = second.get(&txn, 0).unwrap().into_xml_text().unwrap();
            text.insert(&mut txn, 6, "and bob");
        }
        let mut server = server_of(&[&alice, &bob]);

        let erasure = server.erase(&client_items(&server, 1)).unwrap().unwrap();
        // The first paragraph and its text node are gone; the second
        // paragraph and its text node stay, holding Bob's words only.
        assert_eq!(erasure.containers, 2);
        assert_eq!(erasure.kept_containers, 2);
        let json = server.to_json().unwrap();
        let rendered = json["prosemirror"].to_string();
        assert!(!rendered.contains("alice"), "{rendered}");
        assert!(rendered.contains("and bob"), "{rendered}");
        assert_eq!(rendered.matches("<paragraph>").count(), 1, "{rendered}");
    }

    #[test]
    fn map_values_and_nested_maps_of_the_author_go() {
        let (alice, bob) = (peer(1), peer(2));
        let map = alice.get_or_insert_map("meta");
        {
            let mut txn = alice.transact_mut();
            map.insert(&mut txn, "owner", "alice@example.com");
            map.insert(&mut txn, "notes", MapPrelim::default());
            map.insert(&mut txn, "body", TextPrelim::new("x"));
        }
        sync(&alice, &bob);
        {
            let map = bob.get_or_insert_map("meta");
            let mut txn = bob.transact_mut();
            map.insert(&mut txn, "title", "Plan");
            let body = map
                .get(&txn, "body")
                .unwrap()
                .cast::<yrs::TextRef>()
                .unwrap();
            body.insert(&mut txn, 1, "yz");
        }
        let mut server = server_of(&[&alice, &bob]);
        server.erase(&client_items(&server, 1)).unwrap().unwrap();
        let json = server.to_json().unwrap();
        assert_eq!(json["meta"]["title"], "Plan");
        assert_eq!(json["meta"]["body"], "yz");
        assert!(json["meta"].get("owner").is_none(), "{json}");
        assert!(json["meta"].get("notes").is_none(), "{json}");
    }

    #[test]
    fn only_the_given_items_are_erased() {
        let alice = peer(1);
        let text = alice.get_or_insert_text("t");
        text.insert(&mut alice.transact_mut(), 0, "keep ");
        let mut server = server_of(&[&alice]);
        let before = client_items(&server, 1);
        text.insert(&mut alice.transact_mut(), 5, "erase");
        let state = alice
            .transact()
            .encode_state_as_update_v1(&server.state_vector());
        server.apply(&state, Encoding::V1).unwrap();
        let mut later = client_items(&server, 1);
        later.diff_with(&before);

        server.erase(&later).unwrap().unwrap();
        assert_eq!(server.to_json().unwrap()["t"], "keep ");
    }
}
