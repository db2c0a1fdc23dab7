//! The whole server on PostgreSQL, black-box: clients edit through it, it
//! restarts, and several nodes share one database. Needs the real
//! PostgreSQL (see `pg/mod.rs`); fails, never skips, without it.

mod common;
mod pg;

use std::net::SocketAddr;
use std::time::Duration;

use common::Client;
use pg::TestSchema;

use sync_server::store::DocStore;
use sync_server::{Config, ServerError};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// One server node in this process, storing in `schema`.
struct Node {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
    /// The (unused) embedded store directory the configuration names.
    _data: TempDir,
}

impl Node {
    /// The configuration a node of `schema` starts from.
    fn config(schema: &TestSchema, data: &TempDir) -> Config {
        Config::resolve(schema.settings(data.path())).expect("valid settings")
    }

    /// Starts with a store opened here and handed to `serve`.
    async fn serve(schema: &TestSchema, tune: impl FnOnce(&mut Config)) -> Node {
        let store = schema.open().await;
        Self::start(schema, tune, |config, listener, shutdown| {
            tokio::spawn(sync_server::serve(config, store, listener, shutdown))
        })
        .await
    }

    /// Starts from configuration alone, as the binary does (`run` opens the
    /// store the configuration names).
    async fn run(schema: &TestSchema, tune: impl FnOnce(&mut Config)) -> Node {
        Self::start(schema, tune, |config, listener, shutdown| {
            tokio::spawn(sync_server::run(config, listener, shutdown))
        })
        .await
    }

    async fn start(
        schema: &TestSchema,
        tune: impl FnOnce(&mut Config),
        spawn: impl FnOnce(
            Config,
            tokio::net::TcpListener,
            CancellationToken,
        ) -> JoinHandle<Result<(), ServerError>>,
    ) -> Node {
        let data = tempfile::tempdir().unwrap();
        let mut config = Self::config(schema, &data);
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind(config.bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = spawn(config, listener, shutdown.clone());
        Node {
            addr,
            shutdown,
            task,
            _data: data,
        }
    }

    fn ws(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful shutdown: every accepted update durable, the store closed.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_survive_a_restart_on_postgres() {
    let schema = TestSchema::new();
    let doc = "acme/pg-roadmap";
    let node = Node::serve(&schema, |_| {}).await;
    let mut a = Client::connect(&node.ws(doc)).await;
    let mut b = Client::connect(&node.ws(doc)).await;
    a.insert("hello ").await;
    b.insert("world").await;
    // Each sees the other's edit only once it is durable.
    assert!(
        a.pump_until(|c| c.text().len() == 11, WAIT).await,
        "{}",
        a.text()
    );
    assert!(
        b.pump_until(|c| c.text().len() == 11, WAIT).await,
        "{}",
        b.text()
    );
    let text = a.text();
    assert_eq!(b.text(), text);
    assert!(text.contains("hello ") && text.contains("world"), "{text}");
    a.close().await;
    b.close().await;
    node.stop().await;

    let node = Node::run(&schema, |_| {}).await;
    let c = Client::connect(&node.ws(doc)).await;
    assert_eq!(c.text(), text, "state survives the restart");
    let content: serde_json::Value = reqwest::get(node.http(&format!("/api/docs/{doc}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(content, serde_json::json!({ "t": text }));
    let ready = reqwest::get(node.http("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "readiness asks PostgreSQL");
    c.close().await;
    node.stop().await;

    // What is stored is the log of both clients' updates.
    let store = schema.open().await;
    let stored = store
        .load(&sync_server::docs::DocName::parse(doc).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.log.len(), 2);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_keep_both_nodes_edits() {
    let schema = TestSchema::new();
    let doc = "acme/shared";
    // Compacting every few updates makes both nodes compact while the
    // other appends.
    let tune = |c: &mut Config| c.docs.compact_after_updates = 4;
    let nodes = [
        Node::serve(&schema, tune).await,
        Node::serve(&schema, tune).await,
    ];
    let mut writers = Vec::new();
    let mut watchers = Vec::new();
    for node in &nodes {
        writers.push(Client::connect(&node.ws(doc)).await);
        watchers.push(Client::connect(&node.ws(doc)).await);
    }
    let edits = 20;
    for _ in 0..edits {
        for (writer, letter) in writers.iter_mut().zip(["a", "b"]) {
            writer.insert(letter).await;
        }
        // Pace the edits so they land in separate commits.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A watcher on the same node sees every edit once it is durable.
    for watcher in &mut watchers {
        assert!(
            watcher.pump_until(|c| c.text().len() == edits, WAIT).await,
            "{}",
            watcher.text()
        );
    }
    for client in writers.into_iter().chain(watchers) {
        client.close().await;
    }
    for node in nodes {
        node.stop().await;
    }

    // A third node, started later, serves both nodes' edits.
    let node = Node::run(&schema, |_| {}).await;
    let reader = Client::connect(&node.ws(doc)).await;
    let text = reader.text();
    assert_eq!(text.matches('a').count(), edits, "{text}");
    assert_eq!(text.matches('b').count(), edits, "{text}");
    reader.close().await;
    node.stop().await;

    let store = schema.open().await;
    let stored = store
        .load(&sync_server::docs::DocName::parse(doc).unwrap())
        .await
        .unwrap();
    assert!(stored.snapshot.is_some(), "the nodes compacted");
    store.close().await.unwrap();
}

/// The count of rows in `table` of this schema.
async fn rows(schema: &TestSchema, table: &str) -> i64 {
    let mut conn = schema.connect().await;
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_writes_that_fail_are_retried_not_dropped() {
    let schema = TestSchema::new();
    let doc = "acme/history-outage";
    let node = Node::serve(&schema, |_| {}).await;
    // Attribution and activity cannot be written; the update log still can.
    schema
        .execute(
            "ALTER TABLE attribution ADD CONSTRAINT outage CHECK (false) NOT VALID;
             ALTER TABLE activity ADD CONSTRAINT outage CHECK (false) NOT VALID;",
        )
        .await;
    let mut writer = Client::connect(&node.ws(doc)).await;
    writer.insert("written during the outage").await;
    let metrics = || async {
        reqwest::get(node.http("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let failed = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("sync_store_errors_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while failed(&metrics().await) < 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no history write failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&schema, "attribution").await, 0);
    assert_eq!(rows(&schema, "activity").await, 0);

    // The outage ends: what failed is written on a later try.
    schema
        .execute(
            "ALTER TABLE attribution DROP CONSTRAINT outage;
             ALTER TABLE activity DROP CONSTRAINT outage;",
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rows(&schema, "attribution").await == 0 || rows(&schema, "activity").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "history written during the outage was not retried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let feed: serde_json::Value = reqwest::get(node.http("/api/activity/acme"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = feed["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{feed}"))
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"join") && kinds.contains(&"edit"), "{feed}");
    writer.close().await;
    node.stop().await;
}
