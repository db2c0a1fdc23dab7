//! The browser login: authorization code flow with PKCE, and the state that
//! has to survive the round trip through the provider.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What [`OidcProvider::begin_login`](super::OidcProvider::begin_login)
/// hands the server: where to send the browser, and what to keep until it
/// comes back.
#[derive(Debug)]
pub struct LoginStart {
    /// The provider's authorization URL, with PKCE challenge, nonce and
    /// CSRF token in it: answer the browser with a redirect (303) here.
    pub authorize_url: url::Url,
    /// The secrets the callback needs; keep them server-side (see
    /// [`LoginState`]).
    pub state: LoginState,
}

/// The secrets of one login in progress: the PKCE verifier, the nonce, and
/// the CSRF token (OAuth's `state` parameter), plus when the login began.
///
/// # How the server keeps it
///
/// In a server-side store, keyed by [`key`](Self::key), expiring after
/// [`OidcConfig::login_ttl`](super::OidcConfig::login_ttl) (10 minutes by
/// default) and removed on first use:
///
/// 1. `/login`: `let start = provider.begin_login();` store
///    `start.state` under `start.state.key()`, set a cookie holding that
///    key (`HttpOnly; Secure; SameSite=Lax; Path=/auth; Max-Age=600`), and
///    redirect to `start.authorize_url`.
/// 2. `/auth/callback?code=..&state=..`: take (remove) the stored state
///    under the cookie's key, then
///    `provider.finish_login(state, code, query_state)`. It checks that the
///    `state` the provider returned is this login's CSRF token (constant
///    time) and that the login is not too old, then exchanges the code with
///    the PKCE verifier and checks the ID token's nonce.
///
/// Why a store and a key rather than the whole state in an encrypted
/// cookie: the cookie then holds nothing secret (its key is also in the
/// authorization URL, so it protects nothing), the server needs no cookie
/// encryption key to manage and rotate, and removal on first use makes a
/// replayed callback fail. The cookie is still what ties the callback to
/// the browser that started the login: a callback URL sent to a victim
/// carries the attacker's `state`, which does not match the state stored
/// under the victim's cookie (login CSRF). With several server replicas
/// behind a balancer, the store must be shared (Redis with a TTL, or
/// PostgreSQL); `LoginState` is `Serialize`/`Deserialize` for that.
///
/// `Debug` hides the secrets.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    pub(crate) csrf_token: String,
    pub(crate) nonce: String,
    pub(crate) pkce_verifier: String,
    /// Seconds since the Unix epoch.
    pub(crate) issued_at: u64,
}

impl LoginState {
    pub(crate) fn new(csrf_token: String, nonce: String, pkce_verifier: String) -> Self {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            csrf_token,
            nonce,
            pkce_verifier,
            issued_at,
        }
    }

    /// The key to store this state under, and to put in the browser's login
    /// cookie. It is the CSRF token, which the authorization URL carries in
    /// the clear anyway, so it is no secret.
    pub fn key(&self) -> &str {
        &self.csrf_token
    }

    /// When the login began.
    pub fn issued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.issued_at)
    }
}

impl fmt::Debug for LoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginState")
            .field("key", &self.csrf_token)
            .field("nonce", &"***")
            .field("pkce_verifier", &"***")
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_nonce_and_verifier_and_serde_round_trips() {
        let state = LoginState::new("csrf123".into(), "nonce456".into(), "verifier789".into());
        let shown = format!("{state:?}");
        assert!(shown.contains("csrf123"));
        assert!(
            !shown.contains("nonce456") && !shown.contains("verifier789"),
            "{shown}"
        );
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<LoginState>(&json).unwrap(), state);
        assert_eq!(state.key(), "csrf123");
    }
}
