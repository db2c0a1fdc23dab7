//! The break-glass administrator: off unless configured, signs in with
//! its argon2-hashed password when the identity provider is down, is the
//! owner everywhere, and leaves every use on the audit trail.

mod common;

use argon2::PasswordHasher;
use argon2::password_hash::SaltString;
use common::{TestServer, call};
use serde_json::json;
use sync_server::auth::config::{IdentityConfig, IdentityFile};

async fn server(break_glass: bool) -> TestServer {
    let salt = SaltString::encode_b64(b"test-salt-16byte").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    let mut text = String::from("token-secret = \"break-glass-test-secret-0123456789\"\n");
    if break_glass {
        text.push_str(&format!(
            "[break-glass]\nuser = \"root\"\npassword-argon2 = \"{hash}\"\n"
        ));
    }
    let file: IdentityFile = toml::from_str(&text).unwrap();
    let identity = IdentityConfig::resolve(Some(file), None, None).unwrap();
    TestServer::start_with(move |config| config.identity = identity).await
}

#[tokio::test]
async fn break_glass_signs_in_as_owner_and_is_audited() {
    let server = server(true).await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let url = server.http("/auth/break-glass");

    let (status, body) = call(
        browser
            .post(&url)
            .json(&json!({ "user": "root", "password": "wrong" })),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error"],
        "sign-in failed: invalid break-glass user or password (root)"
    );

    let (status, body) = call(
        browser
            .post(&url)
            .json(&json!({ "user": "root", "password": "correct horse" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, me) = call(browser.get(server.http("/auth/me"))).await;
    assert_eq!(status, 200);
    assert_eq!(me["method"], "break_glass");

    // Owner of everything: may grant roles anywhere.
    let (status, body) = call(
        browser
            .put(server.http("/api/workspaces/acme/members/someone"))
            .json(&json!({ "role": "owner" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Both attempts are on the trail, and what it did is attributed to it.
    let mut found = false;
    for _ in 0..50 {
        let (status, trail) = call(browser.get(server.http("/api/audit?limit=100"))).await;
        assert_eq!(status, 200, "{trail}");
        let text = trail.to_string();
        if text.contains("auth.sign_in_failed")
            && text.contains("\"auth.sign_in\"")
            && text.contains("role.grant")
            && text.contains("break-glass|root")
        {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found, "the break-glass sign-ins are not on the audit trail");
}

#[tokio::test]
async fn break_glass_is_off_unless_configured() {
    let server = server(false).await;
    let (status, body) = call(
        reqwest::Client::new()
            .post(server.http("/auth/break-glass"))
            .json(&json!({ "user": "root", "password": "correct horse" })),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "break-glass sign-in is off");
}
