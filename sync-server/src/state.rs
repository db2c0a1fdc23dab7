//! What every request handler and connection shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::limits::RequestCounter;
use crate::auth::{AccessChange, Auth};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::docs::{ConnId, Registry};
use crate::guard::Guard;
use crate::history::ActivityHub;
use crate::metrics::Metrics;
use crate::store::DocStore;

/// Shared server state; cheap to clone (every field is a handle).
#[derive(Clone)]
pub struct AppState {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// Loaded documents.
    pub registry: Arc<Registry>,
    /// The durable store.
    pub store: Arc<dyn DocStore>,
    /// Metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// One permit per allowed WebSocket connection.
    pub connection_slots: Arc<Semaphore>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Every spawned task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Other nodes serving the same documents, if any.
    pub cluster: Option<Arc<Cluster>>,
    /// Live activity events.
    pub activity: ActivityHub,
    /// Policy and the audit trail.
    pub guard: Arc<Guard>,
    /// Sign-in, tokens and roles.
    pub auth: Arc<Auth>,
    /// HTTP request counters (in Redis when the cluster has one).
    pub requests: Arc<RequestCounter>,
    next_conn: Arc<AtomicU64>,
}

/// What [`AppState::new`] is built from: everything [`crate::serve`]
/// opened or started before serving.
pub struct Services {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// The durable store.
    pub store: Arc<dyn DocStore>,
    /// Metrics for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Every spawned task.
    pub tracker: TaskTracker,
    /// Other nodes, if any.
    pub cluster: Option<Arc<Cluster>>,
    /// Policy and the audit trail.
    pub guard: Arc<Guard>,
    /// Sign-in, tokens and roles.
    pub auth: Arc<Auth>,
}

impl AppState {
    /// Builds the state around opened services.
    pub fn new(services: Services) -> Self {
        let Services {
            config,
            store,
            metrics,
            shutdown,
            tracker,
            cluster,
            guard,
            auth,
        } = services;
        if let Some(cluster) = &cluster {
            cluster.relay_access(auth.announcer());
        }
        let activity = ActivityHub::default();
        let shared = Arc::new(crate::docs::DocShared {
            store: store.clone(),
            metrics: metrics.clone(),
            config: config.docs.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            cluster: cluster.clone(),
            activity: activity.clone(),
            guard: guard.clone(),
        });
        let redis = config
            .cluster
            .as_ref()
            .map(|c| (c.redis_url.as_str(), c.prefix.as_str()));
        // The cluster already opened this URL, so it parses.
        let requests = RequestCounter::new(redis)
            .unwrap_or_else(|_| RequestCounter::new(None).expect("no Redis, no error"));
        Self {
            requests: Arc::new(requests),
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            registry: crate::docs::Registry::new(shared),
            config,
            store,
            metrics,
            shutdown,
            tracker,
            cluster,
            activity,
            guard,
            auth,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Announces that who may do what changed, to the live connections on
    /// this node and, through the cluster, on every other node: each
    /// connection concerned re-checks its caller. Call it after the change
    /// is in the identity store, so a re-check reads the new state.
    pub fn announce_access(&self, change: AccessChange) {
        if let Some(cluster) = &self.cluster {
            cluster.publish_access(&change);
        }
        self.auth.announce(change);
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}
