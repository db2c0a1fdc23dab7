//! A document's content as JSON, walked with a depth bound.
//!
//! yrs's own `to_json` recurses without a limit; peers decide how deep a
//! document nests, so this walk counts levels and refuses past
//! [`MAX_JSON_DEPTH`] instead of overflowing the stack.
//!
//! Root types arrive from peers without a declared kind (Yjs only knows a
//! root is text once some client calls `getText`), so the kind of an
//! undeclared root is inferred from its content: map entries make a map,
//! string content makes text, XML nodes make an XML fragment, anything else
//! is an array.

use serde_json::{Map as JsonMap, Number as JsonNumber, Value};
use yrs::branch::BranchPtr;
use yrs::types::xml::XmlOut;
use yrs::{
    Any, Array, ArrayRef, GetString, Map, MapRef, Out, ReadTxn, TextRef, Transact, Xml,
    XmlFragment, XmlFragmentRef,
};

use crate::Document;

/// Deepest nesting of shared types and values that [`Document::to_json`]
/// walks.
pub const MAX_JSON_DEPTH: usize = 128;

/// Why a document could not be rendered as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The content nests deeper than [`MAX_JSON_DEPTH`].
    #[error("document content nests deeper than {limit} levels")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
}

impl Document {
    /// The document's content as a JSON object keyed by root name.
    pub fn to_json(&self) -> Result<Value, JsonError> {
        let txn = self.yrs().transact();
        let mut roots = JsonMap::new();
        for (name, out) in txn.root_refs() {
            let value = match out {
                Out::UndefinedRef(branch) => undeclared_root(&txn, branch)?,
                other => out_value(&txn, other, 1)?,
            };
            roots.insert(name.to_owned(), value);
        }
        Ok(Value::Object(roots))
    }
}

fn undeclared_root<T: ReadTxn>(txn: &T, branch: BranchPtr) -> Result<Value, JsonError> {
    let map = MapRef::from(branch);
    if map.len(txn) > 0 {
        return out_value(txn, Out::YMap(map), 1);
    }
    let text = TextRef::from(branch).get_string(txn);
    if !text.is_empty() {
        return Ok(Value::String(text));
    }
    let array = ArrayRef::from(branch);
    let first = array.get(txn, 0);
    if matches!(first, Some(Out::YXmlElement(_) | Out::YXmlText(_))) {
        return xml_fragment(txn, &XmlFragmentRef::from(branch), 1).map(Value::String);
    }
    out_value(txn, Out::YArray(array), 1)
}

fn deeper(depth: usize) -> Result<usize, JsonError> {
    if depth >= MAX_JSON_DEPTH {
        Err(JsonError::TooDeep {
            limit: MAX_JSON_DEPTH,
        })
    } else {
        Ok(depth + 1)
    }
}

fn out_value<T: ReadTxn>(txn: &T, out: Out, depth: usize) -> Result<Value, JsonError> {
    Ok(match out {
        Out::Any(any) => any_value(&any, depth)?,
        Out::YText(text) => Value::String(text.get_string(txn)),
        Out::YArray(array) => {
            let depth = deeper(depth)?;
            let items: Result<Vec<_>, _> = array
                .iter(txn)
                .map(|item| out_value(txn, item, depth))
                .collect();
            Value::Array(items?)
        }
        Out::YMap(map) => {
            let depth = deeper(depth)?;
            let mut object = JsonMap::new();
            for (key, item) in map.iter(txn) {
                object.insert(key.to_owned(), out_value(txn, item, depth)?);
            }
            Value::Object(object)
        }
        Out::YXmlFragment(fragment) => Value::String(xml_fragment(txn, &fragment, depth)?),
        Out::YXmlElement(element) => Value::String(xml_node(txn, XmlOut::Element(element), depth)?),
        Out::YXmlText(text) => Value::String(text.get_string(txn)),
        Out::YDoc(doc) => serde_json::json!({ "guid": doc.guid().to_string() }),
        Out::UndefinedRef(_) => Value::Null,
    })
}

fn xml_fragment<T: ReadTxn, F: XmlFragment>(
    txn: &T,
    fragment: &F,
    depth: usize,
) -> Result<String, JsonError> {
    let depth = deeper(depth)?;
    let mut out = String::new();
    for child in fragment.children(txn) {
        out.push_str(&xml_node(txn, child, depth)?);
    }
    Ok(out)
}

fn xml_node<T: ReadTxn>(txn: &T, node: XmlOut, depth: usize) -> Result<String, JsonError> {
    Ok(match node {
        XmlOut::Text(text) => text.get_string(txn),
        XmlOut::Fragment(fragment) => xml_fragment(txn, &fragment, depth)?,
        XmlOut::Element(element) => {
            let tag = element.tag().to_string();
            let mut attrs: Vec<(String, String)> = element
                .attributes(txn)
                .map(|(k, v)| (k.to_owned(), v.to_string(txn)))
                .collect();
            attrs.sort();
            let mut out = format!("<{tag}");
            for (k, v) in attrs {
                out.push_str(&format!(" {k}=\"{}\"", v.replace('"', "&quot;")));
            }
            out.push('>');
            out.push_str(&xml_fragment(txn, &element, depth)?);
            out.push_str(&format!("</{tag}>"));
            out
        }
    })
}

fn any_value(any: &Any, depth: usize) -> Result<Value, JsonError> {
    Ok(match any {
        Any::Null | Any::Undefined => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(yrs::Number::Int(i)) => Value::Number((*i).into()),
        Any::Number(yrs::Number::Float(f)) => {
            JsonNumber::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Any::String(s) => Value::String(s.to_string()),
        Any::Buffer(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        Any::Array(items) => {
            let depth = deeper(depth)?;
            let items: Result<Vec<_>, _> = items.iter().map(|i| any_value(i, depth)).collect();
            Value::Array(items?)
        }
        Any::Map(entries) => {
            let depth = deeper(depth)?;
            let mut object = JsonMap::new();
            for (k, v) in entries.iter() {
                object.insert(k.clone(), any_value(v, depth)?);
            }
            Value::Object(object)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoding, Limits};
    use yrs::{Doc, Text, WriteTxn, XmlElementPrelim, XmlTextPrelim};

    /// Builds content the way a JS client would, then hands only the update
    /// to the replica, so every root arrives undeclared.
    fn replica_of(build: impl FnOnce(&Doc)) -> Document {
        let source = Doc::new();
        build(&source);
        let update = source
            .transact()
            .encode_state_as_update_v1(&Default::default());
        let mut doc = Document::new(Limits::default());
        doc.apply(&update, Encoding::V1).unwrap();
        doc
    }

    #[test]
    fn infers_undeclared_roots() {
        let doc = replica_of(|d| {
            let mut txn = d.transact_mut();
            txn.get_or_insert_text("text").push(&mut txn, "hello");
            let map = txn.get_or_insert_map("map");
            map.insert(&mut txn, "n", 1.5);
            map.insert(&mut txn, "s", "x");
            let arr = txn.get_or_insert_array("arr");
            arr.push_back(&mut txn, "a");
            arr.push_back(&mut txn, true);
            let xml = txn.get_or_insert_xml_fragment("xml");
            let p = xml.push_back(&mut txn, XmlElementPrelim::empty("p"));
            p.push_back(&mut txn, XmlTextPrelim::new("hi"));
        });
        assert_eq!(
            doc.to_json().unwrap(),
            serde_json::json!({
                "text": "hello",
                "map": {"n": 1.5, "s": "x"},
                "arr": ["a", true],
                "xml": "<p>hi</p>",
            })
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let doc = replica_of(|d| {
            let mut txn = d.transact_mut();
            let mut map = txn.get_or_insert_map("m");
            for _ in 0..(MAX_JSON_DEPTH + 10) {
                map = map.insert(&mut txn, "k", yrs::MapPrelim::default());
            }
        });
        assert_eq!(
            doc.to_json(),
            Err(JsonError::TooDeep {
                limit: MAX_JSON_DEPTH
            })
        );
    }
}
