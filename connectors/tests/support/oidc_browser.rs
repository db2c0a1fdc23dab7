//! A browser's part in the OIDC code flow against the test provider: a
//! cookie-keeping client that follows the provider's redirects by hand, and
//! real tokens fetched the way a single-page app gets them (public client,
//! PKCE). Shared by the connectors' and the server's tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::oidc_provider::OidcTestProvider;

/// A cookie-keeping HTTP client that does not follow redirects by itself,
/// standing in for the browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows redirects from `url` through the provider's login and consent
/// interactions (they answer at once) until one points at `redirect_uri`,
/// and returns that URL (the callback the browser would load).
pub async fn follow_to_callback(
    browser: &reqwest::Client,
    url: &Url,
    redirect_uri: &str,
    idp: &OidcTestProvider,
) -> Url {
    let mut url = url.clone();
    for _ in 0..12 {
        let response = browser
            .get(url.clone())
            .send()
            .await
            .expect("provider answers");
        let status = response.status();
        let Some(location) = response.headers().get(reqwest::header::LOCATION).cloned() else {
            let body = response.text().await.unwrap_or_default();
            panic!(
                "the provider stopped at {url} with {status}:\n{body}\nprovider log:\n{}",
                idp.log()
            );
        };
        let next = url.join(location.to_str().unwrap()).unwrap();
        if next.as_str().starts_with(redirect_uri) {
            return next;
        }
        url = next;
    }
    panic!("too many redirects from {url}");
}

/// The value of query parameter `name` of `url`.
pub fn query(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

/// What the provider's token endpoint answers.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    /// An access token for the API resource.
    pub access_token: String,
    /// The ID token of the SPA client.
    pub id_token: String,
}

/// Real tokens for `user` from the provider's public client `collab-spa`.
pub async fn tokens_for(idp: &OidcTestProvider, user: &str) -> Tokens {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let verifier = URL_SAFE_NO_PAD.encode(raw);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut authorize = Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", "collab-spa")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups api")
        .append_pair("redirect_uri", &idp.redirect_uri)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "spa-state")
        .append_pair("nonce", "spa-nonce")
        .append_pair("login_hint", user);
    let browser = browser();
    let callback = follow_to_callback(&browser, &authorize, &idp.redirect_uri, idp).await;
    let response = browser
        .post(format!("{}/token", idp.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query(&callback, "code")),
            ("redirect_uri", &idp.redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", "collab-spa"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "token endpoint: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("token response")
}
