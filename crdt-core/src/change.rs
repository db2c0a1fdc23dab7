//! A change accepted from a peer: the update as sent, plus which clocks of
//! which clients it wrote, so a host can leave those out when it forwards
//! a merged batch back to the same peer.

use yrs::{ClientID, IdSet, StateVector, Update};

/// An accepted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The update as the peer sent it (v1).
    pub update: Vec<u8>,
    /// For every client the update writes structs for, the clock just past
    /// its last struct.
    pub clocks: Vec<(ClientID, u32)>,
    /// Items the update inserts: who wrote what, for attribution.
    pub inserted: IdSet,
    /// Items the update deletes.
    pub deleted: IdSet,
}

impl Change {
    /// Describes `bytes`, whose decoded form is `decoded`.
    pub fn new(bytes: Vec<u8>, decoded: &Update) -> Self {
        let inserted = decoded.insertions(true);
        let clocks = inserted
            .iter()
            .filter_map(|(client, ranges)| {
                let end = ranges.iter().map(|r| r.end).max()?;
                Some((*client, end))
            })
            .collect();
        Self {
            update: bytes,
            clocks,
            inserted,
            deleted: decoded.delete_set().clone(),
        }
    }
}

/// A state vector that marks everything `changes` wrote as known: diffing a
/// merged batch against it leaves out exactly those structs.
pub fn known_through<'a>(changes: impl IntoIterator<Item = &'a [(ClientID, u32)]>) -> StateVector {
    let mut sv = StateVector::default();
    for clocks in changes {
        for &(client, end) in clocks {
            sv.set_max(client, end);
        }
    }
    sv
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, Text, Transact};

    #[test]
    fn records_the_clocks_written() {
        let doc = Doc::with_client_id(4);
        let text = doc.get_or_insert_text("t");
        text.insert(&mut doc.transact_mut(), 0, "abc");
        let second = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 3, "de");
            txn.encode_update_v1()
        };
        let change = Change::new(second.clone(), &Update::decode_v1(&second).unwrap());
        assert_eq!(change.clocks, vec![(ClientID::new(4), 5)]);
        let sv = known_through([change.clocks.as_slice()]);
        assert_eq!(sv.get(&ClientID::new(4)), 5);
    }
}
