//! The provider's signing keys (JWKS), cached, and fetched again when they
//! get old or when a token names a key the cache does not have (rotation).

use super::token::TokenError;
use openidconnect::JsonWebKeySetUrl;
use openidconnect::core::CoreJsonWebKeySet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cached JWKS of one provider.
///
/// Readers take an `Arc` snapshot of the key set under a std `Mutex` held
/// only for the copy, never across an `.await`. Fetches are serialised by a
/// separate tokio `Mutex` (`fetch_gate`), held across the HTTP request on
/// purpose: when a rotated key first shows up, a burst of requests carrying
/// it must cause one fetch, not one each; the later ones wait, see the new
/// generation, and use it.
pub(crate) struct JwksCache {
    url: JsonWebKeySetUrl,
    http: reqwest::Client,
    refresh_interval: Duration,
    refetch_cooldown: Duration,
    state: Mutex<KeysState>,
    fetch_gate: tokio::sync::Mutex<()>,
}

struct KeysState {
    keys: Arc<CoreJsonWebKeySet>,
    /// Bumped on every successful fetch, so a waiter on `fetch_gate` can tell
    /// that someone else already fetched while it waited.
    generation: u64,
    /// Last successful fetch; `None` until the first.
    fetched_at: Option<Instant>,
    /// Last fetch caused by an unknown `kid` (successful or not): the rate
    /// limit for what an outsider can make us do.
    last_unknown_kid_fetch: Option<Instant>,
    /// Last failed fetch: a provider that is down is not retried on every
    /// request while we still have keys to work with.
    last_failure: Option<Instant>,
}

/// A snapshot of the keys, with the generation it belongs to.
pub(crate) struct Keys {
    pub(crate) set: Arc<CoreJsonWebKeySet>,
    pub(crate) generation: u64,
}

impl JwksCache {
    /// A cache that starts with `initial` keys fetched just now (from
    /// discovery), or with none, fetched on first use.
    pub(crate) fn new(
        url: JsonWebKeySetUrl,
        http: reqwest::Client,
        refresh_interval: Duration,
        refetch_cooldown: Duration,
        initial: Option<CoreJsonWebKeySet>,
    ) -> Self {
        let fetched_at = initial.as_ref().map(|_| Instant::now());
        Self {
            url,
            http,
            refresh_interval,
            refetch_cooldown,
            state: Mutex::new(KeysState {
                keys: Arc::new(initial.unwrap_or_else(|| CoreJsonWebKeySet::new(Vec::new()))),
                generation: 0,
                fetched_at,
                last_unknown_kid_fetch: None,
                last_failure: None,
            }),
            fetch_gate: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeysState> {
        // The state is a few plain fields, always left consistent: a panic
        // elsewhere while holding the lock cannot have broken it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current keys, fetched first if there are none yet or they are
    /// older than the refresh interval. A failed refresh of old keys keeps
    /// using them (and logs); only having no keys at all is an error.
    pub(crate) async fn current(&self) -> Result<Keys, TokenError> {
        let (keys, fresh, recently_failed, generation) = {
            let state = self.lock();
            let fresh = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.refresh_interval);
            let recently_failed = state
                .last_failure
                .is_some_and(|at| at.elapsed() < self.refetch_cooldown);
            (state.keys.clone(), fresh, recently_failed, state.generation)
        };
        let have_keys = !keys.keys().is_empty();
        if fresh || (have_keys && recently_failed) {
            return Ok(Keys {
                set: keys,
                generation,
            });
        }
        match self.fetch_unless_newer_than(generation).await {
            Ok(keys) => Ok(keys),
            Err(err) if have_keys => {
                tracing::warn!(url = %self.url.as_str(), error = %err, "JWKS refresh failed; keeping the cached keys");
                Ok(Keys {
                    set: keys,
                    generation,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Fetches again because a token names a key that generation `seen`
    /// lacks. Returns `None` when the rate limit forbids a fetch now.
    pub(crate) async fn refetch_for_unknown_kid(
        &self,
        seen: u64,
    ) -> Result<Option<Keys>, TokenError> {
        {
            let mut state = self.lock();
            if state.generation != seen {
                // Someone fetched since the caller looked: try those first.
                return Ok(Some(Keys {
                    set: state.keys.clone(),
                    generation: state.generation,
                }));
            }
            if state
                .last_unknown_kid_fetch
                .is_some_and(|at| at.elapsed() < self.refetch_cooldown)
            {
                return Ok(None);
            }
            state.last_unknown_kid_fetch = Some(Instant::now());
        }
        self.fetch_unless_newer_than(seen).await.map(Some)
    }

    /// Fetches the JWKS, unless a fetch that completed while we waited for
    /// the gate already replaced generation `seen`.
    async fn fetch_unless_newer_than(&self, seen: u64) -> Result<Keys, TokenError> {
        let _gate = self.fetch_gate.lock().await;
        {
            let state = self.lock();
            if state.generation != seen {
                return Ok(Keys {
                    set: state.keys.clone(),
                    generation: state.generation,
                });
            }
        }
        tracing::debug!(url = %self.url.as_str(), "fetching JWKS");
        match CoreJsonWebKeySet::fetch_async(&self.url, &self.http).await {
            Ok(set) => {
                let mut state = self.lock();
                state.keys = Arc::new(set);
                state.generation += 1;
                state.fetched_at = Some(Instant::now());
                state.last_failure = None;
                Ok(Keys {
                    set: state.keys.clone(),
                    generation: state.generation,
                })
            }
            Err(err) => {
                self.lock().last_failure = Some(Instant::now());
                Err(TokenError::KeysUnavailable {
                    source: Box::new(err),
                })
            }
        }
    }
}
