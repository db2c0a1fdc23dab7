//! Bad input gets a clear close reason or 4xx, and loses nothing: the
//! offender is disconnected, everyone else keeps working, and the stored
//! document stays intact.

mod common;

use std::time::Duration;

use common::{Client, TestServer, text_update};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(10);

/// A real update whose array value is nested 100,000 levels deep. Plain yrs
/// overflows the stack decoding it and aborts the whole process.
fn deeply_nested_update() -> Vec<u8> {
    use yrs::{Any, Array, Doc, Transact};
    let doc = Doc::new();
    let arr = doc.get_or_insert_array("a");
    let mut txn = doc.transact_mut();
    arr.push_back(&mut txn, Any::Null);
    let mut bytes = txn.encode_update_v1();
    let at = bytes.iter().rposition(|&b| b == 126).unwrap();
    let nested: Vec<u8> = std::iter::repeat_n([117u8, 1], 100_000)
        .flatten()
        .chain([126])
        .collect();
    bytes.splice(at..at + 1, nested);
    bytes
}

/// Two well-behaved clients on `doc` with some content, and an attacker.
async fn scene(server: &TestServer, doc: &str) -> (Client, Client, Client) {
    let mut a = server.client(doc).await;
    let mut b = server.client(doc).await;
    a.insert("safe").await;
    assert!(b.pump_until(|c| c.text() == "safe", WAIT).await);
    let attacker = server.client(doc).await;
    (a, b, attacker)
}

/// After the attack: the others still collaborate and nothing was lost.
async fn others_unaffected(server: &TestServer, doc: &str, mut a: Client, mut b: Client) {
    b.insert("+more").await;
    assert!(
        a.pump_until(|c| c.text() == "safe+more", WAIT).await,
        "a: {}",
        a.text()
    );
    let content: serde_json::Value = reqwest::get(server.http(&format!("/api/docs/{doc}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(content["t"], "safe+more");
}

#[tokio::test]
async fn a_malformed_frame_closes_with_1002_and_names_the_problem() {
    let server = TestServer::start().await;
    let (a, b, mut attacker) = scene(&server, "malformed").await;
    // A sync update whose declared length runs past the end of the frame.
    attacker.send(vec![0, 2, 50, 1, 2, 3]).await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!(code, 1002);
    assert!(reason.starts_with("malformed frame"), "{reason}");
    assert_eq!(
        server
            .metric(r#"sync_disconnects_total{reason="bad_frame"}"#)
            .await,
        1.0
    );
    others_unaffected(&server, "malformed", a, b).await;
}

#[tokio::test]
async fn an_unknown_message_type_is_named() {
    let server = TestServer::start().await;
    let (a, b, mut attacker) = scene(&server, "unknown").await;
    attacker.send(vec![42, 0]).await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!((code, reason.as_str()), (1002, "unknown message type 42"));
    others_unaffected(&server, "unknown", a, b).await;
}

#[tokio::test]
async fn a_hostile_update_is_refused_and_the_process_stays_up() {
    let server = TestServer::start().await;
    let (a, b, mut attacker) = scene(&server, "hostile").await;
    attacker
        .send(crdt_core::wire::sync_update(&deeply_nested_update()))
        .await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!(code, 1007);
    assert!(
        reason.contains("nests values deeper than 64 levels"),
        "{reason}"
    );
    others_unaffected(&server, "hostile", a, b).await;
}

#[tokio::test]
async fn a_garbage_update_is_refused_with_1007() {
    let server = TestServer::start().await;
    let (a, b, mut attacker) = scene(&server, "garbage").await;
    // Valid framing, nonsense update: claims one client with structs that
    // are not there.
    attacker
        .send(crdt_core::wire::sync_update(&[1, 5, 1, 0, 200, 200, 200]))
        .await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.starts_with("malformed v1 update"), "{reason}");
    others_unaffected(&server, "garbage", a, b).await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let server = TestServer::start_with(|c| {
        c.docs.limits.max_frame_bytes = 64 * 1024;
        c.docs.limits.max_update_bytes = 64 * 1024;
    })
    .await;
    let (a, b, mut attacker) = scene(&server, "oversize").await;
    attacker
        .send(crdt_core::wire::sync_update(&vec![0u8; 100 * 1024]))
        .await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!(code, 1009);
    assert!(
        reason.contains("exceeds the limit of 65536 bytes"),
        "{reason}"
    );
    others_unaffected(&server, "oversize", a, b).await;
}

#[tokio::test]
async fn a_frame_far_beyond_the_limit_is_dropped_at_its_header_and_counted() {
    let server = TestServer::start_with(|c| {
        c.docs.limits.max_frame_bytes = 64 * 1024;
        c.docs.limits.max_update_bytes = 64 * 1024;
    })
    .await;
    let (a, b, attacker) = scene(&server, "huge").await;
    drop(attacker);
    // The server stops reading at the frame header and drops the
    // connection; the sender may see the close frame or only a reset.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws("huge"))
        .await
        .unwrap();
    let _reset = ws.send(WsMessage::Binary(vec![0u8; 4 << 20].into())).await;
    let mut refused = 0.0;
    for _ in 0..50 {
        refused = server
            .metric(r#"sync_disconnects_total{reason="frame_too_large"}"#)
            .await;
        if refused > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused, 1.0);
    others_unaffected(&server, "huge", a, b).await;
}

#[tokio::test]
async fn a_text_frame_closes_with_1003() {
    let server = TestServer::start().await;
    let (a, b, attacker) = scene(&server, "text").await;
    let url = server.ws("text");
    drop(attacker);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(WsMessage::Text("hello".into())).await.unwrap();
    let mut close = None;
    while let Some(Ok(message)) = futures_util::StreamExt::next(&mut ws).await {
        if let WsMessage::Close(frame) = message {
            close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    let (code, reason) = close.expect("close frame");
    assert_eq!(code, 1003);
    assert!(reason.contains("text frames are not supported"));
    others_unaffected(&server, "text", a, b).await;
}

#[tokio::test]
async fn a_bad_awareness_state_is_refused_before_others_parse_it() {
    let server = TestServer::start().await;
    let (a, mut b, mut attacker) = scene(&server, "awareness").await;
    attacker.set_presence(1, "{not json").await;
    let (code, reason) = attacker.expect_close(WAIT).await;
    assert_eq!(code, 1002);
    assert!(reason.contains("not valid JSON"), "{reason}");
    b.pump_for(Duration::from_millis(200)).await;
    assert!(b.presence.is_empty(), "the bad state was not relayed");
    others_unaffected(&server, "awareness", a, b).await;
}

#[tokio::test]
async fn bad_document_names_are_refused_with_400() {
    let server = TestServer::start().await;
    for (path, expected) in [
        ("/ws/has%20space", "document name contains ' '"),
        ("/api/docs/caf%C3%A9", "document name contains 'é'"),
    ] {
        let response = reqwest::get(server.http(path)).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().starts_with(expected),
            "{path}: {body}"
        );
    }
    let long = "a".repeat(256);
    let response = reqwest::get(server.http(&format!("/api/docs/{long}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn bad_http_updates_get_a_4xx_naming_the_problem() {
    let server = TestServer::start_with(|c| c.docs.limits.max_update_bytes = 1024).await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, query: &str| {
        http.post(server.http(&format!("/api/docs/api-doc/update{query}")))
            .body(body)
            .send()
    };
    let cases = [
        (post(vec![], "").await.unwrap(), 400, "empty body"),
        (
            post(vec![1, 2, 3], "").await.unwrap(),
            400,
            "malformed v1 update",
        ),
        (
            post(text_update("x"), "?v=2").await.unwrap(),
            400,
            "malformed v2 update",
        ),
        (
            post(text_update("x"), "?v=3").await.unwrap(),
            400,
            "v must be 1 or 2",
        ),
        (
            post(vec![0; 2048], "").await.unwrap(),
            413,
            "exceeds the limit of 1024 bytes",
        ),
    ];
    for (response, status, message) in cases {
        assert_eq!(response.status(), status, "{message}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
    // Nothing was stored.
    assert_eq!(
        reqwest::get(server.http("/api/docs/api-doc"))
            .await
            .unwrap()
            .status(),
        404
    );
}
