//! Configuration: flags, environment variables and an optional TOML file.
//!
//! Every setting can come from three places; the first one that sets it
//! wins: a command-line flag, its environment variable, the TOML file named
//! by `--config` (keys are the flag names without `--`). Unset settings take
//! the defaults shown in `--help`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use crdt_core::Limits;
use serde::{Deserialize, Serialize};

use crate::auth::config::{IdentityConfig, IdentityFile};
use crate::auth::limits::{ConnectionLimits, RequestLimits};
use crate::cluster::ClusterConfig;
use crate::docs::{AutoVersions, DocConfig};
use crate::history::Retention;
use crate::store::PostgresConfig;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "sync-server",
    version,
    about = "A Yjs-compatible collaboration server: y-websocket on /ws/{document}, durable storage, presence and metrics."
)]
pub struct Cli {
    /// A TOML file with any of the settings below (keys are the flag names
    /// without `--`). Flags and environment variables override it.
    #[arg(long, env = "SYNC_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Settings.
    #[command(flatten)]
    pub settings: Settings,

    /// What to run; the server when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server (the default).
    Serve,
    /// Prints the resolved configuration as TOML and exits.
    Config,
    /// Works on the audit trail (with the sled store, stop the server
    /// first: the store is opened directly).
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `sync-server audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks every hash chain and signed checkpoint; names the first bad
    /// entry of each chain and exits 1 if any is bad.
    Verify {
        /// Only this workspace's chain.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Writes matching entries as JSON Lines or CSV, for a SIEM.
    Export {
        /// `jsonl` or `csv`.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Only this workspace.
        #[arg(long)]
        workspace: Option<String>,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this document.
        #[arg(long)]
        document: Option<String>,
        /// Only entries at or after this time (ms since the epoch).
        #[arg(long)]
        from: Option<u64>,
        /// Only entries before this time (ms since the epoch).
        #[arg(long)]
        to: Option<u64>,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Every setting, unset unless given. `None` means "use the next source".
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on. [default: 127.0.0.1:8787]
    #[arg(long, env = "SYNC_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,

    /// Where documents are stored: `sled` (embedded, in data-dir, one node)
    /// or `postgres` (shared by any number of nodes; needs database-url).
    /// [default: sled]
    #[arg(long, env = "SYNC_STORE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreKind>,

    /// Directory of the embedded store. [default: ./data]
    #[arg(long, env = "SYNC_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,

    /// PostgreSQL URL, `postgres://user:password@host:5432/database`;
    /// required with `--store postgres`. [default: none]
    #[arg(long, env = "SYNC_DATABASE_URL", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,

    /// PostgreSQL schema holding the tables, created if missing: a plain
    /// lower-case identifier. [default: public]
    #[arg(long, env = "SYNC_DATABASE_SCHEMA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_schema: Option<String>,

    /// PostgreSQL connections per node: the log writer, document loads,
    /// compactions and history writes share them. Nodes together must stay
    /// under the database's `max_connections`. [default: 16]
    #[arg(long, env = "SYNC_DATABASE_POOL_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_pool_size: Option<u32>,

    /// Largest WebSocket frame accepted, in bytes; a larger one closes the
    /// connection with code 1009. [default: 16777216]
    #[arg(long, env = "SYNC_MAX_FRAME_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,

    /// Largest single Yjs update accepted (WebSocket or HTTP), in bytes.
    /// [default: 16777216]
    #[arg(long, env = "SYNC_MAX_UPDATE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_update_bytes: Option<usize>,

    /// Largest awareness state of one client, in bytes. [default: 65536]
    #[arg(long, env = "SYNC_MAX_AWARENESS_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_awareness_bytes: Option<usize>,

    /// Most WebSocket connections at once; more are refused with 503.
    /// [default: 20000]
    #[arg(long, env = "SYNC_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,

    /// Frames queued for one connection before it counts as a slow consumer
    /// and is closed (code 1013) so it resyncs. [default: 512]
    #[arg(long, env = "SYNC_OUTBOUND_QUEUE_FRAMES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_queue_frames: Option<usize>,

    /// Bytes of broadcasts queued for one connection before it counts as a
    /// slow consumer. [default: 8388608]
    #[arg(long, env = "SYNC_OUTBOUND_QUEUE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_queue_bytes: Option<usize>,

    /// Longest a document waits to batch updates before committing and
    /// fanning them out, in milliseconds. [default: 50]
    #[arg(long, env = "SYNC_COALESCE_MAX_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesce_max_ms: Option<u64>,

    /// Frames per second one document aims to send at most; the coalescing
    /// window is peers / this, up to coalesce-max-ms. [default: 25000]
    #[arg(long, env = "SYNC_FANOUT_FRAMES_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout_frames_per_sec: Option<u32>,

    /// Sync the store to disk before anyone sees an update. Off, the
    /// embedded store keeps recent updates in process memory for up to half a
    /// second, and a crash loses them even after clients received them.
    /// [default: true]
    #[arg(long, env = "SYNC_FSYNC", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<bool>,

    /// Extra time the store waits to group more updates into one commit,
    /// in milliseconds. [default: 0]
    #[arg(long, env = "SYNC_COMMIT_DELAY_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_delay_ms: Option<u64>,

    /// Page cache of the embedded store, in MiB. [default: 64]
    #[arg(long, env = "SYNC_CACHE_MIB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_mib: Option<u64>,

    /// Seconds a document with nobody connected stays in memory.
    /// [default: 30]
    #[arg(long, env = "SYNC_IDLE_UNLOAD_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_unload_secs: Option<u64>,

    /// Seconds a presence (awareness) state lives without renewal.
    /// [default: 30]
    #[arg(long, env = "SYNC_PRESENCE_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_timeout_secs: Option<u64>,

    /// Seconds between pings; a connection silent for twice this is closed.
    /// [default: 30]
    #[arg(long, env = "SYNC_PING_INTERVAL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_interval_secs: Option<u64>,

    /// Seconds without any frame to a client before the server sends an
    /// empty awareness message (clients drop connections silent for 30 s).
    /// [default: 15]
    #[arg(long, env = "SYNC_KEEPALIVE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_secs: Option<u64>,

    /// Log entries since the last snapshot that start a background
    /// compaction. [default: 1000]
    #[arg(long, env = "SYNC_COMPACT_AFTER_UPDATES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact_after_updates: Option<usize>,

    /// Log bytes since the last snapshot that start a background
    /// compaction. [default: 4194304]
    #[arg(long, env = "SYNC_COMPACT_AFTER_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact_after_bytes: Option<usize>,

    /// Redis for cross-node fan-out, e.g. `redis://127.0.0.1:6379`. Needs
    /// `--store postgres`: nodes share the log there and Redis only carries
    /// the news. Unset: this node serves alone. [default: unset]
    #[arg(long, env = "SYNC_REDIS_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,

    /// Prefix of this deployment's Redis channels. [default: sync]
    #[arg(long, env = "SYNC_REDIS_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_prefix: Option<String>,

    /// Benchmark baseline only: forward frames between peers with no CRDT
    /// work and nothing stored. Never use it to serve users. [default: false]
    #[arg(long, env = "SYNC_RELAY", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<bool>,

    /// Seconds without edits after which a document's state is saved as an
    /// automatic version. [default: 300]
    #[arg(long, env = "SYNC_VERSION_IDLE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_idle_secs: Option<u64>,

    /// Edits after which an automatic version is saved even while editing
    /// goes on. [default: 1000]
    #[arg(long, env = "SYNC_VERSION_EVERY_EDITS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_every_edits: Option<u64>,

    /// History kept per workspace, as `workspace=policy` with policy `all`,
    /// `named` (named versions only) or days like `90d`; `*=` sets the
    /// default. Repeat the flag or separate entries with commas.
    /// [default: *=all]
    #[arg(long, env = "SYNC_HISTORY_RETENTION", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_retention: Option<Vec<String>>,

    /// Seconds between retention sweeps. [default: 3600]
    #[arg(long, env = "SYNC_RETENTION_SWEEP_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_sweep_secs: Option<u64>,

    /// The audit trail's signing key (Ed25519), created on first start.
    /// [default: <data-dir>/audit.key]
    #[arg(long, env = "SYNC_AUDIT_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_key: Option<PathBuf>,

    /// A directory of operator Cedar policies (`*.cedar`), added to the
    /// built-in role and governance policies. [default: none]
    #[arg(long, env = "SYNC_POLICY_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_dir: Option<PathBuf>,

    /// The IANA time zone business hours are in. [default: UTC]
    #[arg(long, env = "SYNC_POLICY_TIME_ZONE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_time_zone: Option<String>,

    /// Workspace labels policies look at, as `workspace=label` (for
    /// example `acme=confidential`). Repeat the flag or separate entries
    /// with commas. [default: none]
    #[arg(long, env = "SYNC_WORKSPACE_LABELS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_labels: Option<Vec<String>>,

    /// A TOML file with identity providers (OIDC, LDAP), group-to-role
    /// rules and the break-glass admin; without one (and without
    /// token-secret) the server is in anonymous mode, for local use only.
    /// [default: none]
    #[arg(long, env = "SYNC_IDENTITY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,

    /// Secret (32+ bytes) signing document tokens and session cookies;
    /// overrides token-secret in the identity file. [default: none]
    #[arg(long, env = "SYNC_TOKEN_SECRET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,

    /// Longest lifetime of a document token, in seconds. [default: 3600]
    #[arg(long, env = "SYNC_TOKEN_MAX_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_max_ttl_secs: Option<u64>,

    /// Sync updates one connection may send a second; over it the
    /// connection is closed with 1008 naming the limit. 0: no limit.
    /// [default: 1000]
    #[arg(long, env = "SYNC_MAX_UPDATES_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_updates_per_sec: Option<u32>,

    /// Awareness updates one connection may send a second; 0: no limit.
    /// [default: 200]
    #[arg(long, env = "SYNC_MAX_AWARENESS_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_awareness_per_sec: Option<u32>,

    /// Seconds' worth of messages a connection may send at once above
    /// those rates (an editing-trace replay or an offline client catching
    /// up sends thousands at once). [default: 10]
    #[arg(long, env = "SYNC_RATE_BURST_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst_secs: Option<u32>,

    /// HTTP requests a minute from one client IP (requests without an API
    /// key); over it, 429 with Retry-After. Shared through Redis when
    /// redis-url is set. 0: no limit. [default: 0]
    #[arg(long, env = "SYNC_HTTP_REQUESTS_PER_MIN_PER_IP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_requests_per_min_per_ip: Option<u32>,

    /// HTTP requests a minute with one API key; 0: no limit.
    /// [default: 6000]
    #[arg(long, env = "SYNC_HTTP_REQUESTS_PER_MIN_PER_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_requests_per_min_per_key: Option<u32>,

    /// PEM certificate chain to serve HTTPS/WSS with (needs tls-key).
    /// [default: none, plain HTTP]
    #[arg(long, env = "SYNC_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of tls-cert. [default: none]
    #[arg(long, env = "SYNC_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// Seconds shutdown waits for documents to flush before giving up.
    /// [default: 10]
    #[arg(long, env = "SYNC_SHUTDOWN_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_secs: Option<u64>,
}

impl Settings {
    /// `self`, with unset values taken from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        let mut base = serde_json::to_value(lower).expect("settings serialize");
        let top = serde_json::to_value(self).expect("settings serialize");
        if let (Some(base), Some(top)) = (base.as_object_mut(), top.as_object()) {
            for (key, value) in top {
                base.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(base).expect("merged settings deserialize")
    }

    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Which store holds documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded sled in the data directory: one node.
    Sled,
    /// PostgreSQL: shared by several nodes.
    Postgres,
}

/// A database URL whose password never shows when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as given, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0;
        // postgres://user:password@host/... ; a password can also be a
        // `password=` parameter, so hide the whole query then.
        let authority = url.find("://").map_or(0, |i| i + 3);
        let host_at = url[authority..]
            .find(['/', '?'])
            .map_or(url.len(), |i| authority + i);
        let mut shown = match url[authority..host_at].rfind('@') {
            Some(at) => {
                let userinfo = &url[authority..authority + at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!(
                    "{}{user}{hidden}{}",
                    &url[..authority],
                    &url[authority + at..]
                )
            }
            None => url.clone(),
        };
        if let Some(query) = shown.find('?')
            && shown[query..].contains("password")
        {
            shown.truncate(query);
            shown.push_str("?***");
        }
        write!(f, "{shown:?}")
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid settings TOML.
    #[error("invalid settings in {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        reason: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Which store holds documents.
    pub store: StoreKind,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (required with [`StoreKind::Postgres`]).
    pub database_url: Option<DatabaseUrl>,
    /// PostgreSQL schema of the tables.
    pub database_schema: String,
    /// PostgreSQL connections per node.
    pub database_pool_size: u32,
    /// How documents behave.
    pub docs: DocConfig,
    /// Most WebSocket connections at once.
    pub max_connections: usize,
    /// Frames queued per connection before it is a slow consumer.
    pub outbound_queue_frames: usize,
    /// Broadcast bytes queued per connection before it is a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Sync the store before acknowledging.
    pub fsync: bool,
    /// Extra group-commit wait.
    pub commit_delay: Duration,
    /// Store page cache in bytes.
    pub cache_bytes: u64,
    /// Ping interval; silence for twice this closes a connection.
    pub ping_interval: Duration,
    /// Idle time before the server sends a keepalive frame.
    pub keepalive_interval: Duration,
    /// How long shutdown waits for documents to flush.
    pub shutdown_timeout: Duration,
    /// Cross-node fan-out, when other nodes share the store.
    pub cluster: Option<ClusterConfig>,
    /// History kept per workspace.
    pub retention: Retention,
    /// How often retention is applied.
    pub retention_sweep: Duration,
    /// Audit trail and policies.
    pub governance: GovernanceConfig,
    /// Sign-in, tokens and roles.
    pub identity: IdentityConfig,
    /// Per-connection message rates.
    pub connection_limits: ConnectionLimits,
    /// HTTP request rates.
    pub request_limits: RequestLimits,
    /// Certificate and key files when the server terminates TLS.
    pub tls: Option<TlsFiles>,
}

/// Where the TLS certificate chain and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Audit trail and policy settings.
#[derive(Debug, Clone)]
pub struct GovernanceConfig {
    /// The audit signing key file.
    pub audit_key: PathBuf,
    /// Where policies come from.
    pub policy: governance::policy::PolicyConfig,
    /// Labels per workspace.
    pub labels: BTreeMap<String, BTreeSet<String>>,
}

impl GovernanceConfig {
    fn parse_labels(entries: &[String]) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in entries {
            let (workspace, label) = entry
                .split_once('=')
                .map(|(w, l)| (w.trim(), l.trim()))
                .filter(|(w, l)| !w.is_empty() && !l.is_empty())
                .ok_or_else(|| format!("workspace label {entry:?} is not workspace=label"))?;
            labels
                .entry(workspace.to_owned())
                .or_default()
                .insert(label.to_owned());
        }
        Ok(labels)
    }
}

impl Config {
    /// Resolves flags and environment (in `cli`) over the optional file
    /// over the defaults.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        Config::resolve(cli.settings.clone().over(file))
    }

    /// Applies defaults to whatever `settings` leaves unset.
    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let secs = Duration::from_secs;
        let millis = Duration::from_millis;
        let limits = Limits {
            max_frame_bytes: s.max_frame_bytes.unwrap_or(16 << 20),
            max_update_bytes: s.max_update_bytes.unwrap_or(16 << 20),
            max_awareness_state_bytes: s.max_awareness_bytes.unwrap_or(64 << 10),
            ..Limits::default()
        };
        let docs = DocConfig {
            limits,
            coalesce_max: millis(s.coalesce_max_ms.unwrap_or(50)),
            fanout_frames_per_sec: s.fanout_frames_per_sec.unwrap_or(25_000),
            idle_unload: secs(s.idle_unload_secs.unwrap_or(30)),
            presence_timeout: secs(s.presence_timeout_secs.unwrap_or(30)),
            housekeeping_interval: secs(1),
            compact_after_updates: s.compact_after_updates.unwrap_or(1000),
            compact_after_bytes: s.compact_after_bytes.unwrap_or(4 << 20),
            relay: s.relay.unwrap_or(false),
            versions: AutoVersions {
                idle: secs(s.version_idle_secs.unwrap_or(300)),
                every_edits: s.version_every_edits.unwrap_or(1000),
            },
        };
        let retention = Retention::parse(&s.history_retention.unwrap_or_default())
            .map_err(ConfigError::Invalid)?;
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let governance = GovernanceConfig {
            audit_key: s.audit_key.unwrap_or_else(|| data_dir.join("audit.key")),
            policy: governance::policy::PolicyConfig {
                dir: s.policy_dir,
                time_zone: s.policy_time_zone.unwrap_or_else(|| "UTC".to_owned()),
                ..Default::default()
            },
            labels: GovernanceConfig::parse_labels(&s.workspace_labels.unwrap_or_default())
                .map_err(ConfigError::Invalid)?,
        };
        let identity_file = s
            .identity_file
            .as_deref()
            .map(IdentityFile::read)
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let identity = IdentityConfig::resolve(identity_file, s.token_secret, s.token_max_ttl_secs)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let tls = match (s.tls_cert, s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls-cert and tls-key go together: give both or neither".into(),
                ));
            }
        };
        let config = Config {
            tls,
            identity,
            connection_limits: ConnectionLimits {
                updates_per_sec: s.max_updates_per_sec.unwrap_or(1000),
                awareness_per_sec: s.max_awareness_per_sec.unwrap_or(200),
                burst_secs: s.rate_burst_secs.unwrap_or(10),
            },
            request_limits: RequestLimits {
                per_ip_per_min: s.http_requests_per_min_per_ip.unwrap_or(0),
                per_key_per_min: s.http_requests_per_min_per_key.unwrap_or(6000),
            },
            bind: s
                .bind
                .unwrap_or_else(|| "127.0.0.1:8787".parse().expect("valid address")),
            store: s.store.unwrap_or(StoreKind::Sled),
            data_dir,
            database_url: s.database_url.map(DatabaseUrl),
            database_schema: s.database_schema.unwrap_or_else(|| "public".to_owned()),
            database_pool_size: s.database_pool_size.unwrap_or(16),
            docs,
            max_connections: s.max_connections.unwrap_or(20_000),
            outbound_queue_frames: s.outbound_queue_frames.unwrap_or(512),
            outbound_queue_bytes: s.outbound_queue_bytes.unwrap_or(8 << 20),
            fsync: s.fsync.unwrap_or(true),
            commit_delay: millis(s.commit_delay_ms.unwrap_or(0)),
            cache_bytes: s.cache_mib.unwrap_or(64) << 20,
            ping_interval: secs(s.ping_interval_secs.unwrap_or(30)),
            keepalive_interval: secs(s.keepalive_secs.unwrap_or(15)),
            shutdown_timeout: secs(s.shutdown_timeout_secs.unwrap_or(10)),
            retention,
            retention_sweep: secs(s.retention_sweep_secs.unwrap_or(3600)),
            governance,
            cluster: s.redis_url.map(|redis_url| ClusterConfig {
                redis_url,
                prefix: s.redis_prefix.unwrap_or_else(|| "sync".to_owned()),
            }),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.outbound_queue_frames == 0 {
            return invalid("outbound-queue-frames must be at least 1");
        }
        if self.max_connections == 0 || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid("max-connections must be between 1 and 2^61");
        }
        if self.docs.limits.max_update_bytes > self.docs.limits.max_frame_bytes {
            return invalid("max-update-bytes cannot exceed max-frame-bytes");
        }
        if self.cluster.is_some() && self.store != StoreKind::Postgres {
            return invalid(
                "--redis-url needs --store postgres: nodes share the log there and Redis only carries the news",
            );
        }
        if self.docs.versions.idle.is_zero() || self.docs.versions.every_edits == 0 {
            return invalid("version-idle-secs and version-every-edits must be at least 1");
        }
        if self.retention_sweep.is_zero() {
            return invalid("retention-sweep-secs must be at least 1");
        }
        if self.ping_interval.is_zero() || self.keepalive_interval.is_zero() {
            return invalid("ping-interval-secs and keepalive-secs must be at least 1");
        }
        if self.store == StoreKind::Postgres && self.database_url.is_none() {
            return invalid("store postgres needs database-url (or SYNC_DATABASE_URL)");
        }
        if self.database_pool_size < 2 {
            return invalid("database-pool-size must be at least 2: the log writer keeps one");
        }
        if !PostgresConfig::is_valid_schema(&self.database_schema) {
            return invalid(
                "database-schema must be 1-63 characters of a-z, 0-9 and _, not starting with a digit",
            );
        }
        Ok(())
    }

    /// Defaults with a different data directory and bind address (tests).
    pub fn for_test(data_dir: &Path) -> Config {
        let settings = Settings {
            data_dir: Some(data_dir.to_owned()),
            bind: Some("127.0.0.1:0".parse().expect("valid address")),
            ..Settings::default()
        };
        Config::resolve(settings).expect("default settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: Settings =
            toml::from_str("bind = \"0.0.0.0:9000\"\nidle-unload-secs = 5\n").unwrap();
        let flags = Settings {
            idle_unload_secs: Some(7),
            ..Settings::default()
        };
        let config = Config::resolve(flags.over(file)).unwrap();
        assert_eq!(config.bind, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.docs.idle_unload, Duration::from_secs(7));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let err = toml::from_str::<Settings>("bnid = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bnid"), "{err}");
    }

    #[test]
    fn postgres_needs_a_url_and_a_plain_schema() {
        let postgres = |url: Option<&str>, schema: Option<&str>| Settings {
            store: Some(StoreKind::Postgres),
            database_url: url.map(str::to_owned),
            database_schema: schema.map(str::to_owned),
            ..Settings::default()
        };
        let err = Config::resolve(postgres(None, None)).unwrap_err();
        assert!(err.to_string().contains("database-url"), "{err}");
        let err = Config::resolve(postgres(Some("postgres://h/db"), Some("Bad-Name"))).unwrap_err();
        assert!(err.to_string().contains("database-schema"), "{err}");
        let config = Config::resolve(postgres(Some("postgres://h/db"), None)).unwrap();
        assert_eq!(config.database_schema, "public");
        let file: Settings =
            toml::from_str("store = \"postgres\"\ndatabase-url = \"postgres://h/db\"\n").unwrap();
        assert_eq!(Config::resolve(file).unwrap().store, StoreKind::Postgres);
        assert_eq!(
            Config::resolve(Settings::default()).unwrap().store,
            StoreKind::Sled
        );
    }

    #[test]
    fn printing_the_config_hides_the_database_password() {
        for (url, shown) in [
            (
                "postgres://app:hunter2@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            (
                "postgres://db/x?user=app&password=hunter2",
                "postgres://db/x?***",
            ),
            ("postgres://a:b@c@db/x", "postgres://a:***@db/x"),
        ] {
            let printed = format!("{:?}", DatabaseUrl(url.to_owned()));
            assert_eq!(printed, format!("{shown:?}"));
        }
    }

    #[test]
    fn nonsense_is_refused() {
        let settings = Settings {
            max_update_bytes: Some(10),
            max_frame_bytes: Some(5),
            ..Settings::default()
        };
        assert!(Config::resolve(settings).is_err());
    }
}
