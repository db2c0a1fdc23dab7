//! The y-websocket protocol as stock clients see it: handshake, fan-out to
//! every other connection, coalescing, presence and read-only peers.

mod common;

use std::time::Duration;

use common::{Client, TestServer};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_clients_converge_and_nobody_gets_their_own_update_back() {
    let server = TestServer::start().await;
    let mut a = server.client("ws1/doc").await;
    let mut b = server.client("ws1/doc").await;

    a.insert("hello ").await;
    assert!(b.pump_until(|c| c.text() == "hello ", WAIT).await);
    b.insert("world").await;
    assert!(a.pump_until(|c| c.text() == "hello world", WAIT).await);

    // Neither saw an update frame for its own edit: a's only update frame
    // was b's, and b's only was a's.
    a.pump_for(Duration::from_millis(200)).await;
    b.pump_for(Duration::from_millis(200)).await;
    assert_eq!(a.update_frames, 2, "step 2 plus b's edit");
    assert_eq!(b.update_frames, 2, "step 2 plus a's edit");
}

#[tokio::test]
async fn a_late_joiner_receives_the_whole_document_in_step_2() {
    let server = TestServer::start().await;
    let mut a = server.client("late").await;
    for word in ["one ", "two ", "three"] {
        a.insert(word).await;
    }
    // Until the server answers something after the edits, they may not be
    // applied yet; a second client's handshake is that answer.
    let late = server.client("late").await;
    let mut late = late;
    assert!(late.pump_until(|c| c.text() == "one two three", WAIT).await);
}

#[tokio::test]
async fn a_burst_is_coalesced_into_fewer_frames() {
    let server = TestServer::start_with(|c| {
        // A fixed window makes the batching deterministic enough to count.
        c.docs.fanout_frames_per_sec = 1;
        c.docs.coalesce_max = Duration::from_millis(100);
    })
    .await;
    let mut writer = server.client("burst").await;
    let mut reader = server.client("burst").await;
    let frames_before = reader.update_frames;
    for i in 0..200 {
        writer.insert(&format!("{i},")).await;
    }
    let expected: String = (0..200).map(|i| format!("{i},")).collect();
    assert!(reader.pump_until(|c| c.text() == expected, WAIT).await);
    let frames = reader.update_frames - frames_before;
    assert!(frames < 20, "200 updates arrived in {frames} frames");
    assert_eq!(server.metric("sync_updates_received_total").await, 200.0);
}

#[tokio::test]
async fn presence_is_relayed_and_removed_when_a_connection_closes() {
    let server = TestServer::start().await;
    let mut a = server.client("presence").await;
    let mut b = server.client("presence").await;
    a.set_presence(1, r#"{"user":{"name":"Ada"}}"#).await;
    let a_id = a.doc.client_id().get();
    assert!(
        b.pump_until(|c| c.presence.get(&a_id).is_some_and(|s| s.is_some()), WAIT)
            .await,
        "b sees a"
    );

    // A newcomer is told who is here in its greeting.
    let mut c = server.client("presence").await;
    assert!(c.pump_until(|c| c.presence.contains_key(&a_id), WAIT).await);

    // The REST view agrees.
    let present: serde_json::Value = reqwest::get(server.http("/api/docs/presence/presence"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(present["present"][0]["state"]["user"]["name"], "Ada");
    assert_eq!(present["present"][0]["client_id"], a_id);

    // When a leaves, everyone is told at once (not after the 30 s timeout).
    a.close().await;
    assert!(
        b.pump_until(|c| c.presence.get(&a_id) == Some(&None), WAIT)
            .await,
        "b sees a leave"
    );
    assert!(
        c.pump_until(|c| c.presence.get(&a_id) == Some(&None), WAIT)
            .await
    );
}

#[tokio::test]
async fn presence_expires_without_renewal() {
    let server = TestServer::start_with(|c| c.docs.presence_timeout = Duration::from_secs(1)).await;
    let mut a = server.client("expiry").await;
    let mut b = server.client("expiry").await;
    a.set_presence(1, r#"{"n":1}"#).await;
    let a_id = a.doc.client_id().get();
    assert!(
        b.pump_until(|c| c.presence.get(&a_id).is_some_and(Option::is_some), WAIT)
            .await
    );
    // a stays connected but silent: its state expires server-side.
    assert!(
        b.pump_until(|c| c.presence.get(&a_id) == Some(&None), WAIT)
            .await
    );
}

#[tokio::test]
async fn query_awareness_is_answered_with_every_state() {
    let server = TestServer::start().await;
    let mut a = server.client("query").await;
    a.set_presence(1, r#"{"x":1}"#).await;
    let mut b = server.client("query").await;
    b.presence.clear();
    b.send(vec![3]).await;
    let a_id = a.doc.client_id().get();
    assert!(b.pump_until(|c| c.presence.contains_key(&a_id), WAIT).await);
}

#[tokio::test]
async fn a_read_only_peer_is_refused_writes_with_a_reason_and_the_document_is_unchanged() {
    let server = TestServer::start().await;
    let mut writer = server.client("ro").await;
    writer.insert("original").await;
    let mut viewer = Client::connect(&format!("{}?access=read", server.ws("ro"))).await;
    assert!(
        viewer.pump_until(|c| c.text() == "original", WAIT).await,
        "viewers read"
    );

    viewer.insert(" vandalism").await;
    assert!(viewer.pump_until(|c| !c.denied.is_empty(), WAIT).await);
    assert!(
        viewer.denied[0].contains("read-only"),
        "{:?}",
        viewer.denied
    );

    // Presence is still allowed for viewers.
    viewer.set_presence(1, r#"{"viewer":true}"#).await;
    let viewer_id = viewer.doc.client_id().get();
    assert!(
        writer
            .pump_until(|c| c.presence.contains_key(&viewer_id), WAIT)
            .await
    );

    let content: serde_json::Value = reqwest::get(server.http("/api/docs/ro"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(content["t"], "original");
    assert_eq!(server.metric("sync_writes_refused_total").await, 1.0);
}

#[tokio::test]
async fn idle_connections_get_keepalive_messages() {
    let server = TestServer::start_with(|c| c.keepalive_interval = Duration::from_secs(1)).await;
    let mut a = server.client("quiet").await;
    // Stable clients drop a socket that carried no message for 30 s; the
    // server sends an empty awareness message before that happens.
    let before = a.frames;
    a.pump_for(Duration::from_millis(2500)).await;
    assert!(a.frames > before, "no keepalive within 2.5 s");
    assert!(a.presence.is_empty(), "keepalives carry no presence");
    assert!(a.closed.is_none());
}
