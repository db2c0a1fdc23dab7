//! The bus on Redis pub/sub: one publishing connection and one subscribing
//! connection per node, each reconnecting by itself.
//!
//! A node subscribes to a document's channel while it holds the document.
//! Messages are handed to the document's task without waiting: if its
//! inbox is full, the message is dropped and the task told to catch up from
//! the store instead, so a slow document never stalls the others. After the
//! subscribing connection comes back from an outage, every document held is
//! told to catch up the same way.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::AsyncCommands;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Remote;
use super::message::{Body, Envelope};
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
    /// Channel → the task of the document it belongs to.
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<Command>>>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
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
            routes: Arc::new(Mutex::new(HashMap::new())),
            health: health.clone(),
            metrics: metrics.clone(),
        });
        tracker.spawn(publisher(
            client.clone(),
            outbox,
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(subscriber(
            client,
            subscriptions,
            cluster.routes.clone(),
            cluster.node,
            health,
            metrics,
            shutdown,
        ));
        Ok(cluster)
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
        self.routes
            .lock()
            .expect("routes lock poisoned")
            .insert(channel.clone(), inbox);
        let _stopped = self.control.send(Subscription::Add(channel));
    }

    /// Stops routing the document's messages here.
    pub fn leave(&self, doc: &DocName) {
        let channel = self.channel(doc);
        self.routes
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

/// Publishes queued messages; a message that cannot be published is dropped
/// (receivers heal from the store).
async fn publisher(
    client: ::redis::Client,
    mut outbox: mpsc::Receiver<(String, Bytes)>,
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
                    tracing::warn!(%error, "publishing to Redis failed; reconnecting");
                    health.set("publish", Err(error.to_string()));
                    continue 'connect;
                }
            }
        }
    }
}

/// Keeps the subscriptions and routes messages to document tasks.
async fn subscriber(
    client: ::redis::Client,
    mut control: mpsc::UnboundedReceiver<Subscription>,
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<Command>>>>,
    node: u64,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut delay = RETRY_MIN;
    let mut first_connection = true;
    // Documents a message could not be delivered to: told to catch up.
    let mut behind: HashSet<String> = HashSet::new();
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                health.set("subscribe", Err(error.to_string()));
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
        let channels: Vec<String> = routes
            .lock()
            .expect("routes lock poisoned")
            .keys()
            .cloned()
            .collect();
        if !channels.is_empty()
            && let Err(error) = sink.subscribe(&channels).await
        {
            health.set("subscribe", Err(error.to_string()));
            if !backoff(&mut delay, &shutdown).await {
                return;
            }
            continue;
        }
        health.set("subscribe", Ok(()));
        delay = RETRY_MIN;
        if !first_connection {
            // Whatever was published while we were away is lost to us.
            behind.extend(channels);
        }
        first_connection = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = stream.next() => {
                    let Some(message) = message else { break };
                    metrics.cluster_received.inc();
                    route(&message, &routes, node, &metrics, &mut behind);
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
            tell_to_catch_up(&routes, &mut behind, &metrics);
        }
        tracing::warn!("Redis subscription lost; reconnecting");
        health.set("subscribe", Err("connection lost".into()));
        if !backoff(&mut delay, &shutdown).await {
            return;
        }
    }
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
