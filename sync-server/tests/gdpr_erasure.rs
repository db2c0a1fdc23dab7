//! GDPR access and erasure, round trip, on a real server with several
//! authors: Alice, Bob and Carol write in `acme` (erasure mode remove, the
//! default) and Alice and Bob in `legal` (pseudonymise). The access report
//! shows Alice's account, role and text; erasing her deletes her text from
//! the live document, the stored state, the log and the versions of
//! `acme`, keeps it in `legal` under a pseudonym, ends her access, and is
//! on the audit trail without her name. Run on the embedded store and on
//! PostgreSQL (which holds documents, history, identity and the audit
//! trail alike).

mod common;
mod pg;

use std::time::Duration;

use argon2::PasswordHasher;
use argon2::password_hash::SaltString;

use std::sync::Arc;

use common::{Client, TestServer, call, open_store};
use pg::TestSchema;
use serde_json::{Value, json};
use sync_server::auth::AuthMethod;
use sync_server::auth::config::{IdentityConfig, IdentityFile};
use sync_server::auth::tokens::{Claims, ISSUER, TokenKind, TokenSigner, now_secs};
use sync_server::config::Config;
use sync_server::docs::DocName;
use sync_server::store::DocStore;
use tempfile::TempDir;

const SECRET: &str = "erasure-test-secret-0123456789abcdef";
const ALICE: &str = "ALICE-PERSONAL-TEXT ";

/// Sign-in is configured (a break-glass account is enough to leave
/// anonymous mode); the test's users hold sessions and document tokens
/// signed with the server's secret, exactly as a sign-in issues them.
fn identity() -> IdentityConfig {
    let salt = SaltString::encode_b64(b"test-salt-16byte").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"unused", &salt)
        .unwrap()
        .to_string();
    let text = format!(
        r#"
        token-secret = "{SECRET}"
        [break-glass]
        user = "root"
        password-argon2 = "{hash}"
        [[roles]]
        group = "dpo"
        workspace = "*"
        role = "owner"
        [[roles]]
        group = "staff"
        workspace = "acme"
        role = "editor"
        [[roles]]
        group = "staff"
        workspace = "legal"
        role = "editor"
        [[roles]]
        group = "staff"
        workspace = "hr"
        role = "editor"
        "#
    );
    let file: IdentityFile = toml::from_str(&text).expect("identity file");
    IdentityConfig::resolve(Some(file), None, None).expect("identity config")
}

/// A session cookie for `user`, as a sign-in sets it.
fn session(user: &str, group: &str) -> String {
    let now = now_secs();
    let token = TokenSigner::new(SECRET.as_bytes()).sign(&Claims {
        iss: ISSUER.into(),
        sub: user.into(),
        name: Some(format!("{user} (display name)")),
        groups: vec![group.into()],
        method: AuthMethod::Session,
        kind: TokenKind::Session,
        doc: None,
        ws: None,
        role: None,
        iat: now,
        exp: now + 3600,
    });
    format!("collab_session={token}")
}

/// An HTTP client with `user`'s session.
fn signed_in(user: &str, group: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", session(user, group).parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Where a server keeps documents, history, identity and the audit trail.
enum Backend {
    Sled,
    Postgres(TestSchema),
}

impl Backend {
    async fn start(&self) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        match self {
            Backend::Sled => TestServer::start_in(data, |c| c.identity = identity()).await,
            Backend::Postgres(schema) => {
                let mut config =
                    Config::resolve(schema.settings(data.path())).expect("valid settings");
                config.identity = identity();
                let store = schema.open().await;
                TestServer::serve(data, config, store).await
            }
        }
    }

    /// The document store of a stopped server, opened directly.
    async fn open(&self, data: &TempDir) -> Arc<dyn DocStore> {
        match self {
            Backend::Sled => open_store(data.path(), &Config::for_test(data.path())),
            Backend::Postgres(schema) => schema.open().await,
        }
    }
}

/// Asks `as_who` to erase Alice, confirming with `confirm`.
async fn erase(server: &TestServer, as_who: &reqwest::Client, confirm: &str) -> (u16, Value) {
    call(
        as_who
            .post(server.http("/api/erasures/alice"))
            .json(&json!({ "confirm": confirm })),
    )
    .await
}

/// A staff member's connection to `doc`, with a document token from
/// `/api/tokens` as the browser SDK gets one.
async fn author(server: &TestServer, user: &str, doc: &str) -> Client {
    let (status, body) = call(
        signed_in(user, "staff")
            .post(server.http("/api/tokens"))
            .json(&json!({ "document": doc })),
    )
    .await;
    assert_eq!(status, 200, "token for {user}: {body}");
    let token = body["token"].as_str().unwrap();
    Client::connect_as(&server.ws(doc), Some(token))
        .await
        .unwrap_or_else(|e| panic!("{user} connects to {doc}: {e:?}"))
}

async fn converge(clients: &mut [&mut Client], text: &str) {
    for client in clients.iter_mut() {
        let done = client
            .pump_until(|c| c.text() == text, Duration::from_secs(10))
            .await;
        assert!(done, "converged on {text:?}, have {:?}", client.text());
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_round_trip_on_sled() {
    erasure_removes_or_pseudonymises_by_workspace_and_is_audited(Backend::Sled).await;
}

/// Under a legal hold the erasure keeps content and attribution, says why,
/// and still ends the user's access.
#[tokio::test]
async fn a_legal_hold_keeps_content_and_attribution() {
    let server = Backend::Sled.start().await;
    let admin = signed_in("dpo", "dpo");
    let settings = server.http("/api/workspaces/hr/settings");
    let (status, body) = call(
        admin
            .patch(&settings)
            .json(&json!({ "erasure_mode": { "mode": "retain", "legal_basis": " " } })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "erasure mode retain needs a legal_basis");
    let (status, body) = call(
        admin
            .patch(&settings)
            .json(&json!({ "legal_hold": { "reason": "Case 17" } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["legal_hold"]["reason"], "Case 17");
    // Only an owner changes settings.
    let (status, _) = call(
        signed_in("bob", "staff")
            .patch(&settings)
            .json(&json!({ "legal_hold": null })),
    )
    .await;
    assert_eq!(status, 403);

    let mut alice = author(&server, "alice", "hr/file").await;
    alice.insert("HR note by Alice.").await;
    assert!(
        alice
            .pump_until(|c| c.text() == "HR note by Alice.", Duration::from_secs(5))
            .await
    );
    let mut plan = Value::Null;
    for _ in 0..100 {
        let (_, body) = call(admin.get(server.http("/api/reports/gdpr-erasure/alice"))).await;
        plan = body;
        if plan["documents"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(plan["held_workspaces"], json!(["hr"]), "{plan}");
    assert_eq!(plan["documents"][0]["mode"]["mode"], "retain", "{plan}");
    assert_eq!(
        plan["documents"][0]["mode"]["legal_basis"],
        "legal hold: Case 17"
    );

    let (status, done) = erase(&server, &admin, "alice").await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["documents"]["hr/file"]["deleted"], 0, "{done}");
    assert_eq!(done["documents"]["hr/file"]["connections_closed"], 1);
    assert_eq!(alice.expect_close(Duration::from_secs(5)).await.0, 4403);

    // Content and attribution stay: the access report still finds them.
    let (_, report) = call(admin.get(server.http("/api/reports/gdpr-access/alice"))).await;
    assert!(report.to_string().contains("HR note by Alice."), "{report}");
    let (_, audit) =
        call(admin.get(server.http("/api/audit?workspace=hr&action=user.erasure&limit=10"))).await;
    let recorded = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["details"]["mode"] == "retain")
        .unwrap_or_else(|| panic!("no retain entry in {audit}"));
    assert_eq!(
        recorded["event"]["details"]["legal_basis"],
        "legal hold: Case 17"
    );
    server.stop().await;
}

/// Edits whose attribution is still in memory (stored at the next
/// housekeeping) are erased too, though the plan cannot name their
/// document yet.
#[tokio::test]
async fn edits_not_yet_attributed_in_the_store_are_erased_too() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(data, |config| {
        config.identity = identity();
        config.docs.housekeeping_interval = Duration::from_secs(3600);
    })
    .await;
    let admin = signed_in("dpo", "dpo");
    let mut alice = author(&server, "alice", "acme/draft").await;
    let mut bob = author(&server, "bob", "acme/draft").await;
    alice.insert("Alice's fresh words. ").await;
    converge(&mut [&mut alice, &mut bob], "Alice's fresh words. ").await;
    bob.insert("Bob's.").await;
    converge(&mut [&mut alice, &mut bob], "Alice's fresh words. Bob's.").await;

    let (_, plan) = call(admin.get(server.http("/api/reports/gdpr-erasure/alice"))).await;
    assert_eq!(plan["documents"], json!([]), "nothing stored yet: {plan}");
    let (status, done) = erase(&server, &admin, "alice").await;
    assert_eq!(status, 200, "{done}");
    let draft = &done["documents"]["acme/draft"];
    assert_eq!(draft["unstored_edits"], true, "{done}");
    assert_eq!(draft["deleted"], "Alice's fresh words. ".len(), "{done}");
    assert_eq!(
        done["plan"]["documents"][0]["document"], "acme/draft",
        "recorded"
    );
    converge(&mut [&mut bob], "Bob's.").await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_round_trip_on_postgres() {
    let backend = Backend::Postgres(TestSchema::new());
    erasure_removes_or_pseudonymises_by_workspace_and_is_audited(backend).await;
}

async fn erasure_removes_or_pseudonymises_by_workspace_and_is_audited(backend: Backend) {
    let server = backend.start().await;
    let admin = signed_in("dpo", "dpo");

    // Legal pseudonymises; acme keeps the default, remove.
    let (status, body) = call(
        admin
            .patch(server.http("/api/workspaces/legal/settings"))
            .json(&json!({ "erasure_mode": { "mode": "pseudonymise" } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erasure_mode"]["mode"], "pseudonymise");
    // Alice also has an explicit role, which the erasure revokes.
    let (status, body) = call(
        admin
            .put(server.http("/api/workspaces/acme/members/alice"))
            .json(&json!({ "role": "editor" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Three authors in acme, two in legal.
    let mut alice = author(&server, "alice", "acme/plan").await;
    let mut bob = author(&server, "bob", "acme/plan").await;
    let mut carol = author(&server, "carol", "acme/plan").await;
    alice.insert(ALICE).await;
    converge(&mut [&mut alice, &mut bob, &mut carol], ALICE).await;
    bob.insert("bob wrote this; ").await;
    converge(
        &mut [&mut alice, &mut bob, &mut carol],
        &format!("{ALICE}bob wrote this; "),
    )
    .await;
    carol.insert("carol too.").await;
    let full = format!("{ALICE}bob wrote this; carol too.");
    converge(&mut [&mut alice, &mut bob, &mut carol], &full).await;

    let mut alice_legal = author(&server, "alice", "legal/contract").await;
    let mut bob_legal = author(&server, "bob", "legal/contract").await;
    alice_legal.insert("Clause by Alice. ").await;
    converge(&mut [&mut alice_legal, &mut bob_legal], "Clause by Alice. ").await;
    bob_legal.insert("Clause by Bob.").await;
    let contract = "Clause by Alice. Clause by Bob.";
    converge(&mut [&mut alice_legal, &mut bob_legal], contract).await;

    // A named version holds Alice's text too.
    let (status, body) = call(
        admin
            .post(server.http("/api/docs/acme/plan/versions"))
            .json(&json!({ "label": "before erasure" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The access report: account, role, and the text she wrote, in both
    // documents (once attribution is stored).
    let mut report = Value::Null;
    for _ in 0..100 {
        let (status, body) = call(admin.get(server.http("/api/reports/gdpr-access/alice"))).await;
        assert_eq!(status, 200, "{body}");
        report = body;
        if report["documents"].as_array().map_or(0, Vec::len) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report_text = report.to_string();
    assert_eq!(report["documents"].as_array().unwrap().len(), 2, "{report}");
    assert!(report_text.contains(ALICE.trim()), "{report}");
    assert!(report_text.contains("Clause by Alice."), "{report}");
    assert!(
        !report_text.contains("bob wrote"),
        "only Alice's text: {report}"
    );
    assert_eq!(report["current_roles"]["acme"], "editor", "{report}");
    assert_eq!(report["account"]["display_name"], "alice (display name)");

    // The plan says what happens where.
    let (status, plan) = call(admin.get(server.http("/api/reports/gdpr-erasure/alice"))).await;
    assert_eq!(status, 200, "{plan}");
    let modes: Vec<(String, String)> = plan["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let doc = d["document"].as_str().unwrap().to_owned();
            (doc, d["mode"]["mode"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(
        modes.contains(&("acme/plan".into(), "remove".into())),
        "{plan}"
    );
    assert!(
        modes.contains(&("legal/contract".into(), "pseudonymise".into())),
        "{plan}"
    );
    let pseudonym = plan["pseudonym"].as_str().unwrap().to_owned();

    // A wrong confirmation erases no one.
    let (status, body) = erase(&server, &admin, "bob").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "confirm must repeat the user id \"alice\" exactly"
    );
    // Only an owner may erase: Bob may not.
    let (status, body) = erase(&server, &signed_in("bob", "staff"), "alice").await;
    assert_eq!(status, 403, "{body}");

    let (status, done) = erase(&server, &admin, "alice").await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["outcome"]["failed"], json!({}), "{done}");
    let plan_doc = &done["documents"]["acme/plan"];
    assert_eq!(plan_doc["deleted"], ALICE.len(), "{done}");
    assert_eq!(plan_doc["connections_closed"], 1, "{done}");
    assert_eq!(plan_doc["versions_rewritten"], 1, "{done}");
    assert_eq!(done["documents"]["legal/contract"]["deleted"], 0, "{done}");
    assert_eq!(done["memberships_removed"], json!(["acme"]), "{done}");
    assert_eq!(done["account_deleted"], true, "{done}");

    // Her connections are closed, saying why; the others converge without
    // her text in acme and keep it in legal.
    let (code, reason) = alice.expect_close(Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4403, "access revoked: account erased")
    );
    let (code, _) = alice_legal.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, 4403);
    let without = "bob wrote this; carol too.";
    converge(&mut [&mut bob, &mut carol], without).await;
    bob_legal.pump_for(Duration::from_millis(200)).await;
    assert_eq!(bob_legal.text(), contract);

    // The version is rewritten too, and history names the pseudonym.
    let (status, versions) = call(admin.get(server.http("/api/docs/acme/plan/versions"))).await;
    assert_eq!(status, 200, "{versions}");
    let id = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["label"] == "before erasure")
        .and_then(|v| v["id"].as_u64())
        .unwrap_or_else(|| panic!("no named version in {versions}"));
    let (status, version) =
        call(admin.get(server.http(&format!("/api/docs/acme/plan/versions/{id}")))).await;
    assert_eq!(status, 200, "{version}");
    assert!(!version.to_string().contains(ALICE.trim()), "{version}");
    let (status, activity) = call(admin.get(server.http("/api/activity/legal"))).await;
    assert_eq!(status, 200, "{activity}");
    let activity = activity.to_string();
    assert!(!activity.contains("\"alice\""), "{activity}");
    assert!(activity.contains(&pseudonym), "{activity}");

    // The erasure is on the trail in each workspace and the server's
    // chain, naming her by pseudonym only.
    let (status, audit) =
        call(admin.get(server.http("/api/audit?action=user.erasure&limit=100"))).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let scopes: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter(|e| {
            e["event"]["details"]["documents"].is_array()
                || e["event"]["details"]["documents"].is_number()
        })
        .map(|e| e["event"]["workspace"].as_str().unwrap())
        .collect();
    assert!(
        scopes.contains("acme") && scopes.contains("legal"),
        "{audit}"
    );
    assert!(scopes.contains("@server"), "{audit}");
    for entry in entries {
        assert_eq!(
            entry["event"]["details"]["subject"],
            pseudonym.as_str(),
            "{entry}"
        );
        assert!(
            !entry["event"]["details"].to_string().contains("alice"),
            "{entry}"
        );
    }

    // After it, the access report finds nothing of hers; erasing again is
    // harmless.
    let (_, after) = call(admin.get(server.http("/api/reports/gdpr-access/alice"))).await;
    assert_eq!(after["documents"], json!([]), "{after}");
    assert_eq!(after["current_roles"], json!({}), "{after}");
    let (status, again) = erase(&server, &admin, "alice").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["documents"], json!({}), "{again}");

    // What is stored: no log entry, snapshot or version of acme holds her
    // text; legal keeps it, attributed to the pseudonym.
    for client in [bob, carol, bob_legal] {
        client.close().await;
    }
    let data = server.stop().await;
    let store = backend.open(&data).await;
    let plan_doc = DocName::parse("acme/plan").unwrap();
    let stored = store.load(&plan_doc).await.unwrap();
    assert!(stored.log.iter().all(|e| e.origin != "alice"));
    let snapshot = stored.snapshot.expect("compacted");
    assert!(!contains(&snapshot.state, ALICE.trim()));
    assert!(contains(&snapshot.state, "carol too."));
    for meta in store.versions(&plan_doc).await.unwrap() {
        let (_, state) = store.version(&plan_doc, meta.id).await.unwrap().unwrap();
        assert!(!contains(&state, ALICE.trim()), "version {}", meta.id);
    }
    let contract_doc = DocName::parse("legal/contract").unwrap();
    let stored = store.load(&contract_doc).await.unwrap();
    assert!(stored.log.iter().all(|e| e.origin != "alice"));
    let attribution = store.attribution(&contract_doc).await.unwrap();
    assert!(attribution.iter().all(|b| b.origin != "alice"));
    assert!(attribution.iter().any(|b| b.origin == pseudonym));
    store.close().await.unwrap();
}
