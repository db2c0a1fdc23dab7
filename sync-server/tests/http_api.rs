//! The HTTP API: content as JSON, state in and out as Yjs updates (v1 and
//! v2), presence, health, readiness and metrics.

mod common;

use std::time::Duration;

use common::{TestServer, text_update};
use yrs::updates::decoder::Decode;
use yrs::{GetString, Map, Transact, Update};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_http_update_is_durable_and_reaches_connected_clients() {
    let server = TestServer::start().await;
    let mut watcher = server.client("team/notes").await;
    let http = reqwest::Client::new();
    let response = http
        .post(server.http("/api/docs/team/notes/update"))
        .body(text_update("from http"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(watcher.pump_until(|c| c.text() == "from http", WAIT).await);

    // v2 in, v2 out.
    let v2 = {
        let doc = yrs::Doc::new();
        let meta = doc.get_or_insert_map("meta");
        let mut txn = doc.transact_mut();
        meta.insert(&mut txn, "title", "Plans");
        txn.encode_update_v2()
    };
    let response = http
        .post(server.http("/api/docs/team/notes/update?v=2"))
        .body(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let content: serde_json::Value = reqwest::get(server.http("/api/docs/team/notes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        content,
        serde_json::json!({"t": "from http", "meta": {"title": "Plans"}})
    );

    for (query, decode) in [
        ("", Update::decode_v1 as fn(&[u8]) -> _),
        ("?v=2", Update::decode_v2),
    ] {
        let bytes = reqwest::get(server.http(&format!("/api/docs/team/notes/update{query}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let doc = yrs::Doc::new();
        doc.transact_mut()
            .apply_update(decode(&bytes).unwrap())
            .unwrap();
        let text = doc.get_or_insert_text("t");
        assert_eq!(
            text.get_string(&doc.transact()),
            "from http",
            "query {query:?}"
        );
    }
}

#[tokio::test]
async fn names_ending_in_an_action_are_reached_with_an_escaped_slash() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let response = http
        .post(server.http("/api/docs/team%2Fupdate/update"))
        .body(text_update("odd name"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let content: serde_json::Value = reqwest::get(server.http("/api/docs/team%2Fupdate"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(content["t"], "odd name");
    // The same document over WebSocket, where the name is the whole path.
    let mut client = server.client("team/update").await;
    assert!(client.pump_until(|c| c.text() == "odd name", WAIT).await);
}

#[tokio::test]
async fn unknown_documents_are_404_and_post_elsewhere_is_400() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.http("/api/docs/nobody/here"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "document does not exist");
    let response = reqwest::Client::new()
        .post(server.http("/api/docs/some-doc"))
        .body(text_update("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.http("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = reqwest::get(server.http("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["store"]["kind"], "sled");

    let mut a = server.client("metrics").await;
    let mut b = server.client("metrics").await;
    a.insert("x").await;
    assert!(b.pump_until(|c| c.text() == "x", WAIT).await);
    let metrics = reqwest::get(server.http("/metrics")).await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    for series in [
        "sync_connections 2",
        "sync_documents_loaded 1",
        "sync_updates_received_total 1",
        "sync_updates_delivered_total 1",
        "sync_fanout_latency_seconds_count 1",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(series), "missing {series:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn the_built_in_page_is_served() {
    let server = TestServer::start().await;
    let page = reqwest::get(server.http("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("WebsocketProvider"),
        "the page runs stock y-websocket clients"
    );
}
