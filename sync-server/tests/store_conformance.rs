//! One conformance suite for every `DocStore`. Each backend provides a way
//! to open (and reopen) a store on fresh, private storage; the cases are
//! the same for all.

mod pg;

use std::sync::Arc;

use bytes::Bytes;
use crdt_core::Encoding;
use sync_server::docs::DocName;
use sync_server::store::{DocStore, NewUpdate, SledConfig, SledStore, Snapshot, StoreError};

/// Opens a store on storage that `reopen` reaches again.
trait Backend {
    async fn open(&self) -> Arc<dyn DocStore>;
}

fn name(s: &str) -> DocName {
    DocName::parse(s).unwrap()
}

/// A real update, the same bytes for the same `i`.
fn update(i: u64) -> NewUpdate {
    use yrs::{Text, Transact};
    let doc = yrs::Doc::with_client_id(i + 1);
    let text = doc.get_or_insert_text("t");
    let bytes = {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &format!("u{i}"));
        txn.encode_update_v1()
    };
    NewUpdate {
        update: Bytes::from(bytes),
        origin: format!("user-{}", i % 3),
        at_ms: 1_700_000_000_000 + i,
    }
}

async fn unknown_documents_load_empty(b: &impl Backend) {
    let store = b.open().await;
    let doc = store.load(&name("never/written")).await.unwrap();
    assert!(doc.is_empty());
    assert_eq!(doc.last_seq(), 0);
}

async fn appends_come_back_in_order_with_their_metadata(b: &impl Backend) {
    let store = b.open().await;
    let doc = name("order");
    store
        .append(&doc, (0..3).map(update).collect())
        .await
        .unwrap();
    store
        .append(&doc, (3..5).map(update).collect())
        .await
        .unwrap();
    let loaded = store.load(&doc).await.unwrap();
    assert_eq!(loaded.log.len(), 5);
    for (i, entry) in loaded.log.iter().enumerate() {
        let expected = update(i as u64);
        assert_eq!(entry.update, expected.update.to_vec());
        assert_eq!(entry.origin, expected.origin);
        assert_eq!(entry.at_ms, expected.at_ms);
        assert_eq!(entry.encoding, Encoding::V1);
    }
    assert!(
        loaded.log.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
}

async fn documents_never_see_each_others_entries(b: &impl Backend) {
    let store = b.open().await;
    // Names that are prefixes of each other must not collide.
    let names = ["ab", "a", "a/b", "a.b"];
    for (i, n) in names.iter().enumerate() {
        store
            .append(&name(n), vec![update(i as u64)])
            .await
            .unwrap();
    }
    for (i, n) in names.iter().enumerate() {
        let loaded = store.load(&name(n)).await.unwrap();
        assert_eq!(loaded.log.len(), 1, "{n}");
        assert_eq!(loaded.log[0].origin, update(i as u64).origin);
    }
    let mut listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    listed.sort();
    for n in names {
        assert!(listed.contains(&n.to_owned()), "{n} listed in {listed:?}");
    }
}

async fn compaction_replaces_the_prefix_and_keeps_later_entries(b: &impl Backend) {
    let store = b.open().await;
    let doc = name("compact");
    store
        .append(&doc, (0..4).map(update).collect())
        .await
        .unwrap();
    let before = store.load(&doc).await.unwrap();
    let through = before.log[2].seq;
    // An append lands between the read and the compaction, as in the server.
    store.append(&doc, vec![update(4)]).await.unwrap();
    let snapshot = Snapshot {
        through_seq: through,
        encoding: Encoding::V2,
        state: vec![7; 32],
    };
    store.compact(&doc, snapshot.clone()).await.unwrap();
    let after = store.load(&doc).await.unwrap();
    assert_eq!(after.snapshot, Some(snapshot));
    let kept: Vec<String> = after.log.iter().map(|e| e.origin.clone()).collect();
    assert_eq!(kept, vec![update(3).origin, update(4).origin]);
    assert!(after.log[0].seq > through);

    // Appending after a compaction continues the sequence.
    store.append(&doc, vec![update(5)]).await.unwrap();
    let last = store.load(&doc).await.unwrap();
    assert!(last.log.last().unwrap().seq > after.log.last().unwrap().seq);
}

async fn data_survives_reopening(b: &impl Backend) {
    let doc = name("reopen");
    {
        let store = b.open().await;
        store
            .append(&doc, (0..3).map(update).collect())
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = b.open().await;
    let loaded = store.load(&doc).await.unwrap();
    assert_eq!(loaded.log.len(), 3);
    store.append(&doc, vec![update(3)]).await.unwrap();
    let loaded = store.load(&doc).await.unwrap();
    assert_eq!(loaded.log.len(), 4);
    assert!(
        loaded.log.windows(2).all(|w| w[0].seq < w[1].seq),
        "no seq reused after reopen"
    );
}

async fn concurrent_appends_are_all_kept_in_per_document_order(b: &impl Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for d in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let doc = name(&format!("busy/{d}"));
            for i in 0..25 {
                store.append(&doc, vec![update(i)]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for d in 0..8 {
        let loaded = store.load(&name(&format!("busy/{d}"))).await.unwrap();
        let at: Vec<u64> = loaded.log.iter().map(|e| e.at_ms).collect();
        let expected: Vec<u64> = (0..25).map(|i| update(i).at_ms).collect();
        assert_eq!(at, expected, "doc {d}");
    }
}

async fn a_closed_store_refuses_work(b: &impl Backend) {
    let store = b.open().await;
    store.close().await.unwrap();
    let err = store
        .append(&name("late"), vec![update(0)])
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Closed);
    assert!(
        store.check().await.is_err(),
        "readiness reports a closed store"
    );
}

/// Runs every case against `backend`, each on its own fresh storage.
macro_rules! conformance {
    ($backend:expr) => {
        #[tokio::test]
        async fn unknown_documents_load_empty() {
            super::unknown_documents_load_empty(&$backend).await;
        }
        #[tokio::test]
        async fn appends_come_back_in_order_with_their_metadata() {
            super::appends_come_back_in_order_with_their_metadata(&$backend).await;
        }
        #[tokio::test]
        async fn documents_never_see_each_others_entries() {
            super::documents_never_see_each_others_entries(&$backend).await;
        }
        #[tokio::test]
        async fn compaction_replaces_the_prefix_and_keeps_later_entries() {
            super::compaction_replaces_the_prefix_and_keeps_later_entries(&$backend).await;
        }
        #[tokio::test]
        async fn data_survives_reopening() {
            super::data_survives_reopening(&$backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_appends_are_all_kept_in_per_document_order() {
            super::concurrent_appends_are_all_kept_in_per_document_order(&$backend).await;
        }
        #[tokio::test]
        async fn a_closed_store_refuses_work() {
            super::a_closed_store_refuses_work(&$backend).await;
        }
    };
}

mod sled {
    use super::*;

    /// A sled database in its own temporary directory.
    pub struct Sled(tempfile::TempDir);

    impl Sled {
        pub fn new() -> Self {
            Sled(tempfile::tempdir().unwrap())
        }
    }

    impl Backend for Sled {
        async fn open(&self) -> Arc<dyn DocStore> {
            SledStore::open(SledConfig {
                path: self.0.path().to_owned(),
                cache_bytes: 8 << 20,
                fsync: true,
                commit_delay: std::time::Duration::ZERO,
            })
            .unwrap()
        }
    }

    conformance!(Sled::new());
}

mod postgres {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use sync_server::Config;

    use sync_server::store::{PostgresConfig, PostgresOpenError, PostgresStore, StoredDoc};
    use yrs::updates::decoder::Decode;
    use yrs::{ReadTxn, StateVector, Transact, Update};

    use super::*;
    use crate::pg::TestSchema;

    /// A schema of its own on the real PostgreSQL.
    pub struct Postgres(TestSchema);

    impl Postgres {
        pub fn new() -> Self {
            Postgres(TestSchema::new())
        }
    }

    impl Backend for Postgres {
        async fn open(&self) -> Arc<dyn DocStore> {
            self.0.open().await
        }
    }

    conformance!(Postgres::new());

    /// A store's view of a document, replayed into a yrs document.
    fn replay(stored: &StoredDoc) -> yrs::Doc {
        let doc = yrs::Doc::new();
        {
            let mut txn = doc.transact_mut();
            if let Some(snapshot) = &stored.snapshot {
                assert_eq!(snapshot.encoding, Encoding::V2);
                txn.apply_update(Update::decode_v2(&snapshot.state).unwrap())
                    .unwrap();
            }
            for entry in &stored.log {
                txn.apply_update(Update::decode_v1(&entry.update).unwrap())
                    .unwrap();
            }
        }
        doc
    }

    /// Compacts the way the server does: load, fold, replace.
    async fn compact_now(store: &PostgresStore, doc: &DocName) -> bool {
        let stored = store.load(doc).await.unwrap();
        if stored.log.is_empty() {
            return false;
        }
        let state = replay(&stored)
            .transact()
            .encode_state_as_update_v2(&StateVector::default());
        let snapshot = Snapshot {
            through_seq: stored.last_seq(),
            encoding: Encoding::V2,
            state,
        };
        store.compact(doc, snapshot).await.unwrap();
        true
    }

    /// Sequence numbers of the log, checked to continue the snapshot
    /// without a gap; returns the last one.
    fn assert_gap_free(stored: &StoredDoc) -> u64 {
        let mut last = stored.snapshot.as_ref().map_or(0, |s| s.through_seq);
        for entry in &stored.log {
            assert_eq!(entry.seq, last + 1, "gap or reordering after seq {last}");
            last = entry.seq;
        }
        last
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_appending_to_one_document_get_gap_free_commit_ordered_seqs() {
        let schema = TestSchema::new();
        let nodes = [schema.open().await, schema.open().await];
        let doc = name("shared/doc");
        let (writers, rounds, per_append) = (3, 20, 2);
        let mut tasks = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            for w in 0..writers {
                let (node, doc) = (node.clone(), doc.clone());
                tasks.push(tokio::spawn(async move {
                    for round in 0..rounds {
                        let updates = (0..per_append)
                            .map(|k| NewUpdate {
                                origin: format!("node{n}/writer{w}"),
                                at_ms: round * per_append + k,
                                ..update(round)
                            })
                            .collect();
                        node.append(&doc, updates).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let loaded = nodes[0].load(&doc).await.unwrap();
        let total = 2 * writers * rounds * per_append;
        assert_eq!(loaded.log.len() as u64, total, "every entry kept");
        assert_eq!(assert_gap_free(&loaded), total);
        // Each writer's entries keep the order it appended them in.
        let mut by_writer: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for entry in &loaded.log {
            by_writer
                .entry(&entry.origin)
                .or_default()
                .push(entry.at_ms);
        }
        assert_eq!(by_writer.len(), 2 * writers as usize);
        for (writer, at) in by_writer {
            assert_eq!(at, (0..rounds * per_append).collect::<Vec<_>>(), "{writer}");
        }
        assert_eq!(
            nodes[1].load(&doc).await.unwrap(),
            loaded,
            "both nodes read the same"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commits_over_the_same_documents_from_two_nodes_never_deadlock() {
        let schema = TestSchema::new();
        // Appends queued while a commit runs share the next one, so each
        // node's commits cover several of these documents at once; with
        // inconsistent lock orders this deadlocks within a few rounds.
        let nodes = [schema.open().await, schema.open().await];
        let docs: Vec<DocName> = (0..8).map(|d| name(&format!("ring/{d}"))).collect();
        let mut tasks = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            // The two nodes queue the documents in opposite orders.
            let mut order = docs.clone();
            if n == 1 {
                order.reverse();
            }
            for doc in order {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..100 {
                        node.append(&doc, vec![update(i)]).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        for doc in &docs {
            let loaded = nodes[0].load(doc).await.unwrap();
            assert_eq!(assert_gap_free(&loaded), 200, "{doc}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_racing_appends_from_another_node_loses_nothing() {
        let schema = TestSchema::new();
        let (writer, compactor) = (schema.open().await, schema.open().await);
        let doc = name("raced");
        let total = 300;
        let appending = {
            let (writer, doc) = (writer.clone(), doc.clone());
            tokio::spawn(async move {
                let halves = [(0..total / 2), (total / 2..total)].map(|range| {
                    let (writer, doc) = (writer.clone(), doc.clone());
                    tokio::spawn(async move {
                        for i in range {
                            writer.append(&doc, vec![update(i)]).await.unwrap();
                        }
                    })
                });
                for half in halves {
                    half.await.unwrap();
                }
            })
        };
        let mut compactions = 0;
        while !appending.is_finished() {
            if compact_now(&compactor, &doc).await {
                compactions += 1;
            }
        }
        appending.await.unwrap();
        assert!(
            compactions >= 2,
            "compactions raced the appends ({compactions})"
        );

        let everything = |stored: &StoredDoc| {
            assert_eq!(assert_gap_free(stored), total);
            let state = replay(stored).transact().state_vector();
            for i in 0..total {
                // update(i) is client i + 1 inserting "u{i}".
                assert_eq!(
                    state.get(&yrs::ClientID::new(i + 1)),
                    format!("u{i}").len() as u32,
                    "update {i} lost"
                );
            }
        };
        everything(&writer.load(&doc).await.unwrap());
        compact_now(&compactor, &doc).await;
        let folded = writer.load(&doc).await.unwrap();
        assert!(folded.log.is_empty());
        everything(&folded);
    }

    #[tokio::test]
    async fn a_stale_snapshot_never_replaces_a_newer_one() {
        let schema = TestSchema::new();
        let store = schema.open().await;
        let doc = name("stale");
        store
            .append(&doc, (0..6).map(update).collect())
            .await
            .unwrap();
        let snapshot = |through_seq, byte| Snapshot {
            through_seq,
            encoding: Encoding::V2,
            state: vec![byte; 8],
        };
        store.compact(&doc, snapshot(5, 5)).await.unwrap();
        // Another node finishing an older compaction later.
        store.compact(&doc, snapshot(3, 3)).await.unwrap();
        let loaded = store.load(&doc).await.unwrap();
        assert_eq!(loaded.snapshot, Some(snapshot(5, 5)));
        assert_eq!(
            loaded.log.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![6]
        );
    }

    #[tokio::test]
    async fn compaction_past_the_end_of_the_log_is_refused() {
        let schema = TestSchema::new();
        let store = schema.open().await;
        let doc = name("short");
        store
            .append(&doc, (0..3).map(update).collect())
            .await
            .unwrap();
        let before = store.load(&doc).await.unwrap();
        let err = store
            .compact(
                &doc,
                Snapshot {
                    through_seq: 10,
                    encoding: Encoding::V2,
                    state: vec![0; 8],
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("log ends at 3")),
            "{err}"
        );
        assert_eq!(store.load(&doc).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_whole_batch_and_writes_none_of_it() {
        let schema = TestSchema::new();
        // Long enough that the three appends below share one commit.
        let store = schema
            .open_with(PostgresConfig {
                commit_delay: Duration::from_millis(300),
                ..schema.config()
            })
            .await;
        let (healthy, victim, bystander) = (name("healthy"), name("victim"), name("bystander"));
        store.append(&healthy, vec![update(0)]).await.unwrap();
        schema
            .execute(
                "ALTER TABLE log_entries ADD CONSTRAINT refuse_poison CHECK (origin <> 'poison')",
            )
            .await;
        let poisoned = NewUpdate {
            origin: "poison".into(),
            ..update(1)
        };
        let results = tokio::join!(
            store.append(&healthy, vec![update(2)]),
            store.append(&victim, vec![poisoned]),
            store.append(&bystander, vec![update(3)]),
        );
        for result in [results.0, results.1, results.2] {
            assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
        }
        assert_eq!(store.load(&healthy).await.unwrap().log.len(), 1);
        assert!(store.load(&victim).await.unwrap().is_empty());
        assert!(store.load(&bystander).await.unwrap().is_empty());
        let listed: Vec<String> = store
            .list()
            .await
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            listed,
            vec!["healthy".to_owned()],
            "no document rows either"
        );

        // The store recovers, and the failed batch left no gap.
        schema
            .execute("ALTER TABLE log_entries DROP CONSTRAINT refuse_poison")
            .await;
        store.append(&healthy, vec![update(4)]).await.unwrap();
        store.append(&bystander, vec![update(5)]).await.unwrap();
        let seqs = |d: StoredDoc| d.log.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.load(&healthy).await.unwrap()), vec![1, 2]);
        assert_eq!(seqs(store.load(&bystander).await.unwrap()), vec![1]);
        assert!(store.check().await.is_ok());
    }

    /// What a newer build's additive migration might do, applied by hand.
    fn newer_additive_migration() -> String {
        let newer = PostgresStore::VERSION + 1;
        format!(
            "ALTER TABLE log_entries ADD COLUMN client_id bigint;
             CREATE TABLE document_tags (doc_id bigint REFERENCES documents (id), tag text);
             UPDATE schema_compat SET latest_store_version = {newer};
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (999999, 'from a newer build', true, '\\x00'::bytea, 0);"
        )
    }

    #[tokio::test]
    async fn an_older_node_keeps_working_on_a_schema_a_newer_build_expanded() {
        let schema = TestSchema::new();
        let doc = name("upgrade/doc");
        let running = schema.open().await;
        running.append(&doc, vec![update(0)]).await.unwrap();

        schema.execute(&newer_additive_migration()).await;

        // The node that was running all along keeps working...
        running.append(&doc, vec![update(1)]).await.unwrap();
        assert_eq!(running.load(&doc).await.unwrap().log.len(), 2);
        assert!(compact_now(&running, &doc).await);
        // ...and an old node starting now (a restart, or a rollback) starts.
        let restarted = schema.open().await;
        restarted.append(&doc, vec![update(2)]).await.unwrap();
        let stored = restarted.load(&doc).await.unwrap();
        assert_eq!(assert_gap_free(&stored), 3);
        assert_eq!(stored.log.len(), 1);

        // It left the newer build's marks alone.
        let mut conn = schema.connect().await;
        let latest: i32 = sqlx::query_scalar("SELECT latest_store_version FROM schema_compat")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(latest, PostgresStore::VERSION + 1);
        let newer_migrations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = 999999")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(newer_migrations, 1);
    }

    #[tokio::test]
    async fn a_node_refuses_a_schema_that_needs_a_newer_build() {
        let schema = TestSchema::new();
        let store = schema.open().await;
        store.append(&name("kept"), vec![update(0)]).await.unwrap();
        store.close().await.unwrap();
        let (ours, required) = (PostgresStore::VERSION, PostgresStore::VERSION + 1);
        schema
            .execute(&format!(
                "UPDATE schema_compat SET min_store_version = {required}, latest_store_version = {required}"
            ))
            .await;

        let err = match PostgresStore::open(schema.config()).await {
            Ok(_) => panic!("a node older than min_store_version started"),
            Err(e) => e,
        };
        assert!(
            matches!(err, PostgresOpenError::Incompatible { required: r, ours: o, .. } if r == required && o == ours),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("requires store version {required} or newer"))
                && message.contains(&format!("this build has store version {ours}")),
            "{message}"
        );

        // The server's start-up path fails the same way.
        let dir = tempfile::tempdir().unwrap();
        let config = Config::resolve(schema.settings(dir.path())).unwrap();
        let err = match sync_server::open_store(&config).await {
            Ok(_) => panic!("the server opened an incompatible schema"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&format!("store version {required}")), "{err}");

        // Nothing was touched: the data is still there for a newer node.
        schema
            .execute(&format!(
                "UPDATE schema_compat SET min_store_version = {ours}"
            ))
            .await;
        let store = schema.open().await;
        assert_eq!(store.load(&name("kept")).await.unwrap().log.len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_at_once_with_its_cause() {
        let started = std::time::Instant::now();
        let config = PostgresConfig {
            // Nothing listens on port 1.
            url: "postgres://postgres@127.0.0.1:1/test".into(),
            schema: "unreachable".into(),
            synchronous_commit: true,
            commit_delay: Duration::ZERO,
            pool_size: 2,
        };
        match PostgresStore::open(config).await {
            Ok(_) => panic!("opened a store on a closed port"),
            Err(PostgresOpenError::Connect(reason)) => {
                assert!(reason.to_lowercase().contains("refused"), "{reason}")
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
