//! The whole OpenID Connect path against a real provider (oidc-provider on
//! loopback): the browser's authorization-code flow with PKCE, driven by an
//! HTTP client that follows the provider's redirects and interaction pages;
//! bearer validation of the JWT access tokens and ID tokens it issues; and
//! key rotation.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connectors::sso::oidc::{OidcConfig, OidcError, OidcProvider, TokenError};
use connectors::{GroupMapping, Role};
use support::oidc_browser::{browser, follow_to_callback, query, tokens_for};
use support::oidc_provider::OidcTestProvider;

fn web_config(idp: &OidcTestProvider) -> OidcConfig {
    let mut config = OidcConfig::generic(&idp.issuer, "collab-web", &idp.redirect_uri);
    config.client_secret = Some("collab-web-secret".into());
    config.scopes.push("groups".into());
    config.groups_claim = Some("groups".into());
    config
}

/// The configuration of the API side: accepts access tokens for the
/// resource, and ID tokens of the SPA client.
fn api_config(idp: &OidcTestProvider) -> OidcConfig {
    let mut config = OidcConfig::generic(&idp.issuer, "collab-spa", &idp.redirect_uri);
    config.audiences = vec![idp.resource.clone(), "collab-spa".into()];
    config.groups_claim = Some("groups".into());
    config
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn web_login_runs_the_code_flow_with_pkce_and_maps_groups_to_roles() {
    let idp = OidcTestProvider::start().await;
    let web = OidcProvider::discover(web_config(&idp))
        .await
        .expect("discovery");

    let start = web.begin_login();
    assert_eq!(query(&start.authorize_url, "code_challenge_method"), "S256");
    assert_eq!(query(&start.authorize_url, "state"), start.state.key());
    let browser = browser();
    let callback =
        follow_to_callback(&browser, &start.authorize_url, &idp.redirect_uri, &idp).await;
    let (code, returned_state) = (query(&callback, "code"), query(&callback, "state"));
    assert_eq!(returned_state, start.state.key());

    let replay = start.state.clone();
    let alice = web
        .finish_login(start.state, &code, &returned_state)
        .await
        .expect("login");
    assert_eq!(alice.subject, "alice");
    assert_eq!(alice.issuer, idp.issuer);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.name.as_deref(), Some("Alice Admin"));
    assert_eq!(alice.groups, ["eng-admins", "staff"]);
    assert!(alice.expires_at.unwrap() > std::time::SystemTime::now());

    let mapping: GroupMapping = toml::from_str(
        r#"
        [[rules]]
        group = "eng-admins"
        workspace = "acme"
        role = "admin"
        [[rules]]
        group = "staff"
        workspace = "*"
        role = "viewer"
        "#,
    )
    .unwrap();
    let roles = mapping.roles_for(&alice.groups);
    assert_eq!((roles["acme"], roles["*"]), (Role::Admin, Role::Viewer));

    // A code works once.
    let err = web
        .finish_login(replay, &code, &returned_state)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::ProviderRejected { error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the identity provider refused the sign-in: invalid_grant (grant request is invalid)"
    );
}

#[tokio::test]
async fn a_forged_state_or_a_foreign_pkce_verifier_is_refused() {
    let idp = OidcTestProvider::start().await;
    let web = OidcProvider::discover(web_config(&idp))
        .await
        .expect("discovery");
    let browser = browser();

    // The callback's state is not this login's (login CSRF).
    let start = web.begin_login();
    let callback =
        follow_to_callback(&browser, &start.authorize_url, &idp.redirect_uri, &idp).await;
    let err = web
        .finish_login(start.state, &query(&callback, "code"), "attacker-state")
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::CsrfMismatch), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the sign-in response does not belong to this sign-in attempt; start again"
    );

    // A code obtained with one login's PKCE challenge, redeemed with another
    // login's verifier (a stolen code): the provider refuses it.
    let victim = web.begin_login();
    let other = web.begin_login();
    let callback =
        follow_to_callback(&browser, &victim.authorize_url, &idp.redirect_uri, &idp).await;
    let other_key = other.state.key().to_owned();
    let err = web
        .finish_login(other.state, &query(&callback, "code"), &other_key)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the identity provider refused the sign-in: invalid_grant (grant request is invalid)"
    );
}

#[tokio::test]
async fn a_public_client_logs_in_with_pkce_alone() {
    let idp = OidcTestProvider::start().await;
    let mut config = web_config(&idp);
    config.client_id = "collab-spa".into();
    config.client_secret = None;
    let spa = OidcProvider::discover(config).await.expect("discovery");
    let start = spa.begin_login();
    let callback =
        follow_to_callback(&browser(), &start.authorize_url, &idp.redirect_uri, &idp).await;
    let alice = spa
        .finish_login(
            start.state,
            &query(&callback, "code"),
            &query(&callback, "state"),
        )
        .await
        .expect("login");
    assert_eq!(alice.subject, "alice");
    assert_eq!(alice.groups, ["eng-admins", "staff"]);
}

#[tokio::test]
async fn bearer_access_tokens_and_id_tokens_from_the_provider_validate() {
    let idp = OidcTestProvider::start().await;
    let api = OidcProvider::discover(api_config(&idp))
        .await
        .expect("discovery");
    let tokens = tokens_for(&idp, "bob").await;

    let bob = api
        .validate_bearer(&tokens.access_token)
        .await
        .expect("access token");
    assert_eq!(bob.subject, "bob");
    assert_eq!(bob.issuer, idp.issuer);
    assert_eq!(bob.groups, ["staff"]);

    let bob = api
        .validate_bearer(&tokens.id_token)
        .await
        .expect("ID token");
    assert_eq!(bob.subject, "bob");
    assert_eq!(bob.email.as_deref(), Some("bob@example.test"));
    assert_eq!(bob.name.as_deref(), Some("Bob Builder"));
    assert_eq!(bob.groups, ["staff"]);

    // Another API's configuration: the same token is not for it.
    let mut other = api_config(&idp);
    other.audiences = vec!["urn:billing:api".into()];
    let billing = OidcProvider::discover(other).await.expect("discovery");
    let err = billing
        .validate_bearer(&tokens.access_token)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::WrongAudience { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"token audience ["urn:collab:api"] does not include any of ["urn:billing:api"]"#
    );

    // A real token with one bit of its signature flipped.
    let (input, signature) = tokens.access_token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 0x80;
    let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    let err = api.validate_bearer(&tampered).await.unwrap_err();
    assert!(matches!(err, TokenError::BadSignature), "{err:?}");
    assert_eq!(err.to_string(), "token signature is invalid");

    // The same claims, re-labelled `alg: none` and unsigned.
    let payload = input.split_once('.').unwrap().1;
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert_eq!(
        api.validate_bearer(&none).await.unwrap_err().to_string(),
        r#"token algorithm "none" is not allowed"#
    );
}

#[tokio::test]
async fn discovery_checks_the_issuer_exactly() {
    let idp = OidcTestProvider::start().await;
    let mut config = web_config(&idp);
    config.issuer_url = format!("{}/", idp.issuer);
    let err = OidcProvider::discover(config)
        .await
        .err()
        .expect("issuer mismatch");
    assert!(matches!(err, OidcError::Discovery { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("could not read the discovery document of {}/", idp.issuer)
    );
}

#[tokio::test]
async fn key_rotation_is_followed_for_logins_and_bearer_tokens() {
    let idp = OidcTestProvider::start().await;
    // Both discovered, JWKS cached, before the rotation.
    let web = OidcProvider::discover(web_config(&idp))
        .await
        .expect("discovery");
    let api = OidcProvider::discover(api_config(&idp))
        .await
        .expect("discovery");

    let before = tokens_for(&idp, "alice").await;
    assert_eq!(kid_of(&before.access_token), idp.kid);
    api.validate_bearer(&before.access_token)
        .await
        .expect("old key");

    let new_kid = idp.rotate_keys().await;
    assert_ne!(new_kid, idp.kid);

    // A login after the rotation: its ID token is signed with the new key,
    // which the web side has never seen.
    let start = web.begin_login();
    let callback =
        follow_to_callback(&browser(), &start.authorize_url, &idp.redirect_uri, &idp).await;
    let alice = web
        .finish_login(
            start.state,
            &query(&callback, "code"),
            &query(&callback, "state"),
        )
        .await
        .expect("login after rotation");
    assert_eq!(alice.subject, "alice");

    // Bearer tokens signed with the new key validate (JWKS fetched again)...
    let after = tokens_for(&idp, "alice").await;
    assert_eq!(kid_of(&after.access_token), new_kid);
    assert_eq!(kid_of(&after.id_token), new_kid);
    api.validate_bearer(&after.access_token)
        .await
        .expect("new key");
    api.validate_bearer(&after.id_token)
        .await
        .expect("new key, ID token");
    // ...and those signed with the old key still do while it is published.
    api.validate_bearer(&before.access_token)
        .await
        .expect("old key, still published");
    api.validate_bearer(&before.id_token)
        .await
        .expect("old key, ID token");
}
