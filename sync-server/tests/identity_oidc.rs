//! Sign-in through a real OpenID Connect provider (oidc-provider on
//! loopback): bearer tokens on the WebSocket and the HTTP API, each way a
//! token is refused with its exact error, key rotation, document tokens
//! scoped to one document, and a viewer whose updates are refused.

mod common;
#[allow(dead_code)]
#[path = "../../connectors/tests/support/oidc_browser.rs"]
mod oidc_browser;
#[allow(dead_code)]
#[path = "../../connectors/tests/support/oidc_provider.rs"]
mod oidc_provider;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Client, TestServer, error_of};
use oidc_browser::{browser, follow_to_callback, query, tokens_for};
use oidc_provider::OidcTestProvider;
use serde::Deserialize;
use sync_server::auth::config::{IdentityConfig, IdentityFile};
use sync_server::auth::tokens::{Claims, ISSUER, TokenKind, TokenSigner};
use sync_server::auth::{AuthMethod, Role};
use url::Url;

const SECRET: &str = "identity-test-secret-0123456789abcdef";

/// The server's identity file for `idp`: access tokens for the API
/// resource only; alice (eng-admins) edits `acme`, bob (staff) views it.
fn identity(idp: &OidcTestProvider) -> IdentityConfig {
    let text = format!(
        r#"
        token-secret = "{SECRET}"
        token-max-ttl-secs = 600
        [[oidc]]
        name = "test"
        issuer-url = "{issuer}"
        client-id = "collab-web"
        client-secret = "collab-web-secret"
        redirect-url = "{redirect}"
        audiences = ["{resource}"]
        groups-claim = "groups"
        scopes = ["email", "profile", "groups"]
        [[roles]]
        group = "eng-admins"
        workspace = "acme"
        role = "editor"
        [[roles]]
        group = "staff"
        workspace = "acme"
        role = "viewer"
        "#,
        issuer = idp.issuer,
        redirect = idp.redirect_uri,
        resource = idp.resource,
    );
    let file: IdentityFile = toml::from_str(&text).expect("identity file");
    IdentityConfig::resolve(Some(file), None, None).expect("identity config")
}

async fn server(idp: &OidcTestProvider) -> TestServer {
    let identity = identity(idp);
    TestServer::start_with(move |config| config.identity = identity).await
}

/// `GET path` with a bearer token: status and the `error` of the body.
async fn get(server: &TestServer, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(server.http(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn refused(server: &TestServer, doc: &str, bearer: Option<&str>) -> (u16, String) {
    match Client::open_as(&server.ws(doc), bearer).await {
        Ok(_) => panic!("the upgrade to {doc} was accepted"),
        Err((status, body)) => (status, error_of(&body)),
    }
}

#[tokio::test]
async fn bearer_tokens_open_documents_within_the_role_and_bad_ones_are_named() {
    let idp = OidcTestProvider::start().await;
    let server = server(&idp).await;
    let alice = tokens_for(&idp, "alice").await;

    // No credential at all.
    let (status, error) = refused(&server, "acme/plan", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        error,
        "authentication required: send Authorization: Bearer <token>, ?token=<token> or the session cookie"
    );

    // A valid access token: alice edits.
    let mut editor = Client::connect_as(&server.ws("acme/plan"), Some(&alice.access_token))
        .await
        .expect("alice connects");
    editor.insert("hello").await;

    // A tampered signature (one character inside it changed, so it is
    // still well-formed base64url).
    let at = alice.access_token.rfind('.').unwrap() + 10;
    let mut tampered = alice.access_token.clone();
    let was = tampered.as_bytes()[at];
    tampered.replace_range(at..=at, if was == b'A' { "B" } else { "A" });
    let (status, error) = refused(&server, "acme/plan", Some(&tampered)).await;
    assert_eq!(
        (status, error.as_str()),
        (401, "invalid bearer token: token signature is invalid")
    );

    // The ID token is for the SPA client, not for this API.
    let (status, error) = refused(&server, "acme/plan", Some(&alice.id_token)).await;
    assert_eq!(status, 401);
    assert_eq!(
        error,
        format!(
            "invalid bearer token: token audience [\"collab-spa\"] does not include any of [{:?}]",
            idp.resource
        )
    );

    // Bob is a viewer: connected, but his update is refused with a reason
    // and the document does not change.
    let bob = tokens_for(&idp, "bob").await;
    let url = format!("{}?token={}", server.ws("acme/plan"), bob.access_token);
    let mut viewer = Client::connect_as(&url, None).await.expect("bob connects");
    assert!(
        viewer
            .pump_until(|c| c.text() == "hello", Duration::from_secs(10))
            .await
    );
    viewer.insert(" from bob").await;
    assert!(
        viewer
            .pump_until(|c| !c.denied.is_empty(), Duration::from_secs(10))
            .await,
        "no permission-denied message for the viewer"
    );
    assert!(viewer.denied[0].contains("editor"), "{:?}", viewer.denied);
    // The editor's next edit reaches the viewer; the viewer's never did.
    editor.insert("!").await;
    assert!(
        viewer
            .pump_until(|c| c.text().contains('!'), Duration::from_secs(10))
            .await
    );
    let (status, body) = get(&server, "/api/docs/acme/plan", Some(&alice.access_token)).await;
    assert_eq!(status, 200, "{body}");
    let content: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(content["t"], "hello!", "{body}");

    // Someone with no role in the workspace is refused by policy.
    let (status, _) = refused(&server, "other/doc", Some(&bob.access_token)).await;
    assert_eq!(status, 403);

    // Key rotation: a token signed with the new key is accepted.
    let kid = idp.rotate_keys().await;
    let rotated = tokens_for(&idp, "alice").await;
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(rotated.access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid.as_str());
    let (status, body) = get(&server, "/api/docs/acme/plan", Some(&rotated.access_token)).await;
    assert_eq!(status, 200, "{body}");
    // ...and one signed with the old key still is, while it is published.
    let (status, _) = get(&server, "/api/docs/acme/plan", Some(&alice.access_token)).await;
    assert_eq!(status, 200);
}

#[derive(Deserialize)]
struct Issued {
    token: String,
    role: Role,
}

async fn issue(server: &TestServer, bearer: &str, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.http("/api/tokens"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn document_tokens_open_their_document_only() {
    let idp = OidcTestProvider::start().await;
    let server = server(&idp).await;
    let alice = tokens_for(&idp, "alice").await;

    let (status, body) = issue(
        &server,
        &alice.access_token,
        serde_json::json!({ "document": "acme/a", "ttl_secs": 60 }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let issued: Issued = serde_json::from_str(&body).unwrap();
    assert_eq!(issued.role, Role::Editor);

    // The y-websocket provider sends it as ?token=.
    let url = format!("{}?token={}", server.ws("acme/a"), issued.token);
    let mut client = Client::connect_as(&url, None)
        .await
        .expect("token opens acme/a");
    client.insert("via token").await;

    let url = format!("{}?token={}", server.ws("acme/b"), issued.token);
    let (status, error) = match Client::open_as(&url, None).await {
        Ok(_) => panic!("a token for acme/a opened acme/b"),
        Err((status, body)) => (status, error_of(&body)),
    };
    assert_eq!(status, 403);
    assert_eq!(
        error,
        "this token is for document \"acme/a\", not \"acme/b\""
    );

    // A ceiling below the user's role: read-only.
    let (status, body) = issue(
        &server,
        &alice.access_token,
        serde_json::json!({ "document": "acme/a", "role": "viewer" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let viewer: Issued = serde_json::from_str(&body).unwrap();
    assert_eq!(viewer.role, Role::Viewer);
    let url = format!("{}?token={}", server.ws("acme/a"), viewer.token);
    let mut reader = Client::connect_as(&url, None).await.expect("viewer token");
    reader.insert(" nope").await;
    assert!(
        reader
            .pump_until(|c| !c.denied.is_empty(), Duration::from_secs(10))
            .await
    );

    // An expired document token, signed with the server's secret.
    let expired = TokenSigner::new(SECRET.as_bytes()).sign(&Claims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        name: None,
        groups: vec!["eng-admins".into()],
        method: AuthMethod::Bearer,
        kind: TokenKind::Document,
        doc: Some("acme/a".into()),
        ws: None,
        role: Some(Role::Editor),
        iat: 1_000,
        exp: 2_000,
    });
    let url = format!("{}?token={}", server.ws("acme/a"), expired);
    let (status, error) = match Client::open_as(&url, None).await {
        Ok(_) => panic!("an expired token was accepted"),
        Err((status, body)) => (status, error_of(&body)),
    };
    assert_eq!(status, 401);
    assert_eq!(
        error,
        "invalid document token: token expired at 2000 (unix seconds)"
    );

    // A document token cannot mint more tokens.
    let (status, body) = issue(
        &server,
        &issued.token,
        serde_json::json!({ "document": "acme/c" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn the_browser_code_flow_ends_in_a_session_cookie() {
    let idp = OidcTestProvider::start().await;
    let server = server(&idp).await;
    let browser = browser();

    // /auth/login sends the browser to the provider, with PKCE.
    let response = browser
        .get(server.http("/auth/login?provider=test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let authorize = Url::parse(&location).unwrap();
    assert!(location.starts_with(&idp.issuer), "{location}");
    assert_eq!(query(&authorize, "code_challenge_method"), "S256");

    // The provider signs alice in and sends the browser back.
    let callback = follow_to_callback(&browser, &authorize, &idp.redirect_uri, &idp).await;
    let ours = format!(
        "{}?{}",
        server.http("/auth/callback"),
        callback.query().unwrap()
    );
    let response = browser.get(&ours).send().await.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"]["acme"], "editor");

    // The session cookie now authenticates the browser.
    let me: serde_json::Value = browser
        .get(server.http("/auth/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["method"], "session");
    assert_eq!(me["user"], body["user"]);
    let response = browser
        .post(server.http("/api/tokens"))
        .json(&serde_json::json!({ "document": "acme/web" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The same callback again: the login was used up.
    let response = browser.get(&ours).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("sign-in failed: "),
        "{body}"
    );

    // Signed out: the cookie is gone.
    let response = browser
        .post(server.http("/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = browser.get(server.http("/auth/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}
