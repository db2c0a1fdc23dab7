//! Large documents reach joiners as several valid updates of bounded size,
//! encoded once for everyone who joins together.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use yrs::{Doc, GetString, Text, Transact};

const WAIT: Duration = Duration::from_secs(30);

/// Writes `pieces` 1 KiB pieces (prepended, so they stay separate structs)
/// through the HTTP API, 1 MiB per update; returns the expected text.
async fn seed(server: &TestServer, doc: &str, pieces: usize) -> String {
    let source = Doc::new();
    let text = source.get_or_insert_text("t");
    let piece: String = (0..1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let http = reqwest::Client::new();
    for batch in 0..pieces.div_ceil(1024) {
        let update = {
            let mut txn = source.transact_mut();
            for _ in 0..1024.min(pieces - batch * 1024) {
                text.insert(&mut txn, 0, &piece);
            }
            txn.encode_update_v1()
        };
        let response = http
            .post(server.http(&format!("/api/docs/{doc}/update")))
            .body(update)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    text.get_string(&source.transact())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_document_syncs_in_bounded_chunks_and_is_encoded_once() {
    let server = TestServer::start_with(|c| c.docs.limits.max_sync_chunk_bytes = 256 * 1024).await;
    let expected = seed(&server, "big/doc", 3 * 1024).await;

    let mut joiners = Vec::new();
    for _ in 0..3 {
        joiners.push(Client::open(&server.ws("big/doc")).await);
    }
    for joiner in &mut joiners {
        joiner.handshake().await;
        assert!(joiner.pump_until(|c| c.text() == expected, WAIT).await);
        // 3 MiB in chunks of at most 256 KiB: a dozen update frames, the
        // last one being the step 2 that marks the client synced.
        assert!(
            joiner.update_frames >= 12,
            "{} frames",
            joiner.update_frames
        );
        assert!(
            joiner.largest_frame <= 256 * 1024 + 16,
            "largest {}",
            joiner.largest_frame
        );
    }
    let sent = server.metric("sync_bytes_sent_total").await;
    assert!(
        sent < 4.0 * 3.0 * 1024.0 * 1024.0,
        "three joiners, about three copies: {sent}"
    );
}
