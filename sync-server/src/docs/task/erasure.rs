//! A document task's part in a GDPR erasure (see `crate::erasure` for the
//! whole procedure): closing the user's connections, naming their
//! pseudonym in history still in memory, deleting their content, and
//! compacting on request so the deleted content leaves the stored state.

use crdt_core::Erasure;
use serde::Serialize;
use tokio::sync::oneshot;
use yrs::IdSet;

use super::{DocTask, Event, compact};
use crate::docs::batch::Held;
use crate::docs::command::DocError;
use crate::docs::peer::CloseReason;

/// The origin of the delete an erasure makes.
pub const ERASURE_ORIGIN: &str = "system:erasure";

/// What erasing a user asks of one document.
#[derive(Debug, Clone)]
pub struct EraseRequest {
    /// The user.
    pub user: String,
    /// What history names instead of them; `None` keeps their id (the
    /// workspace retains attribution).
    pub pseudonym: Option<String>,
    /// The items they inserted, from stored attribution: their visible
    /// content is deleted. `None` keeps content (pseudonymise, retain).
    pub items: Option<IdSet>,
}

/// What an erasure did to one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Whether the user had edits whose attribution was not stored yet.
    pub unstored_edits: bool,
    /// The items looked for: the request's and those of unstored edits.
    #[serde(skip)]
    pub items: Option<IdSet>,
    /// Content units deleted (UTF-16 characters, elements, values).
    pub deleted: u64,
    /// The user's shared types deleted because they were left empty.
    pub containers_removed: usize,
    /// The user's shared types kept because others' content is in them.
    pub containers_kept: usize,
    /// The user's connections closed.
    pub connections_closed: usize,
}

impl DocTask {
    /// Carries out `request`; answers once the delete is durable.
    pub(super) async fn erase(
        &mut self,
        request: EraseRequest,
        reply: oneshot::Sender<Result<Erased, DocError>>,
    ) {
        let mut erased = Erased::default();
        let theirs: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, peer)| *peer.link.origin == *request.user)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in theirs {
            let reason = CloseReason::AccessRevoked("account erased".into());
            self.remove_peer(conn, Some(reason));
            erased.connections_closed += 1;
        }
        let unstored = self.pending_inserted_by(&request.user);
        erased.unstored_edits = !unstored.is_empty();
        let mut items = request.items;
        if let Some(items) = &mut items {
            items.merge_with(unstored);
        }
        erased.items = items.clone();
        if let Some(pseudonym) = &request.pseudonym {
            self.rename_pending_history(&request.user, pseudonym);
        }
        let Some(items) = items else {
            let _gone = reply.send(Ok(erased));
            return;
        };
        let erasure = match self.doc.erase(&items) {
            Ok(Some(erasure)) => erasure,
            Ok(None) => {
                let _gone = reply.send(Ok(erased));
                return;
            }
            Err(error) => {
                // The delete is applied in steps; one may have landed in
                // memory only. Back to what is stored (and in flight).
                let _gone = reply.send(Err(DocError::Erase(error.to_string())));
                self.rebuild().await;
                return;
            }
        };
        let Erasure {
            update,
            deleted,
            containers,
            kept_containers,
        } = erasure;
        erased.deleted = deleted;
        erased.containers_removed = containers;
        erased.containers_kept = kept_containers;
        if let Err(error) = self.accept_own(ERASURE_ORIGIN, update) {
            let _gone = reply.send(Err(DocError::Erase(error)));
            return;
        }
        let (durable, done) = oneshot::channel();
        self.hold(Held::Written(durable));
        self.shared.tracker.spawn(async move {
            let result = match done.await {
                Ok(Ok(())) => Ok(erased),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(DocError::Closed),
            };
            let _gone = reply.send(result);
        });
    }

    /// Compacts now; answers once a compaction that started after this
    /// request has finished, so it folds in everything durable before it.
    pub(super) fn request_compaction(&mut self, reply: oneshot::Sender<Result<(), DocError>>) {
        self.compaction.requested.push(reply);
        if !self.compacting {
            self.start_compaction();
        }
    }

    /// Starts a compaction; requests made so far are answered by it.
    pub(super) fn start_compaction(&mut self) {
        self.compacting = true;
        let waiting = std::mem::take(&mut self.compaction.requested);
        self.compaction.running.extend(waiting);
        let shared = self.shared.clone();
        let name = self.name.clone();
        let events = self.events_tx.clone();
        self.shared.tracker.spawn(async move {
            let result = compact(&shared, &name).await;
            let _task_gone = events.send(Event::Compacted(result));
        });
    }

    /// Answers the requests the finished compaction served; starts another
    /// for requests made while it ran. True if it did.
    pub(super) fn compaction_finished(
        &mut self,
        result: &Result<(usize, usize), DocError>,
    ) -> bool {
        for reply in self.compaction.running.drain(..) {
            let _gone = reply.send(result.clone().map(drop));
        }
        if self.compaction.requested.is_empty() {
            return false;
        }
        self.start_compaction();
        true
    }
}

/// Compactions asked for explicitly.
#[derive(Default)]
pub(super) struct CompactionRequests {
    /// Waiting for the next compaction to start.
    requested: Vec<oneshot::Sender<Result<(), DocError>>>,
    /// Served by the one running.
    running: Vec<oneshot::Sender<Result<(), DocError>>>,
}
