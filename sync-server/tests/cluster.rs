//! Several nodes serving the same documents at once: PostgreSQL is the
//! shared log, Redis carries the news between nodes. Every test uses the
//! real services on 127.0.0.1 (PostgreSQL 5432, Redis 6379) with a schema
//! and a channel prefix of its own, and fails, never skips, without them.
//! Faults are cut connections through a TCP proxy in front of the real
//! service.

mod common;
mod pg;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::proxy::Proxy;
use common::{Client, call};
use pg::TestSchema;
use serde_json::json;
use sync_server::auth::config::{IdentityConfig, IdentityFile};
use sync_server::config::Settings;
use sync_server::{Config, ServerError};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn redis_url() -> String {
    std::env::var("SYNC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let host = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    host.parse().expect("SYNC_TEST_REDIS_URL names an ip:port")
}

/// Fails loudly (never skips) when Redis is not there.
async fn require_redis() {
    if tokio::net::TcpStream::connect(redis_addr()).await.is_err() {
        panic!(
            "Redis is not reachable at {}. The cluster tests need a real Redis on \
             127.0.0.1:6379: start it with ./scripts/deps.sh, or with\n    \
             redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no",
            redis_url()
        );
    }
}

fn unique_prefix() -> String {
    let mut random = RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    format!("test-{:016x}", random.finish())
}

/// Where a node finds its services (possibly through fault proxies).
struct Services {
    database_url: String,
    redis_url: String,
    prefix: String,
}

/// One node in this process.
struct Node {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
    _data: TempDir,
}

impl Node {
    async fn start(schema: &TestSchema, services: &Services) -> Node {
        Self::start_with(schema, services, |_| {}).await
    }

    /// [`Node::start`], with the configuration adjusted by `tune`.
    async fn start_with(
        schema: &TestSchema,
        services: &Services,
        tune: impl FnOnce(&mut Config),
    ) -> Node {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::resolve(Settings {
            database_url: Some(services.database_url.clone()),
            redis_url: Some(services.redis_url.clone()),
            redis_prefix: Some(services.prefix.clone()),
            ..schema.settings(data.path())
        })
        .expect("valid settings");
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sync_server::run(config, listener, shutdown.clone()));
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

    async fn ready(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("http://{}/readyz", self.addr))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Waits until `/readyz` answers `status`.
    async fn wait_ready(&self, status: u16) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (now, body) = self.ready().await;
            if now == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "readyz stayed {now}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

async fn direct(schema: &TestSchema) -> Services {
    require_redis().await;
    Services {
        database_url: schema.config().url,
        redis_url: redis_url(),
        prefix: unique_prefix(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_converge_and_see_each_others_presence() {
    let schema = TestSchema::new();
    let services = direct(&schema).await;
    let a = Node::start(&schema, &services).await;
    let b = Node::start(&schema, &services).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;

    let mut on_a = Client::connect(&a.ws("team/shared")).await;
    let mut on_b = Client::connect(&b.ws("team/shared")).await;
    on_a.insert("from a; ").await;
    assert!(
        on_b.pump_until(|c| c.text() == "from a; ", WAIT).await,
        "b sees a's edit"
    );
    on_b.insert("from b").await;
    assert!(
        on_a.pump_until(|c| c.text() == "from a; from b", WAIT)
            .await,
        "a sees b's edit"
    );

    on_a.set_presence(1, r#"{"user":"ada"}"#).await;
    let ada = on_a.doc.client_id().get();
    assert!(
        on_b.pump_until(|c| c.presence.get(&ada).is_some_and(Option::is_some), WAIT)
            .await
    );

    // Many edits from both sides at once still converge.
    for i in 0..50 {
        on_a.insert(&format!("<a{i}>")).await;
        on_b.insert(&format!("<b{i}>")).await;
    }
    let all = |c: &Client| {
        (0..50)
            .all(|i| c.text().contains(&format!("<a{i}>")) && c.text().contains(&format!("<b{i}>")))
    };
    assert!(on_a.pump_until(all, WAIT).await && on_b.pump_until(all, WAIT).await);
    assert_eq!(on_a.text(), on_b.text());

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_leaves_each_node_serving_and_they_heal_without_divergence() {
    let schema = TestSchema::new();
    require_redis().await;
    let redis = Proxy::start(redis_addr()).await;
    let services = Services {
        database_url: schema.config().url,
        redis_url: format!("redis://{}", redis.addr),
        prefix: unique_prefix(),
    };
    let a = Node::start(&schema, &services).await;
    let b = Node::start(&schema, &services).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    let mut a1 = Client::connect(&a.ws("outage/doc")).await;
    let mut a2 = Client::connect(&a.ws("outage/doc")).await;
    let mut b1 = Client::connect(&b.ws("outage/doc")).await;
    a1.insert("before;").await;
    assert!(b1.pump_until(|c| c.text() == "before;", WAIT).await);

    redis.cut().await;
    let body = a.wait_ready(503).await;
    assert_eq!(body["cluster"]["ok"], false, "{body}");
    b.wait_ready(503).await;

    // Each node keeps serving its own clients.
    a1.insert("[a during]").await;
    assert!(
        a2.pump_until(|c| c.text().contains("[a during]"), WAIT)
            .await,
        "same-node fan-out works"
    );
    b1.insert("[b during]").await;
    b1.pump_for(Duration::from_millis(300)).await;
    assert!(
        !b1.text().contains("[a during]"),
        "no cross-node news while Redis is down"
    );

    redis.restore();
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    let both = |c: &Client| c.text().contains("[a during]") && c.text().contains("[b during]");
    assert!(b1.pump_until(both, WAIT).await, "b heals: {}", b1.text());
    assert!(a1.pump_until(both, WAIT).await, "a heals: {}", a1.text());
    assert!(a2.pump_until(both, WAIT).await);
    assert_eq!(a1.text(), b1.text(), "no divergence");
    assert_eq!(a2.text(), b1.text());

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_refuses_writes_with_a_reason_and_loses_nothing() {
    let schema = TestSchema::new();
    require_redis().await;
    // Create the schema directly first; the node then reaches PostgreSQL
    // only through the proxy.
    drop(schema.open().await);
    let database = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let services = Services {
        database_url: schema
            .config()
            .url
            .replace("127.0.0.1:5432", &database.addr.to_string()),
        redis_url: redis_url(),
        prefix: unique_prefix(),
    };
    let node = Node::start(&schema, &services).await;
    node.wait_ready(200).await;
    let mut writer = Client::connect(&node.ws("pg-outage/doc")).await;
    writer.insert("durable;").await;
    writer.pump_for(Duration::from_millis(300)).await;

    database.cut().await;
    let body = node.wait_ready(503).await;
    assert_eq!(body["store"]["ok"], false, "{body}");
    // The next write cannot be made durable: the connection is closed with
    // a reason, and the edit stays with the client.
    let _ = writer.try_insert("held by the client;").await;
    let (code, reason) = writer.expect_close(WAIT).await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("storage unavailable"), "{reason}");

    database.restore();
    node.wait_ready(200).await;
    // The provider reconnects and resends what the server lacks.
    writer.reconnect(&node.ws("pg-outage/doc")).await;
    writer.pump_for(Duration::from_millis(300)).await;
    let mut reader = Client::connect(&node.ws("pg-outage/doc")).await;
    assert!(
        reader
            .pump_until(|c| c.text() == "durable;held by the client;", WAIT)
            .await,
        "{}",
        reader.text()
    );
    node.stop().await;
}

/// The token secret every node of the access test shares.
const TOKEN_SECRET: &str = "cluster-access-test-secret-0123456789";

/// Our tokens, and a break-glass administrator `root` ("correct horse")
/// to manage members and keys with.
fn identity() -> IdentityConfig {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(b"test-salt-16byte").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    let text = format!(
        "token-secret = \"{TOKEN_SECRET}\"\n[break-glass]\nuser = \"root\"\npassword-argon2 = \"{hash}\"\n"
    );
    let file: IdentityFile = toml::from_str(&text).unwrap();
    IdentityConfig::resolve(Some(file), None, None).unwrap()
}

/// A document token for directory user `user` on `doc`, up to editor:
/// what `POST /api/tokens` gives a signed-in user, signed with the shared
/// secret so no identity provider is needed.
fn document_token(user: &str, doc: &str) -> String {
    use sync_server::auth::tokens::{Claims, ISSUER, TokenKind, TokenSigner, now_secs};
    use sync_server::auth::{AuthMethod, Role};
    let now = now_secs();
    TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(&Claims {
        iss: ISSUER.into(),
        sub: user.into(),
        name: None,
        groups: Vec::new(),
        method: AuthMethod::Ldap,
        kind: TokenKind::Document,
        doc: Some(doc.into()),
        ws: None,
        role: Some(Role::Editor),
        iat: now,
        exp: now + 3600,
    })
}

/// The text of `doc` as `node` serves it, if it has any.
async fn document_text(node: &Node, admin: &reqwest::Client, doc: &str) -> Option<String> {
    let (status, body) = call(admin.get(node.http(&format!("/api/docs/{doc}")))).await;
    assert!(status == 200 || status == 404, "{status} {body}");
    body["t"].as_str().map(str::to_owned)
}

/// Polls until `node` serves `doc` with text `expected`.
async fn wait_for_text(node: &Node, admin: &reqwest::Client, doc: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = document_text(node, admin, doc).await;
        if text.as_deref() == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{doc} on {} stayed {text:?}, expected {expected:?}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP client signed in on `node` as the break-glass owner.
async fn break_glass_admin(node: &Node) -> reqwest::Client {
    let admin = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let (status, body) = call(
        admin
            .post(node.http("/auth/break-glass"))
            .json(&json!({ "user": "root", "password": "correct horse" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_on_one_node_reach_live_connections_on_another() {
    let schema = TestSchema::new();
    let services = direct(&schema).await;
    let a = Node::start_with(&schema, &services, |c| c.identity = identity()).await;
    let b = Node::start_with(&schema, &services, |c| c.identity = identity()).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;

    let admin = break_glass_admin(&a).await;
    let bob = "ldap|uid=bob";
    let doc = "acme/live";
    let member = a.http(&format!("/api/workspaces/acme/members/{bob}"));

    // Bob, an editor of acme by membership set on node A, edits on node B.
    let (status, body) = call(admin.put(&member).json(&json!({ "role": "editor" }))).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("{}?token={}", b.ws(doc), document_token(bob, doc));
    let mut on_b = Client::connect_as(&url, None)
        .await
        .expect("bob connects to node B");
    on_b.insert("bob was here").await;
    wait_for_text(&a, &admin, doc, "bob was here").await;

    // Downgraded to viewer on node A: node B refuses his next writes.
    let (status, body) = call(admin.put(&member).json(&json!({ "role": "viewer" }))).await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while on_b.denied.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B never refused the viewer's write"
        );
        on_b.insert(".").await;
        on_b.pump_until(|c| !c.denied.is_empty(), Duration::from_millis(200))
            .await;
    }
    assert!(on_b.denied[0].contains("editor"), "{:?}", on_b.denied);
    // Writes sent before the change arrived were an editor's; from the
    // refusal on, nothing more reaches the document, on either node.
    let settled = document_text(&b, &admin, doc)
        .await
        .expect("node B serves the document");
    assert_eq!(settled.trim_end_matches('.'), "bob was here");
    let refusals = on_b.denied.len();
    on_b.insert("refused").await;
    assert!(
        on_b.pump_until(|c| c.denied.len() > refusals, WAIT).await,
        "the second write was not refused: {:?}",
        on_b.denied
    );
    assert_eq!(document_text(&b, &admin, doc).await, Some(settled.clone()));
    wait_for_text(&a, &admin, doc, &settled).await;

    // Removed on node A: node B closes his connection with 4403.
    let (status, body) = call(admin.delete(&member)).await;
    assert_eq!(status, 200, "{body}");
    let (code, reason) = on_b.expect_close(WAIT).await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("no role in workspace \"acme\""), "{reason}");

    // An API key revoked on node A is closed on node B too.
    let (status, created) = call(
        admin
            .post(a.http("/api/keys"))
            .json(&json!({ "name": "importer", "workspaces": ["acme"], "role": "editor" })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let mut keyed = Client::connect_as(&b.ws("acme/keyed"), Some(key))
        .await
        .expect("the key opens acme/keyed on node B");
    let (status, body) = call(admin.delete(a.http(&format!("/api/keys/{id}")))).await;
    assert_eq!(status, 200, "{body}");
    let (code, reason) = keyed.expect_close(WAIT).await;
    assert_eq!(code, 4403, "{reason}");
    assert_eq!(reason, format!("access revoked: API key {id} was revoked"));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_access_changes_in_a_redis_outage_rechecks_everyone() {
    let schema = TestSchema::new();
    let direct = direct(&schema).await;
    // Only node B reaches Redis through the proxy: node A publishes the
    // change successfully, node B is not listening.
    let redis = Proxy::start(redis_addr()).await;
    let proxied = Services {
        database_url: direct.database_url.clone(),
        redis_url: format!("redis://{}", redis.addr),
        prefix: direct.prefix.clone(),
    };
    let a = Node::start_with(&schema, &direct, |c| c.identity = identity()).await;
    let b = Node::start_with(&schema, &proxied, |c| c.identity = identity()).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    let admin = break_glass_admin(&a).await;
    let carol = "ldap|uid=carol";
    let doc = "acme/outage";
    let member = a.http(&format!("/api/workspaces/acme/members/{carol}"));
    let (status, body) = call(admin.put(&member).json(&json!({ "role": "editor" }))).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("{}?token={}", b.ws(doc), document_token(carol, doc));
    let mut on_b = Client::connect_as(&url, None)
        .await
        .expect("carol connects to node B");

    redis.cut().await;
    b.wait_ready(503).await;
    let (status, body) = call(admin.delete(&member)).await;
    assert_eq!(status, 200, "{body}");
    redis.restore();
    b.wait_ready(200).await;

    // Node B cannot know what it missed, so every connection re-checks.
    let (code, reason) = on_b.expect_close(WAIT).await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("no role in workspace \"acme\""), "{reason}");

    a.stop().await;
    b.stop().await;
}

/// A node as its own process, so it can be killed with SIGKILL.
struct Process {
    child: Child,
    addr: String,
}

impl Process {
    fn start(schema: &TestSchema, services: &Services) -> Process {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(["--bind", "127.0.0.1:0", "--store", "postgres"])
            .arg("--data-dir")
            .arg(data.path())
            .env("SYNC_DATABASE_URL", &services.database_url)
            .env("SYNC_DATABASE_SCHEMA", &schema.name)
            .env("SYNC_REDIS_URL", &services.redis_url)
            .env("SYNC_REDIS_PREFIX", &services.prefix)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("node output").unwrap();
            if let Some(rest) = line.split("serving on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Process { child, addr }
    }

    fn ws(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_edit_loses_nothing_any_client_received() {
    let schema = TestSchema::new();
    drop(schema.open().await);
    let services = direct(&schema).await;
    let mut doomed = Process::start(&schema, &services);
    let survivor = Process::start(&schema, &services);
    let doc = "failover/doc";

    let mut on_doomed = Client::connect(&doomed.ws(doc)).await;
    let mut on_survivor = Client::connect(&survivor.ws(doc)).await;
    let mut doomed_alive = true;
    for i in 0..200 {
        if doomed_alive {
            doomed_alive = on_doomed.try_insert(&format!("<d{i}>")).await;
        }
        on_survivor.insert(&format!("<s{i}>")).await;
        if i == 100 {
            doomed.child.kill().unwrap(); // SIGKILL
            doomed.child.wait().unwrap();
        }
        on_survivor.pump_for(Duration::from_millis(2)).await;
    }
    on_doomed.pump_for(Duration::from_millis(100)).await;
    // What the survivor's client received from the doomed node's client
    // was durable before it was sent; so was everything it wrote itself.
    let received: Vec<String> = on_survivor
        .text()
        .split_inclusive('>')
        .filter(|m| m.starts_with("<d"))
        .map(str::to_owned)
        .collect();
    assert!(
        received.len() > 20,
        "only {} edits crossed before the kill",
        received.len()
    );

    // The doomed node's client fails over to the survivor and resends.
    on_doomed.reconnect(&survivor.ws(doc)).await;
    let everything = on_doomed.text();
    let converged = |c: &Client| (0..200).all(|i| c.text().contains(&format!("<s{i}>")));
    assert!(on_doomed.pump_until(converged, WAIT).await);
    assert!(
        on_survivor
            .pump_until(
                |c| everything
                    .split_inclusive('>')
                    .all(|m| c.text().contains(m)),
                WAIT
            )
            .await,
        "the survivor got everything the failed-over client held"
    );
    let mut fresh = Client::connect(&survivor.ws(doc)).await;
    assert!(
        fresh
            .pump_until(|c| c.text() == on_survivor.text(), WAIT)
            .await
    );
    for marker in &received {
        assert!(fresh.text().contains(marker.as_str()), "lost {marker}");
    }
    drop(survivor);
}
