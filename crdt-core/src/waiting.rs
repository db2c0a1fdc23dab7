//! Updates whose dependencies have not arrived, held outside yrs.
//!
//! yrs 0.28 keeps such updates as "pending" and retries them later, but its
//! retry misses some delivery orders (structs stay stranded forever) and
//! merging pending updates can drop structs outright: the property test
//! `any_delivery_order_converges` finds both. So a [`crate::Document`] hands
//! yrs only updates whose every dependency is already present, and holds
//! the rest here until it is. yrs's pending machinery is never used.
//!
//! An update depends on:
//! - for every client it writes, the clocks before its first struct (a
//!   client's structs integrate in order);
//! - every item its structs point at (origins and parent items);
//! - every item it deletes.
//!
//! A dependency is present if the document holds it or the update itself
//! carries it.
//!
//! Updates can depend on each other in a cycle: one carries client A's
//! structs and a struct of client B that builds on client C's, while
//! another carries C's structs, which build on A's. A large state cut into
//! chunks (see [`crate::chunk`]) is exactly that. No one of them is ever
//! ready alone, so whenever an update has to wait, the room also checks
//! whether everything waiting is ready *together*, and if so hands it over
//! as one merged update.

use yrs::updates::encoder::Encode;
use yrs::{ID, IdSet, StateVector};

use crate::Limits;
use crate::doc::ApplyError;
use crate::update::DecodedUpdate;

/// An update waiting for its dependencies.
pub(crate) struct Waiting {
    /// The update in v1, to hand out with the document's state meanwhile.
    pub(crate) v1: Vec<u8>,
    pub(crate) decoded: DecodedUpdate,
}

/// The updates of one document that wait, in arrival order.
#[derive(Default)]
pub(crate) struct WaitingRoom {
    entries: Vec<Waiting>,
    bytes: usize,
    /// Every struct the waiting updates carry (`None`: to recompute).
    carried: Option<IdSet>,
}

impl WaitingRoom {
    /// Holds `decoded` until its dependencies arrive.
    pub(crate) fn hold(
        &mut self,
        decoded: DecodedUpdate,
        limits: &Limits,
    ) -> Result<(), ApplyError> {
        let v1 = decoded.update.encode_v1();
        if self.entries.len() >= limits.max_waiting_updates
            || self.bytes + v1.len() > limits.max_waiting_bytes
        {
            return Err(ApplyError::TooManyWaiting {
                updates: self.entries.len(),
                bytes: self.bytes,
            });
        }
        self.bytes += v1.len();
        if let Some(carried) = &mut self.carried {
            carried.merge_with(decoded.update.insertions(true));
        }
        self.entries.push(Waiting { v1, decoded });
        Ok(())
    }

    /// Takes every waiting update as one, if together they depend on
    /// nothing beyond `have`.
    pub(crate) fn take_all_if_ready_together(&mut self, have: &StateVector) -> Option<yrs::Update> {
        if self.entries.len() < 2 {
            return None;
        }
        let entries = &self.entries;
        let carried = self.carried.get_or_insert_with(|| {
            let mut all = IdSet::default();
            for w in entries {
                all.merge_with(w.decoded.update.insertions(true));
            }
            all
        });
        // Cheap test first: the clocks must join up with the document's.
        if !contiguous(carried, have) {
            return None;
        }
        let present = |id: &ID| id.clock < have.get(&id.client) || carried.contains(id);
        let ready = entries.iter().all(|w| {
            w.decoded.references.iter().all(present)
                && deletions_present(w.decoded.update.delete_set(), &present)
        });
        if !ready {
            return None;
        }
        let merged = yrs::merge_updates_v1(self.entries.iter().map(|w| w.v1.as_slice())).ok()?;
        let merged = <yrs::Update as yrs::updates::decoder::Decode>::decode_v1(&merged).ok()?;
        // Never trade a stranded update for a lost struct.
        if &merged.insertions(true) != carried {
            return None;
        }
        self.entries.clear();
        self.bytes = 0;
        self.carried = Some(IdSet::default());
        Some(merged)
    }

    /// Takes the oldest update that is ready against `have`.
    pub(crate) fn take_ready(&mut self, have: &StateVector) -> Option<Waiting> {
        let index = self
            .entries
            .iter()
            .position(|w| is_ready(&w.decoded, have))?;
        let waiting = self.entries.remove(index);
        self.bytes -= waiting.v1.len();
        self.carried = None;
        Some(waiting)
    }

    /// The waiting updates in v1, oldest first.
    pub(crate) fn updates(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|w| w.v1.as_slice())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether everything `decoded` depends on is in `have` or in itself.
pub(crate) fn is_ready(decoded: &DecodedUpdate, have: &StateVector) -> bool {
    let carried = decoded.update.insertions(true);
    let present = |id: &ID| id.clock < have.get(&id.client) || carried.contains(id);
    contiguous(&carried, have)
        && decoded.references.iter().all(present)
        && deletions_present(decoded.update.delete_set(), &present)
}

/// Each client's structs continue where the document's clock for it ends.
fn contiguous(carried: &IdSet, have: &StateVector) -> bool {
    carried.iter().all(|(client, ranges)| {
        let mut covered = have.get(client);
        for range in ranges.iter() {
            if range.start > covered {
                return false;
            }
            covered = covered.max(range.end);
        }
        true
    })
}

fn deletions_present(deleted: &IdSet, present: &impl Fn(&ID) -> bool) -> bool {
    deleted.iter().all(|(client, ranges)| {
        ranges
            .iter()
            .all(|range| range.is_empty() || present(&ID::new(*client, range.end - 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{Encoding, decode_with_references};
    use yrs::{Doc, Text, Transact};

    fn decoded(update: &[u8]) -> DecodedUpdate {
        decode_with_references(update, Encoding::V1, &Limits::default()).unwrap()
    }

    #[test]
    fn an_update_waits_for_the_clocks_and_items_it_builds_on() {
        let a = Doc::with_client_id(1);
        let text = a.get_or_insert_text("t");
        let first = {
            let mut txn = a.transact_mut();
            text.insert(&mut txn, 0, "ab");
            txn.encode_update_v1()
        };
        let second = {
            let mut txn = a.transact_mut();
            text.insert(&mut txn, 1, "x");
            txn.encode_update_v1()
        };
        // Another client writes next to client 1's text.
        let b = Doc::with_client_id(2);
        b.transact_mut()
            .apply_update(yrs::updates::decoder::Decode::decode_v1(&first).unwrap())
            .unwrap();
        let reply = {
            let t = b.get_or_insert_text("t");
            let mut txn = b.transact_mut();
            t.insert(&mut txn, 2, "!");
            txn.encode_update_v1()
        };
        let empty = StateVector::default();
        assert!(is_ready(&decoded(&first), &empty));
        assert!(
            !is_ready(&decoded(&second), &empty),
            "needs client 1's clocks 0..2"
        );
        assert!(
            !is_ready(&decoded(&reply), &empty),
            "points at client 1's items"
        );
        let mut have = StateVector::default();
        have.set_max(yrs::ClientID::new(1), 2);
        assert!(is_ready(&decoded(&second), &have));
        assert!(is_ready(&decoded(&reply), &have));
    }
}
