//! Presence: the awareness protocol's shared state, with time passed in.
//!
//! yrs's `Awareness` reads a clock of its own and never expires anyone; a
//! server needs both the y-protocols expiry (a state not renewed for 30 s
//! is gone) and a clock it controls, so this table keeps the y-protocols
//! rules over yrs's wire types ([`AwarenessUpdate`]).

use std::collections::HashMap;
use std::sync::Arc;

use yrs::ClientID;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;

/// How long a state lives without renewal, as in y-protocols.
pub const OUTDATED_TIMEOUT_MS: u64 = 30_000;

const NULL_STATE: &str = "null";

#[derive(Debug, Clone)]
struct Entry {
    clock: u32,
    /// `None` once the client left; the clock is kept so a late, older
    /// message cannot bring the client back.
    state: Option<Arc<str>>,
    last_updated_ms: u64,
}

/// What applying an awareness update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// Entries that were accepted (newer clock, or a removal at the same
    /// clock). Forward exactly these to other peers: renewals included, or
    /// the others would expire this client after 30 s.
    pub accepted: AwarenessUpdate,
    /// Clients that appeared with a state.
    pub added: Vec<ClientID>,
    /// Clients whose state became `null`.
    pub removed: Vec<ClientID>,
}

impl Default for PresenceChange {
    fn default() -> Self {
        Self {
            accepted: AwarenessUpdate {
                clients: HashMap::new(),
            },
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl PresenceChange {
    /// Whether nothing was accepted.
    pub fn is_empty(&self) -> bool {
        self.accepted.clients.is_empty()
    }
}

/// The awareness states known for one document.
#[derive(Debug, Clone)]
pub struct Presence {
    entries: HashMap<ClientID, Entry>,
    timeout_ms: u64,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new(OUTDATED_TIMEOUT_MS)
    }
}

impl Presence {
    /// An empty table whose states expire after `timeout_ms` without renewal.
    pub fn new(timeout_ms: u64) -> Self {
        Self {
            entries: HashMap::new(),
            timeout_ms,
        }
    }

    /// Applies an update received at `now_ms`, with the y-protocols rule: an
    /// entry wins if its clock is newer, or if it is a removal at the same
    /// clock.
    pub fn apply(&mut self, update: AwarenessUpdate, now_ms: u64) -> PresenceChange {
        let mut change = PresenceChange::default();
        for (client, entry) in update.clients {
            // Clients `JSON.parse` states, so `" null"` is a removal too.
            let state = (entry.json.trim() != NULL_STATE).then(|| entry.json.clone());
            let known = self.entries.get(&client);
            let accept = match known {
                None => true,
                Some(known) => {
                    known.clock < entry.clock
                        || (known.clock == entry.clock && state.is_none() && known.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let was_present = known.is_some_and(|k| k.state.is_some());
            match (&state, was_present) {
                (Some(_), false) => change.added.push(client),
                (None, true) => change.removed.push(client),
                // A removal of a client never seen changes nothing visible,
                // but its clock is still recorded below.
                (None, false) if known.is_none() => {
                    self.entries.insert(
                        client,
                        Entry {
                            clock: entry.clock,
                            state: None,
                            last_updated_ms: now_ms,
                        },
                    );
                    continue;
                }
                _ => {}
            }
            self.entries.insert(
                client,
                Entry {
                    clock: entry.clock,
                    state,
                    last_updated_ms: now_ms,
                },
            );
            change.accepted.clients.insert(client, entry);
        }
        change
    }

    /// Every live state, as a newcomer or a query-awareness should receive
    /// it. `None` when nobody is present.
    pub fn snapshot(&self) -> Option<AwarenessUpdate> {
        let clients: HashMap<_, _> = self
            .entries
            .iter()
            .filter_map(|(client, e)| {
                let json = e.state.clone()?;
                Some((
                    *client,
                    AwarenessUpdateEntry {
                        clock: e.clock,
                        json,
                    },
                ))
            })
            .collect();
        (!clients.is_empty()).then_some(AwarenessUpdate { clients })
    }

    /// Marks `clients` as gone (their connection closed) and returns the
    /// update that tells everyone else, or `None` if none was present.
    pub fn remove(
        &mut self,
        clients: impl IntoIterator<Item = ClientID>,
    ) -> Option<AwarenessUpdate> {
        let mut removal = HashMap::new();
        for client in clients {
            if let Some(entry) = self.entries.get_mut(&client)
                && entry.state.take().is_some()
            {
                // Same clock with a null state: receivers drop the client.
                removal.insert(
                    client,
                    AwarenessUpdateEntry {
                        clock: entry.clock,
                        json: Arc::from(NULL_STATE),
                    },
                );
            }
        }
        (!removal.is_empty()).then_some(AwarenessUpdate { clients: removal })
    }

    /// Drops states not renewed within the timeout; returns their removal
    /// update and the clients removed.
    pub fn expire(&mut self, now_ms: u64) -> Option<(AwarenessUpdate, Vec<ClientID>)> {
        let outdated: Vec<ClientID> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.state.is_some() && now_ms.saturating_sub(e.last_updated_ms) >= self.timeout_ms
            })
            .map(|(c, _)| *c)
            .collect();
        let update = self.remove(outdated.iter().copied())?;
        Some((update, outdated))
    }

    /// Forgets removed clients whose last message is older than the timeout,
    /// so the table does not grow with every client that ever visited.
    pub fn prune(&mut self, now_ms: u64) {
        let timeout = self.timeout_ms;
        self.entries
            .retain(|_, e| e.state.is_some() || now_ms.saturating_sub(e.last_updated_ms) < timeout);
    }

    /// Live states: client id and its JSON state.
    pub fn states(&self) -> impl Iterator<Item = (ClientID, &str)> {
        self.entries
            .iter()
            .filter_map(|(c, e)| Some((*c, e.state.as_deref()?)))
    }

    /// Number of live states.
    pub fn len(&self) -> usize {
        self.entries.values().filter(|e| e.state.is_some()).count()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: entries
                .iter()
                .map(|&(c, clock, json)| {
                    (
                        ClientID::new(c),
                        AwarenessUpdateEntry {
                            clock,
                            json: Arc::from(json),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn newer_clocks_win_and_renewals_are_forwarded() {
        let mut p = Presence::default();
        let c = p.apply(update(&[(1, 1, r#"{"n":"a"}"#)]), 0);
        assert_eq!(c.added, vec![ClientID::new(1)]);
        // Same clock, same state: stale, not forwarded.
        assert!(p.apply(update(&[(1, 1, r#"{"n":"a"}"#)]), 10).is_empty());
        // A renewal with the same state is forwarded so others keep it alive.
        let c = p.apply(update(&[(1, 2, r#"{"n":"a"}"#)]), 20);
        assert_eq!(c.accepted.clients.len(), 1);
        assert!(c.added.is_empty());
        // Older clock loses.
        assert!(p.apply(update(&[(1, 1, r#"{"n":"old"}"#)]), 30).is_empty());
        assert_eq!(p.states().next().unwrap().1, r#"{"n":"a"}"#);
    }

    #[test]
    fn removal_at_same_clock_and_expiry() {
        let mut p = Presence::new(1000);
        p.apply(update(&[(1, 3, "{}"), (2, 1, "{}")]), 0);
        let c = p.apply(update(&[(1, 3, "null")]), 5);
        assert_eq!(c.removed, vec![ClientID::new(1)]);
        assert_eq!(p.len(), 1);
        p.apply(update(&[(2, 2, "{}")]), 900);
        assert!(p.expire(1500).is_none(), "client 2 renewed at 900");
        let (removal, gone) = p.expire(1900).unwrap();
        assert_eq!(gone, vec![ClientID::new(2)]);
        assert_eq!(removal.clients[&ClientID::new(2)].json.as_ref(), "null");
        assert!(p.is_empty());
        p.prune(5000);
        assert!(p.entries.is_empty());
    }

    #[test]
    fn a_null_with_whitespace_is_a_removal_as_in_javascript() {
        let mut p = Presence::default();
        p.apply(update(&[(1, 1, "{}")]), 0);
        let c = p.apply(update(&[(1, 1, " null ")]), 1);
        assert_eq!(c.removed, vec![ClientID::new(1)]);
        assert!(p.is_empty());
    }

    #[test]
    fn removing_a_connections_clients_broadcasts_nulls() {
        let mut p = Presence::default();
        p.apply(update(&[(7, 4, r#"{"cursor":1}"#)]), 0);
        let removal = p.remove([ClientID::new(7), ClientID::new(8)]).unwrap();
        assert_eq!(removal.clients.len(), 1);
        assert_eq!(removal.clients[&ClientID::new(7)].clock, 4);
        assert!(p.remove([ClientID::new(7)]).is_none());
    }
}
