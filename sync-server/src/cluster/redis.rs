//! The bus on Redis pub/sub: one publishing connection and one subscribing
//! connection per node, each reconnecting by itself.
//!
//! A node subscribes to a document's channel while it holds the document.
//! Messages are handed to the document's task without waiting: if its
//! inbox is full, the message is dropped and the task told to catch up from
//! the store instead, so a slow document never stalls the others. After the
//! subscribing connection comes back from an outage, every document held is
//! told to catch up the same way.
//!
//! Access changes (a membership changed, a key was revoked) travel on one
//! node-wide channel, `{prefix}:access`, that every node subscribes to for
//! its whole life. They have no sequence numbers to show a gap, so
//! whenever one may have been lost (a publish failed or was dropped, the
//! subscription was down, a message did not decode) the nodes concerned
//! make every connection re-check instead ([`AccessChange::everyone`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ::redis::AsyncCommands;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Remote;
use super::message::{Body, Envelope};
use crate::auth::AccessChange;
use crate::docs::{Command, DocName};
use crate::metrics::Metrics;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// Prefix of every channel, so deployments (and tests) share a Redis
    /// without hearing each other.
    pub prefix: String,
}

/// Messages queued for publishing before new ones are dropped (and healed
/// by receivers from the store).
const PUBLISH_QUEUE: usize = 16 * 1024;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

enum Subscription {
    Add(String),
    Remove(String),
}

/// This node's handle on the bus.
pub struct Cluster {
    node: u64,
    prefix: String,
    publish: mpsc::Sender<(String, Bytes)>,
    control: mpsc::UnboundedSender<Subscription>,
    listeners: Arc<Listeners>,
    /// Set when an access change may not have reached the other nodes;
    /// the publisher then tells them to re-check everyone. Atomic: set
    /// from request handlers, cleared by the publishing task.
    access_lost: Arc<AtomicBool>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Where the subscribing task delivers what it hears, shared with the
/// handle that fills it in.
#[derive(Default)]
struct Listeners {
    /// Channel → the task of the document it belongs to. A std mutex:
    /// held for a map lookup only.
    routes: Mutex<HashMap<String, mpsc::Sender<Command>>>,
    /// Where access changes from other nodes are announced on this node.
    /// Set once, after the identity setup that owns it has started (it
    /// starts after the bus); until then no connection exists to tell.
    access: OnceLock<broadcast::Sender<AccessChange>>,
}

impl Listeners {
    fn announce(&self, change: AccessChange) {
        if let Some(announcer) = self.access.get() {
            // No receiver means no live connection to tell.
            let _receivers = announcer.send(change);
        }
    }
}

#[derive(Default)]
struct Health {
    /// Why a connection is down, per connection (`publish`, `subscribe`).
    down: Mutex<HashMap<&'static str, String>>,
}

impl Health {
    fn set(&self, connection: &'static str, state: Result<(), String>) {
        let mut down = self.down.lock().expect("health lock poisoned");
        match state {
            Ok(()) => {
                down.remove(connection);
            }
            Err(reason) => {
                down.insert(connection, reason);
            }
        }
    }
}

impl Cluster {
    /// Starts the bus. Never fails for an unreachable Redis: the node then
    /// serves its own clients, reports not ready, and connects when it can.
    pub fn start(
        config: ClusterConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Self>, ::redis::RedisError> {
        let client = ::redis::Client::open(config.redis_url.as_str())?;
        let (publish, outbox) = mpsc::channel(PUBLISH_QUEUE);
        let (control, subscriptions) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        health.set("publish", Err("connecting".into()));
        health.set("subscribe", Err("connecting".into()));
        let cluster = Arc::new(Self {
            node: rand_node_id(),
            prefix: config.prefix,
            publish,
            control,
            listeners: Arc::new(Listeners::default()),
            access_lost: Arc::new(AtomicBool::new(false)),
            health: health.clone(),
            metrics: metrics.clone(),
        });
        tracker.spawn(publisher(
            client.clone(),
            outbox,
            PublisherState {
                node: cluster.node,
                access_channel: cluster.access_channel(),
                access_lost: cluster.access_lost.clone(),
            },
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(subscriber(
            client,
            subscriptions,
            cluster.listeners.clone(),
            SubscriberState {
                node: cluster.node,
                access_channel: cluster.access_channel(),
            },
            health,
            metrics,
            shutdown,
        ));
        Ok(cluster)
    }

    /// Announces access changes heard from other nodes on `announcer`
    /// (this node's live connections listen there). The first
    /// registration stands; later ones are ignored.
    pub fn relay_access(&self, announcer: broadcast::Sender<AccessChange>) {
        if self.listeners.access.set(announcer).is_err() {
            tracing::warn!("access changes are already relayed; ignoring a second relay");
        }
    }

    /// Tells the other nodes that who may do what changed, so their live
    /// connections re-check. This node's own connections are told by the
    /// caller (see [`crate::state::AppState::announce_access`]).
    pub fn publish_access(&self, change: &AccessChange) {
        let message = Envelope {
            node: self.node,
            body: Body::Access {
                workspace: change.workspace.clone(),
                user: change.user.clone(),
            },
        }
        .encode();
        if self
            .publish
            .try_send((self.access_channel(), message))
            .is_err()
        {
            // Nothing shows the others a gap: make them re-check everyone
            // once the queue moves again.
            self.metrics.cluster_dropped.inc();
            self.access_lost.store(true, Ordering::Release);
        }
    }

    fn access_channel(&self) -> String {
        format!("{}:access", self.prefix)
    }

    /// This node's id in messages (random per process).
    pub fn node(&self) -> u64 {
        self.node
    }

    fn channel(&self, doc: &DocName) -> String {
        format!("{}:doc:{}", self.prefix, doc.as_str())
    }

    /// Routes the document's messages to `inbox` until [`Cluster::leave`].
    pub fn join(&self, doc: &DocName, inbox: mpsc::Sender<Command>) {
        let channel = self.channel(doc);
        self.listeners
            .routes
            .lock()
            .expect("routes lock poisoned")
            .insert(channel.clone(), inbox);
        let _stopped = self.control.send(Subscription::Add(channel));
    }

    /// Stops routing the document's messages here.
    pub fn leave(&self, doc: &DocName) {
        let channel = self.channel(doc);
        self.listeners
            .routes
            .lock()
            .expect("routes lock poisoned")
            .remove(&channel);
        let _stopped = self.control.send(Subscription::Remove(channel));
    }

    /// Announces committed log entries to the other nodes.
    pub fn publish_updates(&self, doc: &DocName, first_seq: u64, last_seq: u64, update: Bytes) {
        self.publish(
            doc,
            Body::Updates {
                first_seq,
                last_seq,
                update,
            },
        );
    }

    /// Announces a presence change of this node's peers.
    pub fn publish_presence(&self, doc: &DocName, update: Bytes) {
        self.publish(doc, Body::Presence(update));
    }

    fn publish(&self, doc: &DocName, body: Body) {
        let message = Envelope {
            node: self.node,
            body,
        }
        .encode();
        if self.publish.try_send((self.channel(doc), message)).is_err() {
            // Receivers notice the gap and read the store.
            self.metrics.cluster_dropped.inc();
        }
    }

    /// Whether both connections are up (for `/readyz`).
    pub fn check(&self) -> Result<(), String> {
        let down = self.health.down.lock().expect("health lock poisoned");
        if down.is_empty() {
            return Ok(());
        }
        let mut reasons: Vec<String> = down.iter().map(|(c, why)| format!("{c}: {why}")).collect();
        reasons.sort();
        Err(reasons.join("; "))
    }
}

fn rand_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

async fn backoff(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(RETRY_MAX);
    true
}

/// What the publishing task needs to make up for lost access changes.
struct PublisherState {
    node: u64,
    access_channel: String,
    access_lost: Arc<AtomicBool>,
}

impl PublisherState {
    /// If an access change may have been lost, tells every node to
    /// re-check everyone; on failure the flag stays set for the next try.
    async fn make_up_for_lost_access(
        &self,
        conn: &mut ::redis::aio::MultiplexedConnection,
    ) -> Result<(), ::redis::RedisError> {
        if !self.access_lost.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let everyone = AccessChange::everyone();
        let message = Envelope {
            node: self.node,
            body: Body::Access {
                workspace: everyone.workspace,
                user: everyone.user,
            },
        }
        .encode();
        let published = conn
            .publish::<_, _, ()>(&self.access_channel, message.as_ref())
            .await;
        if published.is_err() {
            self.access_lost.store(true, Ordering::Release);
        }
        published
    }
}

/// Publishes queued messages; a message that cannot be published is dropped
/// (receivers heal from the store, or re-check access for everyone).
async fn publisher(
    client: ::redis::Client,
    mut outbox: mpsc::Receiver<(String, Bytes)>,
    state: PublisherState,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut delay = RETRY_MIN;
    'connect: loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(error) => {
                health.set("publish", Err(error.to_string()));
                if !backoff(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        health.set("publish", Ok(()));
        delay = RETRY_MIN;
        loop {
            if let Err(error) = state.make_up_for_lost_access(&mut conn).await {
                tracing::warn!(%error, "publishing to Redis failed; reconnecting");
                health.set("publish", Err(error.to_string()));
                continue 'connect;
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = outbox.recv() => next,
            };
            let Some((channel, message)) = next else {
                return;
            };
            match conn.publish::<_, _, ()>(&channel, message.as_ref()).await {
                Ok(()) => {
                    metrics.cluster_published.inc();
                }
                Err(error) => {
                    metrics.cluster_dropped.inc();
                    // Whatever it was, it may have been an access change.
                    state.access_lost.store(true, Ordering::Release);
                    tracing::warn!(%error, "publishing to Redis failed; reconnecting");
                    health.set("publish", Err(error.to_string()));
                    continue 'connect;
                }
            }
        }
    }
}

/// What the subscribing task knows of this node.
struct SubscriberState {
    /// Messages from this node are not for it.
    node: u64,
    /// Subscribed for the task's whole life.
    access_channel: String,
}

/// Keeps the subscriptions, routes messages to document tasks and access
/// changes to this node's connections.
async fn subscriber(
    client: ::redis::Client,
    mut control: mpsc::UnboundedReceiver<Subscription>,
    listeners: Arc<Listeners>,
    state: SubscriberState,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut delay = RETRY_MIN;
    let mut first_connection = true;
    // Whether this node has listened since it started: access changes
    // published while it was not listening are lost to it. Cleared by any
    // failure, including failing to connect at start (connections are
    // served meanwhile); never set again, as every later subscription
    // follows a failure.
    let mut listened_throughout = true;
    // Documents a message could not be delivered to: told to catch up.
    let mut behind: HashSet<String> = HashSet::new();
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                health.set("subscribe", Err(error.to_string()));
                listened_throughout = false;
                // Subscription changes while down are picked up from the
                // routes table on reconnect.
                while control.try_recv().is_ok() {}
                if !backoff(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let documents: Vec<String> = listeners
            .routes
            .lock()
            .expect("routes lock poisoned")
            .keys()
            .cloned()
            .collect();
        let mut channels = documents.clone();
        channels.push(state.access_channel.clone());
        if let Err(error) = sink.subscribe(&channels).await {
            health.set("subscribe", Err(error.to_string()));
            listened_throughout = false;
            if !backoff(&mut delay, &shutdown).await {
                return;
            }
            continue;
        }
        health.set("subscribe", Ok(()));
        delay = RETRY_MIN;
        if !first_connection {
            // Whatever was published while we were away is lost to us.
            behind.extend(documents);
        }
        first_connection = false;
        if !listened_throughout {
            // No sequence numbers say which changes were missed.
            tracing::info!("Redis subscription back: every connection re-checks its access");
            listeners.announce(AccessChange::everyone());
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = stream.next() => {
                    let Some(message) = message else { break };
                    metrics.cluster_received.inc();
                    if message.get_channel_name() == state.access_channel {
                        relay_access(&message, &listeners, state.node, &metrics);
                    } else {
                        route(&message, &listeners.routes, state.node, &metrics, &mut behind);
                    }
                }
                change = control.recv() => {
                    let Some(change) = change else { return };
                    let result = match change {
                        Subscription::Add(channel) => sink.subscribe(&channel).await,
                        Subscription::Remove(channel) => sink.unsubscribe(&channel).await,
                    };
                    if let Err(error) = result {
                        health.set("subscribe", Err(error.to_string()));
                        break;
                    }
                }
                _ = tick.tick() => {}
            }
            tell_to_catch_up(&listeners.routes, &mut behind, &metrics);
        }
        tracing::warn!("Redis subscription lost; reconnecting");
        health.set("subscribe", Err("connection lost".into()));
        listened_throughout = false;
        if !backoff(&mut delay, &shutdown).await {
            return;
        }
    }
}

/// Announces an access change from another node to this node's
/// connections; one that does not decode makes all of them re-check.
fn relay_access(message: &::redis::Msg, listeners: &Listeners, node: u64, metrics: &Metrics) {
    let change = match Envelope::decode(Bytes::copy_from_slice(message.get_payload_bytes())) {
        Ok(Envelope { node: from, .. }) if from == node => return,
        Ok(Envelope {
            body: Body::Access { workspace, user },
            ..
        }) => AccessChange { workspace, user },
        Ok(_) => {
            metrics.cluster_dropped.inc();
            tracing::warn!("a document message on the access channel; re-checking everyone");
            AccessChange::everyone()
        }
        Err(error) => {
            metrics.cluster_dropped.inc();
            tracing::warn!(%error, "an undecodable access change; re-checking everyone");
            AccessChange::everyone()
        }
    };
    listeners.announce(change);
}

fn route(
    message: &::redis::Msg,
    routes: &Mutex<HashMap<String, mpsc::Sender<Command>>>,
    node: u64,
    metrics: &Metrics,
    behind: &mut HashSet<String>,
) {
    let channel = message.get_channel_name();
    let envelope = match Envelope::decode(Bytes::copy_from_slice(message.get_payload_bytes())) {
        Ok(envelope) => envelope,
        Err(error) => {
            metrics.cluster_dropped.inc();
            tracing::warn!(%error, channel, "dropping an undecodable cluster message");
            behind.insert(channel.to_owned());
            return;
        }
    };
    if envelope.node == node {
        return;
    }
    let Some(inbox) = routes
        .lock()
        .expect("routes lock poisoned")
        .get(channel)
        .cloned()
    else {
        return;
    };
    let remote = match envelope.body {
        Body::Updates {
            first_seq,
            last_seq,
            update,
        } => Remote::Updates {
            first_seq,
            last_seq,
            update,
        },
        Body::Presence(update) => Remote::Presence(update),
        // Access changes have a channel of their own; one here is misrouted.
        Body::Access { .. } => {
            metrics.cluster_dropped.inc();
            return;
        }
    };
    match inbox.try_send(Command::Remote(remote)) {
        Ok(()) => {}
        // Presence is renewed every 15 s; updates the task will read from
        // the store once told.
        Err(TrySendError::Full(_)) => {
            metrics.cluster_dropped.inc();
            behind.insert(channel.to_owned());
        }
        Err(TrySendError::Closed(_)) => {}
    }
}

fn tell_to_catch_up(
    routes: &Mutex<HashMap<String, mpsc::Sender<Command>>>,
    behind: &mut HashSet<String>,
    metrics: &Metrics,
) {
    if behind.is_empty() {
        return;
    }
    let routes = routes.lock().expect("routes lock poisoned");
    behind.retain(|channel| match routes.get(channel) {
        Some(inbox) => match inbox.try_send(Command::Remote(Remote::Resync)) {
            Ok(()) => {
                metrics.cluster_resyncs.inc();
                false
            }
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Closed(_)) => false,
        },
        None => false,
    });
}
