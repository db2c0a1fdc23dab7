//! The registry: which task owns which document.
//!
//! One lock around a map from name to task handle. Looking a name up and
//! spawning its task happen under the lock, so any number of connections
//! arriving at once for a document that is not loaded all reach the same
//! task (y-sweet has been seen to load the same document twice here).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::command::{Command, DocError};
use super::task::DocTask;
use super::{DocConfig, DocName};
use crate::cluster::Cluster;
use crate::history::ActivityHub;
use crate::metrics::Metrics;
use crate::store::DocStore;

/// What every document task shares.
pub struct DocShared {
    /// Where documents live.
    pub store: Arc<dyn DocStore>,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
    /// How documents behave.
    pub config: DocConfig,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Every task the server spawns, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Other nodes serving the same documents, if any.
    pub cluster: Option<Arc<Cluster>>,
    /// Live activity events, for streaming.
    pub activity: ActivityHub,
    /// Policy and the audit trail.
    pub guard: Arc<crate::guard::Guard>,
}

/// A handle on a running document task.
#[derive(Clone)]
pub struct DocHandle {
    generation: u64,
    inbox: mpsc::Sender<Command>,
}

impl DocHandle {
    /// Sends a command, waiting if the task's inbox is full (backpressure).
    /// Fails with [`DocError::Closed`] if the task stopped.
    pub async fn send(&self, command: Command) -> Result<(), DocError> {
        self.inbox.send(command).await.map_err(|_| DocError::Closed)
    }
}

/// Commands a task's inbox holds before senders wait.
const INBOX_CAPACITY: usize = 1024;

/// The map of loaded documents.
pub struct Registry {
    docs: Mutex<HashMap<DocName, DocHandle>>,
    next_generation: AtomicU64,
    shared: Arc<DocShared>,
}

impl Registry {
    /// An empty registry.
    pub fn new(shared: Arc<DocShared>) -> Arc<Self> {
        Arc::new(Self {
            docs: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shared,
        })
    }

    /// What document tasks share.
    pub fn shared(&self) -> &Arc<DocShared> {
        &self.shared
    }

    /// The task owning `name`, started (and loading) if there was none.
    pub fn handle(self: &Arc<Self>, name: &DocName) -> Result<DocHandle, DocError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(DocError::ShuttingDown);
        }
        let mut docs = self.docs.lock().expect("registry lock poisoned");
        if let Some(handle) = docs.get(name) {
            return Ok(handle.clone());
        }
        let (inbox, receiver) = mpsc::channel(INBOX_CAPACITY);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let task = DocTask::new(
            name.clone(),
            generation,
            (inbox.clone(), receiver),
            self.clone(),
            self.shared.clone(),
        );
        self.shared.tracker.spawn(task.run());
        let handle = DocHandle { generation, inbox };
        docs.insert(name.clone(), handle.clone());
        Ok(handle)
    }

    /// Forgets a task that is stopping, unless the name already belongs to
    /// a newer one.
    pub(crate) fn unregister(&self, name: &DocName, generation: u64) {
        let mut docs = self.docs.lock().expect("registry lock poisoned");
        if docs.get(name).is_some_and(|h| h.generation == generation) {
            docs.remove(name);
        }
    }

    /// Number of documents with a running task.
    pub fn loaded(&self) -> usize {
        self.docs.lock().expect("registry lock poisoned").len()
    }

    /// The names of the documents with a running task.
    pub fn loaded_names(&self) -> Vec<DocName> {
        let docs = self.docs.lock().expect("registry lock poisoned");
        docs.keys().cloned().collect()
    }

    /// Sends a request to `name`'s task and waits for its answer. A task
    /// that was unloading in between is replaced and asked again.
    pub async fn request<T>(
        self: &Arc<Self>,
        name: &DocName,
        make: impl Fn(oneshot::Sender<Result<T, DocError>>) -> Command,
    ) -> Result<T, DocError> {
        for _ in 0..3 {
            let handle = self.handle(name)?;
            let (reply, answer) = oneshot::channel();
            if handle.send(make(reply)).await.is_err() {
                continue;
            }
            match answer.await {
                Ok(Err(DocError::Closed)) | Err(_) => continue,
                Ok(result) => return result,
            }
        }
        Err(DocError::Closed)
    }
}
