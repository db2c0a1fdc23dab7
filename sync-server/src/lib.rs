//! A Yjs-compatible collaboration server.
//!
//! Stock Yjs applications connect with the `y-websocket` provider to
//! `ws://HOST/ws/{document}` and collaborate unchanged. Every accepted
//! update is durable in the store before any other client sees it; updates
//! are coalesced per short tick and fanned out to every other connection;
//! presence (awareness) is kept server-side with the 30 s expiry.
//!
//! The layers, outermost first:
//! - [`routes`] and [`ws`]: HTTP and WebSocket edges; connections decode
//!   frames on their own tasks;
//! - [`docs`]: one task per loaded document (the only owner of its state),
//!   found through the [`docs::Registry`];
//! - [`store`]: the durable log and snapshots ([`store::SledStore`] by default).
//!
//! [`run`] serves on a listener until a shutdown token fires, then flushes
//! every document and closes the store.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod docs;
pub mod erasure;
pub mod error;
pub mod guard;
pub mod history;
pub mod metrics;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
pub mod ws;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cluster::Cluster;
pub use config::Config;
use config::StoreKind;
use guard::Guard;
use metrics::Metrics;
use state::AppState;
use store::{DocStore, PostgresConfig, PostgresStore, SledConfig, SledStore, StoreError};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or closed cleanly.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The cluster configuration is unusable (a malformed Redis URL).
    #[error("cluster: {0}")]
    Cluster(String),
    /// The audit trail or the policies could not start.
    #[error("governance: {0}")]
    Guard(#[from] guard::GuardError),
    /// The identity providers could not be reached or are misconfigured.
    #[error("identity: {0}")]
    Auth(#[from] auth::AuthStartError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The store of users, memberships and keys could not open.
    #[error(transparent)]
    IdentityStore(#[from] auth::store::IdentityStoreError),
    /// Documents did not finish flushing within the shutdown timeout.
    #[error("shutdown timed out after {0:?} with tasks still running")]
    ShutdownTimeout(std::time::Duration),
}

/// Opens the store the configuration names: the embedded sled store, or
/// PostgreSQL (migrated, and checked to admit this build).
pub async fn open_store(config: &Config) -> Result<Arc<dyn DocStore>, StoreError> {
    let store: Arc<dyn DocStore> = match config.store {
        StoreKind::Sled => SledStore::open(SledConfig {
            path: config.data_dir.clone(),
            cache_bytes: config.cache_bytes,
            fsync: config.fsync,
            commit_delay: config.commit_delay,
        })?,
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .ok_or_else(|| StoreError::Backend("store postgres needs a database URL".into()))?;
            PostgresStore::open(PostgresConfig {
                url: url.expose().to_owned(),
                schema: config.database_schema.clone(),
                synchronous_commit: config.fsync,
                commit_delay: config.commit_delay,
                pool_size: config.database_pool_size,
            })
            .await?
        }
    };
    Ok(store)
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting,
/// closes connections with code 1001, makes every accepted update durable
/// and closes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let store = open_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// [`run`] with an already opened store.
pub async fn serve(
    config: Config,
    store: Arc<dyn DocStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    // Certificate problems stop the start before anything is opened.
    let tls_config = config
        .tls
        .as_ref()
        .map(|files| tls::server_config(&files.cert, &files.key))
        .transpose()?;
    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    let metrics = Arc::new(Metrics::new());
    let cluster = match &config.cluster {
        Some(cluster) => Some(
            Cluster::start(cluster.clone(), metrics.clone(), shutdown.clone(), &tracker)
                .map_err(|e| ServerError::Cluster(e.to_string()))?,
        ),
        None => None,
    };
    let guard = Guard::open(&config).await?;
    // Always running: workspaces get retention periods and legal holds at
    // runtime, through their governance settings.
    tracker.spawn(history::run_sweeper(
        store.clone(),
        guard.governance().audit().clone(),
        config.retention.clone(),
        config.retention_sweep,
        shutdown.clone(),
    ));
    let identity_store = auth::open_store(&config)?;
    let auth = auth::Auth::start(&config.identity, identity_store).await?;
    if auth.is_anonymous() {
        tracing::warn!(
            "no identity provider configured: anonymous mode, everyone is the owner of everything; for local use only"
        );
    }
    let state = AppState::new(state::Services {
        config: config.clone(),
        store: store.clone(),
        metrics,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        cluster,
        guard: guard.clone(),
        auth,
    });
    let app = routes::router(state)
        .into_make_service_with_connect_info::<auth::credentials::ClientAddr>();
    let stop = shutdown.clone().cancelled_owned();
    match &tls_config {
        Some(tls) => {
            let listener =
                tls::TlsListener::start(listener, tls.clone(), shutdown.clone(), &tracker)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
        None => {
            axum::serve(tls::PlainListener(listener), app)
                .with_graceful_shutdown(stop)
                .await?;
        }
    }
    tracker.close();
    let drained = tokio::time::timeout(config.shutdown_timeout, tracker.wait()).await;
    guard.close().await;
    store.close().await?;
    drained.map_err(|_| ServerError::ShutdownTimeout(config.shutdown_timeout))
}
