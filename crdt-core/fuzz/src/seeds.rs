//! Seed corpora made from real yrs documents, so the fuzzers start from
//! inputs that get past the first byte.
//!
//! `cargo test --manifest-path crdt-core/fuzz/Cargo.toml` writes them into
//! `corpus/<target>/seed-*`; `scripts/fuzz.sh` does this before fuzzing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crdt_core::wire;
use crdt_core::yrs::sync::awareness::AwarenessUpdateEntry;
use crdt_core::yrs::sync::{AwarenessUpdate, Message};
use crdt_core::yrs::updates::decoder::Decode;
use crdt_core::yrs::updates::encoder::Encode;
use crdt_core::yrs::{
    Any, Array, ArrayPrelim, ClientID, Doc, Map, MapPrelim, Number, ReadTxn, StateVector, Text,
    TextPrelim, Transact, Update, WriteTxn, Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim,
};

use crate::harness::{self, TARGETS};

/// One real-world-shaped edit history: the updates it produced, in order, and
/// the document they built.
struct History {
    name: &'static str,
    doc: Doc,
    updates_v1: Vec<Vec<u8>>,
    updates_v2: Vec<Vec<u8>>,
}

impl History {
    fn new(name: &'static str, client: u64) -> Self {
        Self {
            name,
            doc: Doc::with_client_id(client),
            updates_v1: Vec::new(),
            updates_v2: Vec::new(),
        }
    }

    fn edit(&mut self, f: impl FnOnce(&mut crdt_core::yrs::TransactionMut)) {
        let mut txn = self.doc.transact_mut();
        f(&mut txn);
        self.updates_v1.push(txn.encode_update_v1());
        self.updates_v2.push(txn.encode_update_v2());
    }

    fn state(&self, encoding_v2: bool) -> Vec<u8> {
        let txn = self.doc.transact();
        if encoding_v2 {
            txn.encode_state_as_update_v2(&StateVector::default())
        } else {
            txn.encode_state_as_update_v1(&StateVector::default())
        }
    }

    fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }
}

fn histories() -> Vec<History> {
    let mut text = History::new("text", 1);
    text.edit(|txn| txn.get_or_insert_text("t").push(txn, "hello world"));
    text.edit(|txn| {
        let t = txn.get_or_insert_text("t");
        let bold = HashMap::from([(Arc::from("bold"), Any::Bool(true))]);
        t.format(txn, 0, 5, bold);
        t.remove_range(txn, 5, 1);
        t.insert_embed(txn, 5, Any::from("image.png"));
        t.insert(txn, 2, "ü😀");
    });

    let mut values = History::new("values", 2);
    values.edit(|txn| {
        let m = txn.get_or_insert_map("m");
        m.insert(txn, "null", Any::Null);
        m.insert(txn, "undefined", Any::Undefined);
        m.insert(txn, "bool", true);
        m.insert(txn, "int", Any::Number(Number::Int(-(1 << 40))));
        m.insert(txn, "float", 1.5);
        m.insert(txn, "string", "s");
        m.insert(txn, "buffer", Any::Buffer(Arc::from(&[1u8, 2, 3][..])));
        let nested = Any::from(HashMap::from([(
            "list".to_owned(),
            Any::from(vec![Any::from(1.0), Any::from(vec![Any::Null])]),
        )]));
        m.insert(txn, "nested", nested);
    });
    values.edit(|txn| {
        let m = txn.get_or_insert_map("m");
        m.insert(txn, "string", "overwritten");
        m.remove(txn, "bool");
    });

    let mut shared = History::new("shared", 3);
    shared.edit(|txn| {
        let m = txn.get_or_insert_map("root");
        let inner = m.insert(txn, "map", MapPrelim::default());
        inner.insert(txn, "k", "v");
        let arr = m.insert(txn, "array", ArrayPrelim::default());
        arr.push_back(txn, TextPrelim::new("in an array"));
        arr.push_back(txn, MapPrelim::from([("x", Any::from(1.0))]));
        arr.insert_range(txn, 0, [1.0, 2.0, 3.0]);
        m.insert(txn, "subdoc", Doc::new());
    });
    shared.edit(|txn| {
        let m = txn.get_or_insert_map("root");
        // Deleting a nested type leaves a tombstone and a delete set.
        m.remove(txn, "map");
        let arr = txn.get_or_insert_array("list");
        arr.insert_range(txn, 0, ["a", "b", "c"]);
        arr.remove_range(txn, 1, 1);
    });

    let mut xml = History::new("xml", 4);
    xml.edit(|txn| {
        let f = txn.get_or_insert_xml_fragment("prosemirror");
        let p = f.push_back(txn, XmlElementPrelim::empty("paragraph"));
        p.insert_attribute(txn, "align", "left");
        let t = p.push_back(txn, XmlTextPrelim::new("some text"));
        let em = HashMap::from([(Arc::from("em"), Any::Bool(true))]);
        t.format(txn, 0, 4, em);
        let list = f.push_back(txn, XmlElementPrelim::empty("list"));
        let item = list.push_back(txn, XmlElementPrelim::empty("item"));
        item.push_back(txn, XmlTextPrelim::new("nested"));
    });

    // Two clients editing the same text concurrently, then one deleting the
    // other's characters: updates with several clients and cross-client
    // delete sets.
    let mut concurrent = History::new("concurrent", 5);
    let other = Doc::with_client_id(6);
    {
        let mut txn = other.transact_mut();
        txn.get_or_insert_text("t").push(&mut txn, "from six");
    }
    let theirs = other
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    concurrent.edit(|txn| {
        txn.get_or_insert_text("t").push(txn, "from five ");
        txn.apply_update(Update::decode_v1(&theirs).unwrap())
            .unwrap();
    });
    concurrent.edit(|txn| txn.get_or_insert_text("t").remove_range(txn, 3, 10));

    vec![text, values, shared, xml, concurrent]
}

fn awareness(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
    AwarenessUpdate {
        clients: entries
            .iter()
            .map(|&(client, clock, json)| {
                let entry = AwarenessUpdateEntry {
                    clock,
                    json: Arc::from(json),
                };
                (ClientID::new(client), entry)
            })
            .collect(),
    }
}

fn awareness_frames() -> Vec<(&'static str, Vec<u8>)> {
    let cursor = r##"{"user":{"name":"ada","color":"#f00"},"cursor":{"anchor":3,"head":5}}"##;
    let join = wire::awareness(&awareness(&[(10, 1, cursor), (11, 4, "{}")]));
    let leave = wire::awareness(&awareness(&[(10, 1, "null")]));
    let renew = wire::awareness(&awareness(&[(11, 5, "{}")]));
    vec![
        ("join", join.clone()),
        ("keepalive", wire::keepalive()),
        ("join-leave-renew", [join, leave, renew].concat()),
    ]
}

/// Every seed, as (target, name, bytes). Each must be accepted by its target.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target, name: String, bytes| out.push((target, name, bytes));
    for h in histories() {
        let name = h.name;
        for (i, update) in h.updates_v1.iter().enumerate() {
            add("update_v1", format!("{name}-{i}"), update.clone());
            add(
                "frame",
                format!("{name}-update-{i}"),
                wire::sync_update(update),
            );
        }
        for (i, update) in h.updates_v2.iter().enumerate() {
            add("update_v2", format!("{name}-{i}"), update.clone());
        }
        add("update_v1", format!("{name}-state"), h.state(false));
        add("update_v2", format!("{name}-state"), h.state(true));
        let sv = h.state_vector();
        add("state_vector", name.to_owned(), sv.encode_v1());
        add("frame", format!("{name}-step1"), wire::sync_step1(&sv));
        add(
            "frame",
            format!("{name}-step2"),
            wire::sync_step2(&h.state(false)),
        );

        // A peer's whole handshake: step 1, step 2, live updates, presence.
        let mut frames = vec![
            wire::sync_step1(&StateVector::default()),
            wire::sync_step2(&h.updates_v1[0]),
        ];
        frames.extend(h.updates_v1[1..].iter().map(|u| wire::sync_update(u)));
        frames.extend(awareness_frames().into_iter().map(|(_, f)| f));
        frames.push(Message::AwarenessQuery.encode_v1());
        for (flags, scope) in [(0u8, "read-write"), (1, "read-only")] {
            let mut input = vec![flags];
            for frame in &frames {
                input.extend(u16::try_from(frame.len()).unwrap().to_le_bytes());
                input.extend(frame);
            }
            add("session", format!("{name}-{scope}"), input);
        }
    }
    add(
        "state_vector",
        "empty".into(),
        StateVector::default().encode_v1(),
    );
    add("frame", "query".into(), Message::AwarenessQuery.encode_v1());
    add("frame", "auth".into(), wire::permission_denied("read-only"));
    for (name, frame) in awareness_frames() {
        add("frame", format!("awareness-{name}"), frame.clone());
        add("presence", name.to_owned(), frame);
    }
    out
}

#[test]
fn write_seed_corpora() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in TARGETS {
        std::fs::create_dir_all(corpus.join(target)).unwrap();
    }
    for (target, name, bytes) in seeds() {
        assert_eq!(harness::run(target, &bytes), Ok(()), "{target}/{name}");
        std::fs::write(corpus.join(target).join(format!("seed-{name}")), bytes).unwrap();
    }
}
