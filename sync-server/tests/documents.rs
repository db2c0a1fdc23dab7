//! Document lifecycle: one owner per document even under a stampede,
//! state that survives restarts, compaction and idle unloading.

mod common;

use std::time::Duration;

use common::{Client, TestServer};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_racing_to_a_new_document_share_one() {
    let server = TestServer::start().await;
    let url = server.ws("stampede/new-doc");
    let joins = (0..100).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Client::connect(&url).await })
    });
    let mut clients = Vec::new();
    for join in joins {
        clients.push(join.await.unwrap());
    }
    assert_eq!(server.metric("sync_documents_loaded").await, 1.0);

    // Each writes once; every one of them must see all hundred edits.
    for (i, client) in clients.iter_mut().enumerate() {
        client.insert(&format!("<{i}>")).await;
    }
    let complete = |c: &Client| (0..100).all(|i| c.text().contains(&format!("<{i}>")));
    for client in &mut clients {
        assert!(
            client.pump_until(complete, WAIT).await,
            "a client missed edits"
        );
    }
    let first = clients[0].text();
    assert!(
        clients.iter().all(|c| c.text() == first),
        "all converge to one text"
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let server = TestServer::start().await;
    let mut a = server.client("durable").await;
    a.insert("kept across restarts").await;
    let mut b = server.client("durable").await;
    assert!(
        b.pump_until(|c| c.text() == "kept across restarts", WAIT)
            .await
    );
    drop((a, b));

    let data = server.stop().await;
    let server = TestServer::start_in(data, |_| {}).await;
    let mut c = server.client("durable").await;
    assert!(
        c.pump_until(|c| c.text() == "kept across restarts", WAIT)
            .await
    );
}

#[tokio::test]
async fn the_log_is_compacted_in_the_background_and_nothing_is_lost() {
    let server = TestServer::start_with(|c| c.docs.compact_after_updates = 50).await;
    let mut writer = server.client("compact").await;
    let mut expected = String::new();
    for i in 0..400 {
        let piece = format!("{i};");
        writer.insert(&piece).await;
        expected.push_str(&piece);
    }
    let mut reader = server.client("compact").await;
    assert!(reader.pump_until(|c| c.text() == expected, WAIT).await);
    let mut compactions = 0.0;
    for _ in 0..100 {
        compactions = server.metric("sync_compactions_total").await;
        if compactions >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(compactions >= 1.0, "no compaction ran");
    drop((writer, reader));

    let data = server.stop().await;
    let server = TestServer::start_in(data, |_| {}).await;
    let mut late = server.client("compact").await;
    assert!(late.pump_until(|c| c.text() == expected, WAIT).await);
}

#[tokio::test]
async fn an_idle_document_unloads_and_reloads_on_the_next_join() {
    let server = TestServer::start_with(|c| c.docs.idle_unload = Duration::from_secs(1)).await;
    let mut a = server.client("idle").await;
    a.insert("still here").await;
    a.pump_for(Duration::from_millis(100)).await;
    a.close().await;
    let mut loaded = 1.0;
    for _ in 0..50 {
        loaded = server.metric("sync_documents_loaded").await;
        if loaded == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(loaded, 0.0, "document unloaded");
    let mut b = server.client("idle").await;
    assert!(b.pump_until(|c| c.text() == "still here", WAIT).await);
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_with_1013_not_silently_skipped() {
    let server = TestServer::start_with(|c| {
        c.outbound_queue_frames = 4;
        c.outbound_queue_bytes = 64 * 1024;
    })
    .await;
    let mut writer = server.client("slow").await;
    // Reads nothing while the writer writes: its socket buffers fill, then
    // its queue. How much that takes depends on the kernel's buffers and on
    // how the server batches fan-out under load, so the writer writes in
    // growing rounds until the sleeper, reading what it was sent after each
    // round, finds the close.
    let mut sleeper = server.client("slow").await;
    let chunk = "x".repeat(32 * 1024);
    let (mut round, mut written) = (256, 0);
    let (code, reason) = loop {
        for _ in 0..round {
            writer.insert(&chunk).await;
        }
        written += round;
        writer.pump_for(Duration::from_millis(500)).await;
        sleeper.pump_for(Duration::from_secs(3)).await;
        if let Some(closed) = sleeper.closed.clone() {
            break closed;
        }
        assert!(written < 4096, "the server never closed the slow consumer");
        round *= 2;
    };
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("outbound queue overflow"), "{reason}");
    // It reconnects and resyncs: nothing was lost to it.
    let mut again = server.client("slow").await;
    assert!(
        again
            .pump_until(|c| c.text().len() == written * chunk.len(), WAIT)
            .await
    );
}
