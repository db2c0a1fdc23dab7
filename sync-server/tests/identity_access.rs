//! Access against a real OpenLDAP (slapd, seeded): LDAP sign-in with
//! groups mapped to roles, workspace members whose role changes reach
//! live connections at once, API keys (scoped, revocable, with a last-used
//! time), and rate limits that close with a reason.

mod common;
#[allow(dead_code)]
#[path = "../../connectors/tests/support/slapd.rs"]
mod slapd;

use std::time::Duration;

use common::{Client, TestServer, call, error_of};
use serde_json::{Value, json};
use slapd::Slapd;
use sync_server::auth::config::{IdentityConfig, IdentityFile};

fn identity(slapd: &Slapd) -> IdentityConfig {
    let text = format!(
        r#"
        token-secret = "access-test-secret-0123456789abcdef"
        [ldap]
        url = "{url}"
        user = {{ mode = "dn_template", dn_template = "uid={{username}},ou=people,dc=example,dc=test" }}
        groups = {{ mode = "member_of", attribute = "memberOf" }}
        [[roles]]
        group = "eng-admins"
        workspace = "acme"
        role = "admin"
        "#,
        url = slapd.url
    );
    let file: IdentityFile = toml::from_str(&text).expect("identity file");
    IdentityConfig::resolve(Some(file), None, None).expect("identity config")
}

/// slapd and a server signing in against it; `updates_per_sec` limits
/// each connection when given.
async fn start_limited(updates_per_sec: Option<u32>) -> (Slapd, TestServer) {
    let slapd = tokio::task::spawn_blocking(Slapd::start)
        .await
        .expect("slapd start");
    let identity = identity(&slapd);
    let server = TestServer::start_with(move |config| {
        config.identity = identity;
        if let Some(rate) = updates_per_sec {
            config.connection_limits.updates_per_sec = rate;
            config.connection_limits.burst_secs = 1;
        }
    })
    .await;
    (slapd, server)
}

async fn start() -> (Slapd, TestServer) {
    start_limited(None).await
}

/// An HTTP client that keeps its session cookie.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn sign_in(server: &TestServer, user: &str, password: &str) -> (reqwest::Client, Value) {
    let browser = browser();
    let response = browser
        .post(server.http("/auth/ldap"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "sign-in of {user}");
    let me: Value = response.json().await.unwrap();
    (browser, me)
}

/// A document token for `doc` from a signed-in browser.
async fn token(server: &TestServer, browser: &reqwest::Client, doc: &str) -> String {
    let (status, body) = call(
        browser
            .post(server.http("/api/tokens"))
            .json(&json!({ "document": doc })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn ldap_sign_in_maps_groups_and_refuses_bad_passwords() {
    let (_slapd, server) = start().await;
    let (_alice, me) = sign_in(&server, "alice", "alice-password").await;
    assert_eq!(me["roles"]["acme"], "admin");
    assert!(me["user"].as_str().unwrap().contains("uid=alice"));

    let (status, body) = call(
        browser()
            .post(server.http("/auth/ldap"))
            .json(&json!({ "username": "alice", "password": "wrong" })),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error"],
        "sign-in failed: invalid username or password (alice)"
    );

    // Without a session: refused, naming what to send.
    let (status, body) = call(browser().get(server.http("/api/docs/acme/x"))).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("authentication required")
    );
}

#[tokio::test]
async fn role_changes_reach_live_connections() {
    let (_slapd, server) = start().await;
    let (alice, _) = sign_in(&server, "alice", "alice-password").await;
    let (bob, me) = sign_in(&server, "bob", "bob-password").await;
    let bob_id = me["user"].as_str().unwrap().to_owned();
    let members = |user: &str| server.http(&format!("/api/workspaces/acme/members/{user}"));

    // Bob has no role in acme until alice (an admin) gives him one.
    let (status, body) = call(
        bob.post(server.http("/api/tokens"))
            .json(&json!({ "document": "acme/live" })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        alice
            .put(members(&bob_id))
            .json(&json!({ "role": "editor" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Bob may not promote himself.
    let (status, _) = call(bob.put(members(&bob_id)).json(&json!({ "role": "admin" }))).await;
    assert_eq!(status, 403);

    let url = format!(
        "{}?token={}",
        server.ws("acme/live"),
        token(&server, &bob, "acme/live").await
    );
    let mut client = Client::connect_as(&url, None).await.expect("bob connects");
    client.insert("bob was here").await;
    let mut watcher = Client::connect_as(
        &format!(
            "{}?token={}",
            server.ws("acme/live"),
            token(&server, &alice, "acme/live").await
        ),
        None,
    )
    .await
    .expect("alice connects");
    assert!(
        watcher
            .pump_until(|c| c.text() == "bob was here", Duration::from_secs(10))
            .await
    );

    // Downgraded to viewer: the same connection becomes read-only, and
    // its presence still reaches others.
    let (status, _) = call(
        alice
            .put(members(&bob_id))
            .json(&json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, list) = call(alice.get(server.http("/api/workspaces/acme/members"))).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["role"], "viewer");
    // The change is applied before the next message is decided; retry the
    // write until it is refused, as the change travels asynchronously.
    let mut refused = false;
    for _ in 0..50 {
        client.insert(".").await;
        if client
            .pump_until(|c| !c.denied.is_empty(), Duration::from_millis(200))
            .await
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the viewer's write was never refused");
    assert!(client.denied[0].contains("editor"), "{:?}", client.denied);
    client.set_presence(1, r#"{"name":"bob"}"#).await;
    let bob_client = client.doc.client_id().get();
    assert!(
        watcher
            .pump_until(
                |c| c.presence.contains_key(&bob_client),
                Duration::from_secs(10)
            )
            .await,
        "a viewer's presence must still be shared"
    );
    let before = watcher.text();

    // Removed: disconnected with 4403 and a reason.
    let (status, _) = call(alice.delete(members(&bob_id))).await;
    assert_eq!(status, 200);
    let (code, reason) = client.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, 4403);
    assert!(reason.starts_with("access revoked: "), "{reason}");
    assert!(reason.contains("no role in workspace \"acme\""), "{reason}");

    // Nothing bob sent as a viewer reached the document.
    let (status, content) = call(alice.get(server.http("/api/docs/acme/live"))).await;
    assert_eq!(status, 200);
    assert!(before.starts_with("bob was here"));
    assert_eq!(
        content["t"].as_str().unwrap().trim_end_matches('.'),
        "bob was here"
    );
}

#[tokio::test]
async fn api_keys_are_scoped_revocable_and_report_their_last_use() {
    let (_slapd, server) = start().await;
    let (alice, _) = sign_in(&server, "alice", "alice-password").await;
    let (status, created) = call(
        alice
            .post(server.http("/api/keys"))
            .json(&json!({ "name": "importer", "workspaces": ["acme"], "role": "editor" })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let with_key = |path: &str| {
        reqwest::Client::new()
            .get(server.http(path))
            .bearer_auth(&key)
    };
    let mut client = Client::connect_as(&server.ws("acme/keyed"), Some(&key))
        .await
        .expect("the key opens acme/keyed");
    client.insert("from a service").await;
    let mut stored = false;
    for _ in 0..50 {
        let (status, body) = call(with_key("/api/docs/acme/keyed")).await;
        assert!(status == 200 || status == 404, "{status} {body}");
        if status == 200 && body["t"] == "from a service" {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "the key's update never became readable");
    let (status, body) = call(with_key("/api/docs/other/keyed")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"],
        "this API key is for workspace \"acme\", not \"other\""
    );

    let (status, listed) = call(alice.get(server.http("/api/keys?workspace=acme"))).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(listed[0].get("hash").is_none() && listed[0].get("key").is_none());
    let mut used = false;
    for _ in 0..50 {
        let (_, listed) = call(alice.get(server.http("/api/keys?workspace=acme"))).await;
        if listed[0]["last_used_ms"].is_u64() {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(used, "last use never recorded");

    let (status, _) = call(alice.delete(server.http(&format!("/api/keys/{id}")))).await;
    assert_eq!(status, 200);
    let (code, reason) = client.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, 4403);
    assert_eq!(reason, format!("access revoked: API key {id} was revoked"));
    let (status, body) = call(with_key("/api/docs/acme/keyed")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], format!("API key {id} was revoked"));
    match Client::open_as(&server.ws("acme/keyed"), Some(&key)).await {
        Ok(_) => panic!("a revoked key opened a connection"),
        Err((status, body)) => {
            assert_eq!(status, 401);
            assert_eq!(error_of(&body), format!("API key {id} was revoked"));
        }
    }
}

#[tokio::test]
async fn a_client_over_its_update_rate_is_closed_with_the_limit_named() {
    let (_slapd, server) = start_limited(Some(5)).await;
    let (alice, _) = sign_in(&server, "alice", "alice-password").await;
    let url = format!(
        "{}?token={}",
        server.ws("acme/fast"),
        token(&server, &alice, "acme/fast").await
    );
    let mut client = Client::connect_as(&url, None)
        .await
        .expect("alice connects");
    // Far more than 5 a second with a burst of 5, sent at once.
    for _ in 0..50 {
        if !client.try_insert("x").await {
            break;
        }
    }
    let (code, reason) = client.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, 1008);
    assert_eq!(
        reason,
        "update rate limit exceeded: more than 5 updates/s (burst 5)"
    );
}
