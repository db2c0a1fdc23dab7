//! Prometheus metrics, served on `/metrics`.

use std::fmt::Write as _;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set for disconnect reasons.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the connection ended.
    pub reason: &'static str,
}

/// Every metric the server exports. Cheap to update from any task: each is
/// an atomic.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// Documents held in memory.
    pub documents_loaded: Gauge,
    /// Frames received from peers.
    pub frames_in: Counter,
    /// Bytes received from peers in frames.
    pub bytes_in: Counter,
    /// Document updates accepted (from WebSocket and HTTP).
    pub updates_in: Counter,
    /// Bytes of accepted updates.
    pub update_bytes_in: Counter,
    /// Frames queued to peers.
    pub frames_out: Counter,
    /// Bytes queued to peers.
    pub bytes_out: Counter,
    /// Updates delivered to peers, counting each update inside a coalesced
    /// frame once per recipient.
    pub updates_delivered: Counter,
    /// Writes refused because the peer may only read.
    pub writes_refused: Counter,
    /// Time from accepting an update to queueing it to every peer: the
    /// coalescing window plus the durable commit.
    pub fanout_latency: Histogram,
    /// Time a durable commit took.
    pub commit_latency: Histogram,
    /// Disconnects by reason.
    pub disconnects: Family<ReasonLabel, Counter>,
    /// Store operations that failed.
    pub store_errors: Counter,
    /// Log compactions completed.
    pub compactions: Counter,
    /// Versions stored (automatic, named and restores).
    pub versions_saved: Counter,
    /// Documents rebuilt from storage after an update failed part-way.
    pub document_reloads: Counter,
    /// Updates held for missing dependencies that could not integrate once
    /// those arrived, and were dropped.
    pub held_updates_dropped: Counter,
    /// Cluster messages published to other nodes.
    pub cluster_published: Counter,
    /// Cluster messages received from other nodes.
    pub cluster_received: Counter,
    /// Cluster messages dropped (queue full, undecodable, Redis down); the
    /// documents concerned catch up from the store.
    pub cluster_dropped: Counter,
    /// Times a document was told to catch up from the store.
    pub cluster_resyncs: Counter,
    /// Catch-ups from the store that found entries this node lacked.
    pub cluster_healed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sync");
        let latency = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let m = Self {
            connections: Gauge::default(),
            connections_total: Counter::default(),
            documents_loaded: Gauge::default(),
            frames_in: Counter::default(),
            bytes_in: Counter::default(),
            updates_in: Counter::default(),
            update_bytes_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_out: Counter::default(),
            updates_delivered: Counter::default(),
            writes_refused: Counter::default(),
            fanout_latency: latency(),
            commit_latency: latency(),
            disconnects: Family::default(),
            store_errors: Counter::default(),
            compactions: Counter::default(),
            versions_saved: Counter::default(),
            document_reloads: Counter::default(),
            held_updates_dropped: Counter::default(),
            cluster_published: Counter::default(),
            cluster_received: Counter::default(),
            cluster_dropped: Counter::default(),
            cluster_resyncs: Counter::default(),
            cluster_healed: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "documents_loaded",
            "Documents held in memory",
            m.documents_loaded.clone(),
        );
        registry.register(
            "frames_received",
            "Frames received from peers",
            m.frames_in.clone(),
        );
        registry.register(
            "bytes_received",
            "Bytes received from peers",
            m.bytes_in.clone(),
        );
        registry.register(
            "updates_received",
            "Document updates accepted",
            m.updates_in.clone(),
        );
        registry.register(
            "update_bytes_received",
            "Bytes of accepted updates",
            m.update_bytes_in.clone(),
        );
        registry.register(
            "frames_sent",
            "Frames queued to peers",
            m.frames_out.clone(),
        );
        registry.register("bytes_sent", "Bytes queued to peers", m.bytes_out.clone());
        registry.register(
            "updates_delivered",
            "Updates delivered to peers, each update in a coalesced frame counted per recipient",
            m.updates_delivered.clone(),
        );
        registry.register(
            "writes_refused",
            "Writes refused for read-only peers",
            m.writes_refused.clone(),
        );
        registry.register(
            "fanout_latency_seconds",
            "From accepting an update to queueing it to every peer (coalescing window and durable commit)",
            m.fanout_latency.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Durable commit time",
            m.commit_latency.clone(),
        );
        registry.register(
            "disconnects",
            "Connections closed, by reason",
            m.disconnects.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations",
            m.store_errors.clone(),
        );
        registry.register(
            "compactions",
            "Log compactions completed",
            m.compactions.clone(),
        );
        registry.register(
            "versions_saved",
            "Document versions stored",
            m.versions_saved.clone(),
        );
        registry.register(
            "document_reloads",
            "Documents rebuilt from storage after a failed update",
            m.document_reloads.clone(),
        );
        registry.register(
            "held_updates_dropped",
            "Updates held for missing dependencies that could not integrate and were dropped",
            m.held_updates_dropped.clone(),
        );
        registry.register(
            "cluster_published",
            "Cluster messages published",
            m.cluster_published.clone(),
        );
        registry.register(
            "cluster_received",
            "Cluster messages received",
            m.cluster_received.clone(),
        );
        registry.register(
            "cluster_dropped",
            "Cluster messages dropped; the documents concerned catch up from the store",
            m.cluster_dropped.clone(),
        );
        registry.register(
            "cluster_resyncs",
            "Documents told to catch up from the store",
            m.cluster_resyncs.clone(),
        );
        registry.register(
            "cluster_healed",
            "Catch-ups from the store that found entries this node lacked",
            m.cluster_healed.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a disconnect.
    pub fn disconnect(&self, reason: &'static str) {
        self.disconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The OpenMetrics text exposition, with process CPU and memory added.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(process) = ProcessStats::read() {
            let _ = write!(
                out,
                "# HELP process_cpu_seconds User and system CPU time spent.\n\
                 # TYPE process_cpu_seconds counter\n\
                 # UNIT process_cpu_seconds seconds\n\
                 process_cpu_seconds_total {}\n\
                 # HELP process_resident_memory_bytes Resident memory size.\n\
                 # TYPE process_resident_memory_bytes gauge\n\
                 # UNIT process_resident_memory_bytes bytes\n\
                 process_resident_memory_bytes {}\n",
                process.cpu_seconds, process.rss_bytes
            );
        }
        out.push_str("# EOF\n");
        out
    }
}

/// CPU and memory of this process, from `/proc` (Linux only).
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it does not exist.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is parenthesised and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = 100.0; // USER_HZ on every Linux this runs on
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let rss_pages: u64 = fields.get(21)?.parse().ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) / ticks,
            rss_bytes: rss_pages * 4096,
        })
    }
}
