//! What every integration test needs: a real store of either kind (sled in
//! a temporary directory, or PostgreSQL in a schema of its own), an audit
//! log on it with a hand-set clock, and a way to tamper with what is
//! stored, the way someone with database access would.

#![allow(dead_code, missing_docs)]

pub mod pg;

use std::sync::Arc;

use governance::audit::{
    Action, Actor, AuditConfig, AuditEvent, AuditKeys, AuditLog, Digest, VerifyReport, VerifyScope,
    canonical_event, entry_hash,
};
use governance::clock::{Clock, ManualClock};
use governance::lineage::LineageStore;
use governance::store::{AuditStore, SledConfig, SledStore};
use sqlx::Row;

/// 2024-05-06 (a Monday) 10:00:00 UTC.
pub const MONDAY_10_UTC: u64 = 1_714_989_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

enum Raw {
    Sled {
        tree: sled::Tree,
        _dir: tempfile::TempDir,
    },
    Postgres(pg::TestSchema),
}

/// A store, an audit log on it, and raw access for tampering.
pub struct Harness {
    pub backend: Backend,
    pub store: Arc<dyn AuditStore>,
    pub lineage: Arc<dyn LineageStore>,
    pub log: Arc<AuditLog>,
    pub clock: Arc<ManualClock>,
    pub keys: AuditKeys,
    raw: Raw,
}

/// Checkpoints every 10 entries, none by time: tests know where they are.
pub fn test_config() -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: 10,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..AuditConfig::default()
    }
}

impl Harness {
    pub async fn open(backend: Backend) -> Self {
        Self::open_with(backend, test_config()).await
    }

    pub async fn open_with(backend: Backend, config: AuditConfig) -> Self {
        let keys = AuditKeys::from_seed([42; 32]);
        let clock = Arc::new(ManualClock::new(MONDAY_10_UTC));
        match backend {
            Backend::Sled => {
                let dir = tempfile::tempdir().expect("temp dir");
                let db = sled::open(dir.path()).expect("sled opens");
                let tree = db.open_tree("governance").expect("tree");
                let store = SledStore::open(db, SledConfig { fsync: false }).expect("store");
                let log = AuditLog::start(store.clone(), keys.clone(), clock.clone(), config);
                Harness {
                    backend,
                    store: store.clone(),
                    lineage: store,
                    log,
                    clock,
                    keys,
                    raw: Raw::Sled { tree, _dir: dir },
                }
            }
            Backend::Postgres => {
                let schema = pg::TestSchema::new();
                let store = schema.open().await;
                let log = AuditLog::start(store.clone(), keys.clone(), clock.clone(), config);
                Harness {
                    backend,
                    store: store.clone(),
                    lineage: store,
                    log,
                    clock,
                    keys,
                    raw: Raw::Postgres(schema),
                }
            }
        }
    }

    /// The PostgreSQL schema, for opening a second node on it.
    pub fn schema(&self) -> Option<&pg::TestSchema> {
        match &self.raw {
            Raw::Postgres(schema) => Some(schema),
            Raw::Sled { .. } => None,
        }
    }

    pub async fn verify(&self) -> VerifyReport {
        self.log
            .verify(&VerifyScope::All, &mut |_, _| {})
            .await
            .expect("verification runs")
    }

    /// Appends `n` events to `workspace`, one commit each, a minute apart.
    pub async fn fill(&self, workspace: &str, n: u64) {
        for i in 0..n {
            let actor = if i % 2 == 0 { "alice" } else { "bob" };
            let event = AuditEvent::new(
                Action::UpdateAccepted,
                Actor::user(actor),
                workspace,
                self.clock.now_ms(),
            )
            .document(format!("{workspace}/plan"))
            .details(serde_json::json!({ "bytes": 100 + i, "n": i }));
            self.log.append(event).await.expect("append");
            self.clock.advance(60_000);
        }
    }

    // ---- tampering, straight in the store ----

    fn sled_tree(&self) -> &sled::Tree {
        match &self.raw {
            Raw::Sled { tree, .. } => tree,
            Raw::Postgres(_) => unreachable!("not a sled harness"),
        }
    }

    /// Deletes a raw key of the sled tree.
    pub fn remove_raw_key(&self, key: &[u8]) {
        self.sled_tree().remove(key).unwrap();
    }

    async fn pg(&self, sql: &str, binds: Vec<Bind>) {
        let Raw::Postgres(schema) = &self.raw else {
            unreachable!("not a PostgreSQL harness")
        };
        let mut conn = schema.connect().await;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
                Bind::Bytes(b) => query.bind(b),
            };
        }
        query
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The stored (prev_hash, hash, event JSON) of an entry.
    pub async fn raw_entry(&self, ws: &str, seq: u64) -> Option<(Digest, Digest, String)> {
        match &self.raw {
            Raw::Sled { tree, .. } => tree.get(entry_key(ws, seq)).unwrap().map(|v| {
                (
                    Digest::from_slice(&v[..32]).unwrap(),
                    Digest::from_slice(&v[32..64]).unwrap(),
                    String::from_utf8(v[64..].to_vec()).unwrap(),
                )
            }),
            Raw::Postgres(schema) => {
                let mut conn = schema.connect().await;
                sqlx::query(
                    "SELECT prev_hash, hash, event FROM governance_audit_entries
                      WHERE workspace = $1 AND seq = $2",
                )
                .bind(ws)
                .bind(seq as i64)
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .map(|row| {
                    (
                        Digest::from_slice(&row.get::<Vec<u8>, _>(0)).unwrap(),
                        Digest::from_slice(&row.get::<Vec<u8>, _>(1)).unwrap(),
                        row.get(2),
                    )
                })
            }
        }
    }

    async fn put_raw(&self, ws: &str, seq: u64, prev: Digest, hash: Digest, event: &str) {
        match self.backend {
            Backend::Sled => {
                let mut value = prev.0.to_vec();
                value.extend_from_slice(&hash.0);
                value.extend_from_slice(event.as_bytes());
                self.sled_tree().insert(entry_key(ws, seq), value).unwrap();
            }
            Backend::Postgres => {
                self.pg(
                    "UPDATE governance_audit_entries SET prev_hash = $3, hash = $4, event = $5
                      WHERE workspace = $1 AND seq = $2",
                    vec![
                        Bind::Text(ws.into()),
                        Bind::Int(seq as i64),
                        Bind::Bytes(prev.0.to_vec()),
                        Bind::Bytes(hash.0.to_vec()),
                        Bind::Text(event.into()),
                    ],
                )
                .await
            }
        }
    }

    /// Rewrites an entry's event (as JSON) and leaves its hashes alone.
    pub async fn change_event(
        &self,
        ws: &str,
        seq: u64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) {
        let (prev, hash, json) = self.raw_entry(ws, seq).await.expect("entry exists");
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        edit(&mut value);
        self.put_raw(ws, seq, prev, hash, &value.to_string()).await;
    }

    /// Overwrites an entry's stored hash.
    pub async fn change_hash(&self, ws: &str, seq: u64, hash: Digest) {
        let (prev, _, json) = self.raw_entry(ws, seq).await.expect("entry exists");
        self.put_raw(ws, seq, prev, hash, &json).await;
    }

    pub async fn remove_entry(&self, ws: &str, seq: u64) {
        match self.backend {
            Backend::Sled => {
                self.sled_tree().remove(entry_key(ws, seq)).unwrap();
            }
            Backend::Postgres => {
                self.pg(
                    "DELETE FROM governance_audit_entries WHERE workspace = $1 AND seq = $2",
                    vec![Bind::Text(ws.into()), Bind::Int(seq as i64)],
                )
                .await
            }
        }
    }

    /// Exchanges the contents of two positions.
    pub async fn swap_entries(&self, ws: &str, a: u64, b: u64) {
        let ea = self.raw_entry(ws, a).await.unwrap();
        let eb = self.raw_entry(ws, b).await.unwrap();
        self.put_raw(ws, a, eb.0, eb.1, &eb.2).await;
        self.put_raw(ws, b, ea.0, ea.1, &ea.2).await;
    }

    /// Moves every entry from `seq` on one position up and puts a forged
    /// entry, correctly hashed onto its predecessor, at `seq`.
    pub async fn insert_entry(&self, ws: &str, seq: u64, event: &AuditEvent) {
        let head = self.store.head(ws).await.unwrap().unwrap().seq;
        for s in (seq..=head).rev() {
            let (prev, hash, json) = self.raw_entry(ws, s).await.unwrap();
            match self.backend {
                Backend::Sled => {
                    self.sled_tree().remove(entry_key(ws, s)).unwrap();
                    let mut value = prev.0.to_vec();
                    value.extend_from_slice(&hash.0);
                    value.extend_from_slice(json.as_bytes());
                    self.sled_tree()
                        .insert(entry_key(ws, s + 1), value)
                        .unwrap();
                }
                Backend::Postgres => {
                    self.pg(
                        "UPDATE governance_audit_entries SET seq = seq + 1
                          WHERE workspace = $1 AND seq = $2",
                        vec![Bind::Text(ws.into()), Bind::Int(s as i64)],
                    )
                    .await
                }
            }
        }
        let (_, prev_hash, _) = self.raw_entry(ws, seq - 1).await.unwrap();
        let canonical = canonical_event(event);
        let hash = entry_hash(seq, &prev_hash, &canonical);
        match self.backend {
            Backend::Sled => self.put_raw(ws, seq, prev_hash, hash, &canonical).await,
            Backend::Postgres => {
                self.pg(
                    "INSERT INTO governance_audit_entries
                         (workspace, seq, prev_hash, hash, event, at_ms, actor_kind, actor_id,
                          action, document, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 'allowed')",
                    vec![
                        Bind::Text(ws.into()),
                        Bind::Int(seq as i64),
                        Bind::Bytes(prev_hash.0.to_vec()),
                        Bind::Bytes(hash.0.to_vec()),
                        Bind::Text(canonical),
                        Bind::Int(event.at_ms as i64),
                        Bind::Text(event.actor.kind().into()),
                        Bind::Text(event.actor.id().into()),
                        Bind::Text(event.action.as_str().into()),
                    ],
                )
                .await
            }
        }
    }

    /// Replaces a checkpoint's signature with one made by another key.
    pub async fn forge_checkpoint(&self, ws: &str, seq: u64) {
        let forger = AuditKeys::from_seed([66; 32]);
        let cp = self
            .store
            .checkpoints(ws)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.seq == seq)
            .expect("checkpoint exists");
        // Same key id, so it looks like ours: only the signature is wrong.
        let forged = forger
            .checkpoint(ws, cp.seq, cp.hash, cp.prev_seq, cp.at_ms)
            .signature;
        match self.backend {
            Backend::Sled => {
                let mut cp = cp;
                cp.signature = forged;
                self.sled_tree()
                    .insert(checkpoint_key(ws, seq), serde_json::to_vec(&cp).unwrap())
                    .unwrap();
            }
            Backend::Postgres => {
                self.pg(
                    "UPDATE governance_audit_checkpoints SET signature = $3
                      WHERE workspace = $1 AND seq = $2",
                    vec![
                        Bind::Text(ws.into()),
                        Bind::Int(seq as i64),
                        Bind::Text(forged),
                    ],
                )
                .await
            }
        }
    }

    pub async fn remove_checkpoint(&self, ws: &str, seq: u64) {
        match self.backend {
            Backend::Sled => {
                self.sled_tree().remove(checkpoint_key(ws, seq)).unwrap();
            }
            Backend::Postgres => {
                self.pg(
                    "DELETE FROM governance_audit_checkpoints WHERE workspace = $1 AND seq = $2",
                    vec![Bind::Text(ws.into()), Bind::Int(seq as i64)],
                )
                .await
            }
        }
    }

    /// Deletes every entry from `from` on; with `cover_up`, also moves the
    /// recorded head back to the last entry left.
    pub async fn truncate(&self, ws: &str, from: u64, cover_up: bool) {
        let head = self.store.head(ws).await.unwrap().unwrap();
        for seq in from..=head.seq {
            self.remove_entry(ws, seq).await;
        }
        if cover_up {
            let (_, hash, _) = self.raw_entry(ws, from - 1).await.unwrap();
            self.set_head(ws, from - 1, hash, head.checkpoint_seq.min(from - 1))
                .await;
        }
    }

    pub async fn set_head(&self, ws: &str, seq: u64, hash: Digest, checkpoint_seq: u64) {
        match self.backend {
            Backend::Sled => {
                let mut value = seq.to_be_bytes().to_vec();
                value.extend_from_slice(&hash.0);
                value.extend_from_slice(&checkpoint_seq.to_be_bytes());
                let mut key = vec![b'H'];
                key.extend_from_slice(ws.as_bytes());
                self.sled_tree().insert(key, value).unwrap();
            }
            Backend::Postgres => {
                self.pg(
                    "UPDATE governance_audit_heads SET seq = $2, hash = $3, checkpoint_seq = $4
                      WHERE workspace = $1",
                    vec![
                        Bind::Text(ws.into()),
                        Bind::Int(seq as i64),
                        Bind::Bytes(hash.0.to_vec()),
                        Bind::Int(checkpoint_seq as i64),
                    ],
                )
                .await
            }
        }
    }

    /// Rewrites entry `from`'s event and re-hashes it and every entry after
    /// it (and the head), as someone who knows the algorithm but not the
    /// signing key would.
    pub async fn rewrite_from(
        &self,
        ws: &str,
        from: u64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) {
        self.change_event(ws, from, edit).await;
        let head = self.store.head(ws).await.unwrap().unwrap();
        let (_, mut prev, _) = self.raw_entry(ws, from - 1).await.unwrap();
        for seq in from..=head.seq {
            let (_, _, json) = self.raw_entry(ws, seq).await.unwrap();
            let event: AuditEvent = serde_json::from_str(&json).unwrap();
            let canonical = canonical_event(&event);
            let hash = entry_hash(seq, &prev, &canonical);
            self.put_raw(ws, seq, prev, hash, &canonical).await;
            prev = hash;
        }
        self.set_head(ws, head.seq, prev, head.checkpoint_seq).await;
    }
}

enum Bind {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

fn entry_key(ws: &str, seq: u64) -> Vec<u8> {
    let mut key = vec![b'E'];
    key.extend_from_slice(ws.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn checkpoint_key(ws: &str, seq: u64) -> Vec<u8> {
    let mut key = vec![b'C'];
    key.extend_from_slice(ws.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Runs each listed async test function against both stores: defines
/// `mod sled { #[tokio::test] fn name() }` and `mod postgres { … }`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sled).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}
