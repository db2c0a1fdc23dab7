//! Document history through the server: automatic and named versions
//! (REST and WebSocket), restores with clients connected, diffs with
//! authors, and the activity feed, across a restart.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Client, TestServer};
use crdt_core::wire::VersionRequest;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use yrs::updates::decoder::Decode;
use yrs::{GetString, Transact, Update};

const LIMIT: Duration = Duration::from_secs(15);

/// Versions are taken after one idle second in these tests.
async fn server() -> TestServer {
    TestServer::start_with(|c| c.docs.versions.idle = Duration::from_secs(1)).await
}

async fn get(server: &TestServer, path: &str) -> Value {
    let response = reqwest::get(server.http(path)).await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.http(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn versions(server: &TestServer, doc: &str) -> Vec<Value> {
    get(server, &format!("/api/docs/{doc}/versions")).await["versions"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls until `done` holds for the document's versions (bounded).
async fn versions_until(
    server: &TestServer,
    doc: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let list = versions(server, doc).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "versions never matched: {list:#?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

async fn activity(server: &TestServer, workspace: &str) -> Vec<Value> {
    get(server, &format!("/api/activity/{workspace}?limit=500")).await["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn versions_and_activity_survive_a_restart() {
    let server = server().await;
    let doc = "acme/plan";
    let mut alice = server.client(doc).await;
    alice.insert("hello").await;

    // Edits stop: an automatic version follows one idle second later.
    let auto = versions_until(&server, doc, |v| !v.is_empty()).await;
    assert_eq!(auto[0]["kind"], "auto");
    assert_eq!(auto[0]["author"], "system");

    let (status, named) = post(
        &server,
        &format!("/api/docs/{doc}/versions"),
        json!({ "label": "first draft", "description": "before review" }),
    )
    .await;
    assert_eq!(status, 201, "{named}");
    assert_eq!(named["kind"], "named");
    assert_eq!(named["label"], "first draft");

    // Over WebSocket too, with the message the SDK sends.
    alice.insert(" world").await;
    let request = VersionRequest {
        label: "from the editor".into(),
        description: None,
    };
    alice.send(request.frame()).await;
    let listed = versions_until(&server, doc, |v| {
        v.iter().any(|v| v["label"] == "from the editor")
    })
    .await;
    let from_ws = listed
        .iter()
        .find(|v| v["label"] == "from the editor")
        .unwrap()
        .clone();
    assert_eq!(from_ws["kind"], "named");
    assert_ne!(
        from_ws["author"], "http",
        "the connection's identity saves it"
    );
    alice.close().await;

    // A bad request is refused with a reason and saves nothing.
    let (status, refused) = post(
        &server,
        &format!("/api/docs/{doc}/versions"),
        json!({ "label": "" }),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"].as_str().unwrap().contains("label"),
        "{refused}"
    );

    let before = versions(&server, doc).await;
    let data = server.stop().await;
    let server = TestServer::start_in(data, |_| {}).await;
    let after = versions(&server, doc).await;
    let ids = |v: &[Value]| v.iter().map(|v| v["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "versions are durable");

    let id = named["id"].as_u64().unwrap();
    let version = get(&server, &format!("/api/docs/{doc}/versions/{id}")).await;
    assert_eq!(version["content"], json!({ "t": "hello" }));
    let id = from_ws["id"].as_u64().unwrap();
    let version = get(&server, &format!("/api/docs/{doc}/versions/{id}")).await;
    assert_eq!(
        version["content"],
        json!({ "t": "hello world" }),
        "includes the edit sent just before"
    );

    // The same version as a Yjs update, for stock clients.
    let bytes = reqwest::get(server.http(&format!("/api/docs/{doc}/versions/{id}?format=update")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let replica = yrs::Doc::new();
    let text = replica.get_or_insert_text("t");
    replica
        .transact_mut()
        .apply_update(Update::decode_v1(&bytes).unwrap())
        .unwrap();
    assert_eq!(text.get_string(&replica.transact()), "hello world");

    let missing = reqwest::get(server.http(&format!("/api/docs/{doc}/versions/999999999")))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let events = activity(&server, "acme").await;
    let seen = types(&events);
    for kind in ["join", "edit", "version", "leave"] {
        assert!(seen.contains(&kind), "{kind} missing from {seen:?}");
    }
    assert!(events.iter().all(|e| e["document"] == doc));
    let newest_first = events
        .windows(2)
        .all(|w| w[0]["id"].as_u64() > w[1]["id"].as_u64());
    assert!(newest_first);
    server.stop().await;
}

#[tokio::test]
async fn a_restore_reaches_every_connected_client_and_converges() {
    let server = server().await;
    let doc = "acme/restore";
    let mut alice = server.client(doc).await;
    let mut bob = server.client(doc).await;
    alice.insert("hello world").await;
    assert!(bob.pump_until(|c| c.text() == "hello world", LIMIT).await);
    let (_, v1) = post(
        &server,
        &format!("/api/docs/{doc}/versions"),
        json!({ "label": "v1" }),
    )
    .await;
    let v1 = v1["id"].as_u64().unwrap();

    alice.insert(", and more").await;
    bob.edit(&[(0, 5, "HELLO".into())]).await;
    assert!(
        alice
            .pump_until(|c| c.text() == "HELLO world, and more", LIMIT)
            .await,
        "{}",
        alice.text()
    );
    assert!(
        bob.pump_until(|c| c.text() == "HELLO world, and more", LIMIT)
            .await,
        "{}",
        bob.text()
    );

    let (status, restored) = post(
        &server,
        &format!("/api/docs/{doc}/versions/{v1}/restore"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["version"]["kind"], "restore");
    for client in [&mut alice, &mut bob] {
        assert!(
            client
                .pump_until(|c| c.text() == "hello world", LIMIT)
                .await,
            "a connected client sees the restore: {}",
            client.text()
        );
    }

    // A restore racing an edit: everyone still ends with the same text.
    let restore = {
        let url = server.http(&format!("/api/docs/{doc}/versions/{v1}/restore"));
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    alice.edit(&[(5, 0, " there".into())]).await;
    assert_eq!(restore.await.unwrap(), 200);
    let server_text = || async {
        get(&server, &format!("/api/docs/{doc}")).await["t"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let deadline = Instant::now() + LIMIT;
    loop {
        alice.pump_for(Duration::from_millis(50)).await;
        bob.pump_for(Duration::from_millis(50)).await;
        let expected = server_text().await;
        if alice.text() == expected && bob.text() == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {:?} {:?} {expected:?}",
            alice.text(),
            bob.text()
        );
    }

    let events = activity(&server, "acme").await;
    let restores = events.iter().filter(|e| e["type"] == "restore").count();
    assert_eq!(restores, 2);
    let restore_versions = versions(&server, doc)
        .await
        .iter()
        .filter(|v| v["kind"] == "restore")
        .count();
    assert_eq!(restore_versions, 2);

    let missing = reqwest::Client::new()
        .post(server.http(&format!("/api/docs/{doc}/versions/424242/restore")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

/// `(position, deleted, inserted)` patches of the first `count` transactions
/// of a real editing trace.
fn trace(count: usize) -> Vec<Vec<(u32, u32, String)>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../test-data/editing-traces/automerge-paper.json.gz"
    );
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut json)
        .unwrap();
    let trace: Value = serde_json::from_str(&json).unwrap();
    trace["txns"]
        .as_array()
        .unwrap()
        .iter()
        .take(count)
        .map(|txn| {
            txn["patches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let pos = p[0].as_u64().unwrap() as u32;
                    let del = p[1].as_u64().unwrap() as u32;
                    (pos, del, p[2].as_str().unwrap().to_owned())
                })
                .collect()
        })
        .collect()
}

fn joined(runs: &[Value], keep: &[&str]) -> String {
    runs.iter()
        .filter(|r| keep.contains(&r["change"].as_str().unwrap()))
        .map(|r| r["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_diff_of_a_replayed_trace_matches_the_text_and_names_the_authors() {
    let server = server().await;
    let doc = "acme/paper";
    let txns = trace(3000);
    let (first, second) = txns.split_at(1500);

    // Alice writes the first half; Bob, on the same document, the second.
    let mut alice = server.client(doc).await;
    for txn in first {
        alice.edit(txn).await;
    }
    let half_text = alice.text();
    let mut bob = server.client(doc).await;
    assert!(bob.pump_until(|c| c.text() == half_text, LIMIT).await);
    let (_, half) = post(
        &server,
        &format!("/api/docs/{doc}/versions"),
        json!({ "label": "half" }),
    )
    .await;
    for txn in second {
        bob.edit(txn).await;
    }
    let end_text = bob.text();
    assert!(alice.pump_until(|c| c.text() == end_text, LIMIT).await);
    let (_, end) = post(
        &server,
        &format!("/api/docs/{doc}/versions"),
        json!({ "label": "end" }),
    )
    .await;

    // Attribution is stored on the document's next housekeeping tick.
    let (half, end) = (half["id"].as_u64().unwrap(), end["id"].as_u64().unwrap());
    let deadline = Instant::now() + LIMIT;
    let diff = loop {
        let diff = get(
            &server,
            &format!("/api/docs/{doc}/diff?from={half}&to={end}"),
        )
        .await;
        if diff["authors"].as_object().is_some_and(|a| !a.is_empty()) {
            break diff;
        }
        assert!(Instant::now() < deadline, "attribution never stored");
        sleep(Duration::from_millis(100)).await;
    };
    let runs = diff["roots"]["t"]["runs"].as_array().unwrap();
    assert_eq!(diff["roots"]["t"]["kind"], "text");
    assert_eq!(
        joined(runs, &["unchanged", "deleted"]),
        half_text,
        "the earlier text"
    );
    assert_eq!(
        joined(runs, &["unchanged", "inserted"]),
        end_text,
        "the later text"
    );

    let author_of = |change: &str, field: &str| -> Vec<String> {
        let mut names: Vec<String> = runs
            .iter()
            .filter(|r| r["change"] == change)
            .map(|r| r[field].as_str().unwrap_or("<nobody>").to_owned())
            .collect();
        names.dedup();
        names.sort();
        names.dedup();
        names
    };
    let inserted_by = author_of("inserted", "author");
    let written_by = author_of("deleted", "author");
    assert_eq!(inserted_by.len(), 1, "only Bob inserted: {inserted_by:?}");
    assert_eq!(
        written_by.len(),
        1,
        "only Alice's text was there to delete: {written_by:?}"
    );
    assert_ne!(inserted_by, written_by);
    assert_eq!(
        author_of("deleted", "deleted_by"),
        inserted_by,
        "Bob deleted it, and the diff says so"
    );
    let bob_name = &inserted_by[0];
    let inserted_chars: usize = runs
        .iter()
        .filter(|r| r["change"] == "inserted")
        .map(|r| r["text"].as_str().unwrap().chars().count())
        .sum();
    assert_eq!(diff["authors"][bob_name]["inserted"], inserted_chars);

    // Against the current state too.
    let current = get(&server, &format!("/api/docs/{doc}/diff?from={end}")).await;
    assert_eq!(current["to"], "current");
    assert_eq!(current["roots"], json!({}), "nothing changed since");
    let bad = reqwest::get(server.http(&format!("/api/docs/{doc}/diff")))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn activity_streams_live_over_server_sent_events() {
    let server = server().await;
    let mut stream = reqwest::get(server.http("/api/activity/live/stream"))
        .await
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut other = server.client("elsewhere/doc").await;
    other.insert("not this workspace").await;
    let mut client: Client = server.client("live/doc").await;
    client.insert("hi").await;

    let mut seen = String::new();
    let deadline = Instant::now() + LIMIT;
    while !(seen.contains("event: join") && seen.contains("event: edit")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("stream stays open");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("\"document\":\"live/doc\""), "{seen}");
    assert!(
        !seen.contains("elsewhere"),
        "other workspaces' events are not streamed: {seen}"
    );
    server.stop().await;
}
