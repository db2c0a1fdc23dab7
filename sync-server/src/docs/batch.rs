//! The durability pipeline of one document: updates accepted since the last
//! commit, the batch being committed, and everything that must wait for it.
//!
//! Rule: nothing that reveals document content leaves the server before the
//! updates it reflects are durable. Fan-out frames, sync replies to joiners
//! and HTTP reads are all held behind the batch that covers them, so a
//! `kill -9` can never lose an update that any client has seen.

use std::mem;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::command::{DocError, ReadOut};
use super::fanout::Accepted;
use super::peer::ConnId;
use crate::history::{NewVersion, VersionMeta};

/// Something released once a batch is durable.
pub enum Held {
    /// Frames for one connection (a sync reply).
    Frames {
        /// The connection.
        conn: ConnId,
        /// The frames, in order.
        frames: Vec<Bytes>,
    },
    /// An HTTP write waiting to be acknowledged.
    Written(oneshot::Sender<Result<(), DocError>>),
    /// An HTTP read computed from state that includes this batch.
    Read(oneshot::Sender<Result<ReadOut, DocError>>, ReadOut),
    /// A version of state that includes this batch, to store.
    Version(Box<PendingVersion>),
}

/// A version waiting for the updates it reflects to be durable.
pub struct PendingVersion {
    /// What to store (`seq` is set when it is released).
    pub version: NewVersion,
    /// Who waits for it, if anyone.
    pub reply: Option<oneshot::Sender<Result<VersionMeta, DocError>>>,
    /// The restored version, if this records a restore.
    pub restored: Option<u64>,
}

impl Held {
    /// Tells a waiting HTTP caller that the batch failed. Frames are simply
    /// dropped: their connection is being closed.
    pub fn fail(self, error: DocError) {
        // A caller that stopped waiting needs no answer.
        match self {
            Held::Frames { .. } => {}
            Held::Written(reply) => {
                let _gone = reply.send(Err(error));
            }
            Held::Read(reply, _) => {
                let _gone = reply.send(Err(error));
            }
            Held::Version(pending) => {
                if let Some(reply) = pending.reply {
                    let _gone = reply.send(Err(error));
                }
            }
        }
    }
}

/// Updates accepted together and what waits on them.
#[derive(Default)]
pub struct Batch {
    /// The updates, in the order the document applied them.
    pub updates: Vec<Accepted>,
    /// Released, in order, after the updates are durable.
    pub held: Vec<Held>,
    /// When the first update arrived: the coalescing window counts from it.
    pub opened: Option<Instant>,
    /// The audit entries of the updates, appended before they are stored.
    pub audit: Vec<governance::audit::AuditEvent>,
}

impl Batch {
    /// Whether the batch holds no updates.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Adds an accepted update.
    pub fn push(&mut self, update: Accepted) {
        self.opened.get_or_insert_with(Instant::now);
        self.updates.push(update);
    }

    /// Bytes of the updates.
    pub fn bytes(&self) -> usize {
        self.updates.iter().map(|u| u.update.len()).sum()
    }

    /// Fails every waiter of the batch.
    pub fn fail(self, error: &DocError) {
        for held in self.held {
            held.fail(error.clone());
        }
    }
}

/// The two batches of a document: the one filling and the one committing.
#[derive(Default)]
pub struct Pipeline {
    /// Accepted since the last commit started.
    pub filling: Batch,
    /// Being committed; at most one, so commits stay in order.
    pub committing: Option<Batch>,
}

impl Pipeline {
    /// Queues `held` behind every update accepted so far; returns it back
    /// when nothing is pending, so it can be released at once.
    pub fn hold(&mut self, held: Held) -> Option<Held> {
        if !self.filling.is_empty() {
            self.filling.held.push(held);
            None
        } else if let Some(batch) = &mut self.committing {
            batch.held.push(held);
            None
        } else {
            Some(held)
        }
    }

    /// Whether any update is not yet durable.
    pub fn is_idle(&self) -> bool {
        self.filling.is_empty() && self.filling.held.is_empty() && self.committing.is_none()
    }

    /// Starts committing the filling batch. `None` if a commit is already
    /// running or nothing is filling.
    pub fn start_commit(&mut self) -> Option<&mut Batch> {
        if self.committing.is_some() || self.filling.is_empty() {
            return None;
        }
        self.committing = Some(mem::take(&mut self.filling));
        self.committing.as_mut()
    }

    /// Every update not yet durable, oldest first (for rebuilding a
    /// document on top of what the store holds).
    pub fn undurable(&self) -> impl Iterator<Item = &Accepted> {
        self.committing
            .iter()
            .flat_map(|b| b.updates.iter())
            .chain(self.filling.updates.iter())
    }

    /// Fails everything waiting and forgets all pending updates.
    pub fn fail_all(&mut self, error: &DocError) {
        if let Some(batch) = self.committing.take() {
            batch.fail(error);
        }
        mem::take(&mut self.filling).fail(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn accepted() -> Accepted {
        Accepted {
            from: None,
            update: Bytes::from_static(&[0, 0]),
            clocks: Vec::new(),
            origin: Arc::from("t"),
            at_ms: 0,
            received: Instant::now(),
        }
    }

    #[test]
    fn holds_go_behind_the_newest_undurable_batch() {
        let mut p = Pipeline::default();
        let frames = |n| Held::Frames {
            conn: ConnId(n),
            frames: vec![],
        };
        assert!(p.hold(frames(1)).is_some(), "nothing pending: release now");
        p.filling.push(accepted());
        assert!(p.hold(frames(2)).is_none());
        assert!(p.start_commit().is_some());
        assert!(p.start_commit().is_none(), "one commit at a time");
        assert!(
            p.hold(frames(3)).is_none(),
            "waits for the committing batch"
        );
        assert_eq!(p.committing.as_ref().unwrap().held.len(), 2);
        p.filling.push(accepted());
        p.hold(frames(4));
        assert_eq!(p.filling.held.len(), 1, "behind the newer filling batch");
        assert_eq!(p.undurable().count(), 2);
    }
}
