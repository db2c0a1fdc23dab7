//! Browser sign-in state: OIDC logins in progress, and the cookies.
//!
//! A login in progress ([`LoginState`]: PKCE verifier, nonce, CSRF token)
//! stays server-side under a random key held in a short-lived cookie, and
//! is removed on first use, so a replayed callback fails. The session
//! itself is a signed token of ours in an `HttpOnly` cookie: stateless,
//! so any node can check it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectors::sso::oidc::LoginState;

/// The cookie holding the key of a login in progress.
pub const LOGIN_COOKIE: &str = "collab_login";

/// Most logins in progress kept at once; the oldest go first. Starting a
/// login costs nothing, so without a bound anyone could fill memory.
const MAX_PENDING: usize = 10_000;

/// Logins in progress on this node, by key.
#[derive(Default)]
pub struct PendingLogins {
    /// A std mutex: held for a map operation only, never across `.await`.
    logins: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    provider: String,
    state: LoginState,
    started: Instant,
}

impl PendingLogins {
    /// Keeps `state` for `provider` until taken or `ttl` passes.
    pub fn insert(&self, provider: &str, state: LoginState, ttl: Duration) {
        let mut logins = self.logins.lock().expect("pending logins");
        logins.retain(|_, p| p.started.elapsed() < ttl);
        if logins.len() >= MAX_PENDING
            && let Some(oldest) = logins
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
        {
            logins.remove(&oldest);
        }
        logins.insert(
            state.key().to_owned(),
            Pending {
                provider: provider.to_owned(),
                state,
                started: Instant::now(),
            },
        );
    }

    /// Removes and returns the login under `key`: its provider and state.
    pub fn take(&self, key: &str) -> Option<(String, LoginState)> {
        self.logins
            .lock()
            .expect("pending logins")
            .remove(key)
            .map(|p| (p.provider, p.state))
    }
}

/// A `Set-Cookie` value.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Lax; Path={path}; Max-Age={max_age}{secure}")
}
