//! Request limits for the HTTP API: per API key, else per client IP, in
//! one-minute windows shared through Redis when the cluster has one. Over
//! a limit: 429 with `Retry-After`. Probes and metrics are never limited.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::credentials::{Credential, Credentials};
use crate::auth::keys;
use crate::error::AppError;
use crate::state::AppState;

/// The middleware.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let credentials = Credentials::from_parts(&parts);
    let limits = state.config.request_limits;
    let (key, limit, what) = match &credentials.credential {
        // The key's hash, not the key: counters in Redis hold no secret.
        Some(Credential::ApiKey(key)) => (
            format!("key:{}", keys::hash(key)),
            limits.per_key_per_min,
            "this API key",
        ),
        _ => match credentials.ip {
            Some(ip) => (format!("ip:{ip}"), limits.per_ip_per_min, "this address"),
            None => return next.run(Request::from_parts(parts, body)).await,
        },
    };
    let now = crate::auth::tokens::now_secs();
    if let Err(retry_after) = state.requests.hit(&key, limit, now).await {
        return AppError::TooManyRequests {
            message: format!(
                "request limit exceeded: more than {limit} requests a minute from {what}; retry in {retry_after} s"
            ),
            retry_after,
        }
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
