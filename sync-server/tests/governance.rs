//! Governance through the running server: every kind of operation leaves
//! its audit entry, policies refuse with messages naming them, lineage
//! follows copies and exports, and `sync-server audit verify` names a
//! tampered entry.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Client, TestServer, text_update};
use serde_json::Value;

async fn get_json(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn audit(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, body) = get_json(server.http(&format!("/api/audit?{query}"))).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

fn actions(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e["event"]["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits for background records (disconnects, refusals) to land.
async fn audit_until(server: &TestServer, query: &str, action: &str) -> Vec<Value> {
    for _ in 0..100 {
        let entries = audit(server, query).await;
        if actions(&entries).contains(action) {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {action} entry for {query}");
}

#[tokio::test]
async fn every_kind_of_operation_leaves_its_audit_entry() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();

    // A WebSocket edit, and a read-only peer's refused edit.
    let mut writer = server.client("acme/plan").await;
    writer.insert("hello").await;
    writer
        .pump_until(|_| false, Duration::from_millis(300))
        .await;
    let mut reader = Client::connect(&format!("{}?access=read", server.ws("acme/plan"))).await;
    reader.handshake().await;
    reader.insert("sneaky").await;
    reader.pump_for(Duration::from_millis(200)).await;

    // REST: a read, an export, a write, a named version, a copy.
    let base = "/api/docs/acme/plan";
    assert_eq!(reqwest::get(server.http(base)).await.unwrap().status(), 200);
    let state = reqwest::get(server.http(&format!("{base}/update")))
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
    let written = http
        .post(server.http(&format!("{base}/update")))
        .body(text_update(" world"))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 204);
    let saved = http
        .post(server.http(&format!("{base}/versions")))
        .body(r#"{"label": "draft"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let copied = http
        .post(server.http("/api/docs/acme/plan-copy/copy?source=acme/plan"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), 200, "{}", copied.text().await.unwrap());
    writer.close().await;
    reader.close().await;

    let entries = audit_until(&server, "workspace=acme&limit=1000", "connection.close").await;
    let seen = actions(&entries);
    for expected in [
        "connection.open",
        "update.accepted",
        "update.refused",
        "document.read",
        "document.export",
        "document.create",
        "document.copy",
        "connection.close",
    ] {
        assert!(seen.contains(expected), "no {expected} in {seen:?}");
    }
    // An accepted update names its size and hash; the refusal its reason.
    let accepted = entries
        .iter()
        .find(|e| e["event"]["action"] == "update.accepted")
        .unwrap();
    assert_eq!(accepted["event"]["document"], "acme/plan");
    assert!(accepted["event"]["details"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        accepted["event"]["details"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let refused = entries
        .iter()
        .find(|e| e["event"]["action"] == "update.refused")
        .unwrap();
    assert_eq!(
        refused["event"]["outcome"]["reason"],
        "read-only access: document updates are not permitted"
    );

    // Filters and paging.
    let only_opens = audit(&server, "workspace=acme&action=connection.open").await;
    assert_eq!(
        actions(&only_opens),
        BTreeSet::from(["connection.open".to_owned()])
    );
    let first = get_json(server.http("/api/audit?workspace=acme&limit=2"))
        .await
        .1;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let second = audit(&server, &format!("workspace=acme&limit=2&after={next}")).await;
    assert_ne!(first["entries"][0], second[0]);
    let (status, body) = get_json(server.http("/api/audit?action=nonsense")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown audit action \"nonsense\"")
    );

    // Exports for a SIEM: JSON Lines and CSV of the same entries (up to
    // now: background records may still land).
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let jsonl = reqwest::get(server.http(&format!(
        "/api/audit?workspace=acme&to={until}&format=jsonl"
    )))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= entries.len());
    let csv =
        reqwest::get(server.http(&format!("/api/audit?workspace=acme&to={until}&format=csv")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(
        csv.lines().count(),
        lines.len() + 1,
        "a header and one row each"
    );

    // The trail verifies, and reading it was audited too.
    let (status, verified) = get_json(server.http("/api/audit/verify")).await;
    assert_eq!(status, 200);
    assert_eq!(verified["ok"], true, "{verified}");
    let reads = audit(&server, "action=audit.search,audit.export").await;
    assert!(reads.len() >= 3, "{reads:?}");

    // Lineage: the copy and the export.
    let (status, graph) = get_json(server.http("/api/lineage/acme/plan")).await;
    assert_eq!(status, 200);
    let text = graph.to_string();
    assert!(text.contains("acme/plan-copy"), "{graph}");
    assert!(text.contains("export"), "{graph}");
    server.stop().await;
}

#[tokio::test]
async fn a_confidential_workspace_cannot_be_exported_and_the_denial_is_audited() {
    let server = TestServer::start_with(|c| {
        c.governance
            .labels
            .entry("vault".into())
            .or_default()
            .insert("confidential".into());
    })
    .await;
    let mut writer = server.client("vault/secrets").await;
    writer.insert("classified").await;
    writer.pump_for(Duration::from_millis(300)).await;
    let response = reqwest::get(server.http("/api/docs/vault/secrets/update"))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        "denied by policy \"governance.confidential-no-export\": workspaces labelled confidential cannot be exported"
    );
    // Reading is still allowed; exporting elsewhere by copy is not.
    assert_eq!(
        reqwest::get(server.http("/api/docs/vault/secrets"))
            .await
            .unwrap()
            .status(),
        200
    );
    let copy = reqwest::Client::new()
        .post(server.http("/api/docs/open/leak/copy?source=vault/secrets"))
        .send()
        .await
        .unwrap();
    assert_eq!(copy.status(), 403);
    let denied = audit(&server, "workspace=vault&action=document.export").await;
    assert!(
        denied
            .iter()
            .any(|e| e["event"]["outcome"]["kind"] == "denied"
                && e["event"]["outcome"]["policy"] == "governance.confidential-no-export"),
        "{denied:?}"
    );
    writer.close().await;
    server.stop().await;
}

/// An IANA zone (`Etc/GMT±N`) where it is now 03:00–03:59, always outside
/// business hours.
fn zone_where_it_is_night() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let utc_hour = ((now / 3600) % 24) as i64;
    // local = utc + offset; Etc/GMT-N means UTC+N.
    let mut offset = 3 - utc_hour;
    if offset < -12 {
        offset += 24;
    }
    if offset > 14 {
        offset -= 24;
    }
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

#[tokio::test]
async fn outside_business_hours_writes_are_refused_naming_the_policy() {
    let server = TestServer::start_with(|c| {
        c.governance
            .labels
            .entry("bank".into())
            .or_default()
            .insert("business-hours-only".into());
        c.governance.policy.time_zone = zone_where_it_is_night();
    })
    .await;
    let mut client = server.client("bank/ledger").await;
    client.insert("transfer").await;
    client.pump_for(Duration::from_millis(300)).await;
    let (_, content) = get_json(server.http("/api/docs/bank/ledger")).await;
    assert_ne!(
        content["t"], "transfer",
        "the write must not land: {content}"
    );

    let refused = audit_until(&server, "workspace=bank", "update.refused").await;
    let entry = refused
        .iter()
        .find(|e| e["event"]["action"] == "update.refused")
        .unwrap();
    assert_eq!(
        entry["event"]["outcome"]["policy"],
        "governance.business-hours-only"
    );
    assert_eq!(
        entry["event"]["outcome"]["reason"],
        "denied by policy \"governance.business-hours-only\": documents in this workspace are read-only outside business hours (Monday to Friday, 09:00 to 18:00)"
    );
    // The REST write path says the same.
    let response = reqwest::Client::new()
        .post(server.http("/api/docs/bank/ledger/update"))
        .body(text_update("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn the_cli_verifies_the_trail_and_names_a_removed_entry() {
    let server = TestServer::start().await;
    let mut client = server.client("acme/notes").await;
    for word in ["one", "two", "three"] {
        client.insert(word).await;
        client.pump_for(Duration::from_millis(100)).await;
    }
    client.close().await;
    let entries = audit_until(&server, "workspace=acme", "connection.close").await;
    assert!(entries.len() >= 5);
    let data = server.stop().await;

    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["audit", "verify", "--workspace", "acme"])
            .output()
            .unwrap()
    };
    let clean = verify();
    assert!(
        clean.status.success(),
        "{}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );

    // Remove entry 3 behind the server's back.
    {
        let db = sled::open(data.path().join("audit")).unwrap();
        let tree = db.open_tree("governance").unwrap();
        let mut key = vec![b'E'];
        key.extend_from_slice(b"acme\0");
        key.extend_from_slice(&3u64.to_be_bytes());
        assert!(tree.remove(key).unwrap().is_some(), "entry 3 exists");
        db.flush().unwrap();
    }
    let tampered = verify();
    assert_eq!(tampered.status.code(), Some(1));
    let out = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        out.contains(
            "workspace \"acme\", entry 3: removed: the chain goes from entry 2 to entry 4"
        ),
        "{out}"
    );
}

/// The retention sweeper skips a workspace under a legal hold: with
/// `--history-retention '*=named'`, an unnamed version goes everywhere
/// except in the held workspace.
#[tokio::test]
async fn a_legal_hold_stops_the_history_sweep() {
    let server = TestServer::start_with(|config| {
        config.retention = sync_server::history::Retention::parse(&["*=named".into()]).unwrap();
        config.retention_sweep = Duration::from_millis(200);
    })
    .await;
    let http = reqwest::Client::new();
    let response = http
        .patch(server.http("/api/workspaces/court/settings"))
        .json(&serde_json::json!({ "legal_hold": { "reason": "Case 9" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    for doc in ["team/notes", "court/minutes"] {
        let response = http
            .post(server.http(&format!("/api/docs/{doc}/update")))
            .body(text_update("text"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{doc}");
        let saved: Value = http
            .post(server.http(&format!("/api/docs/{doc}/versions")))
            .json(&serde_json::json!({ "label": "kept" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = saved["id"].as_u64().unwrap();
        // A restore makes an unnamed version, which `named` retention
        // deletes.
        let response = http
            .post(server.http(&format!("/api/docs/{doc}/versions/{id}/restore")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{doc}");
    }
    let kinds = |doc: &'static str| {
        let url = server.http(&format!("/api/docs/{doc}/versions"));
        async move {
            let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            body["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["kind"].as_str().unwrap().to_owned())
                .collect::<BTreeSet<_>>()
        }
    };
    let mut swept = false;
    for _ in 0..100 {
        if !kinds("team/notes").await.contains("restore") {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "the sweep never removed team's restore version");
    assert_eq!(
        kinds("court/minutes").await,
        BTreeSet::from(["named".to_owned(), "restore".to_owned()]),
        "the held workspace keeps everything"
    );
    server.stop().await;
}
