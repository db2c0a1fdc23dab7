//! Liveness, readiness and metrics.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The server can take traffic: not shutting down, and the store answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.check().await;
    let cluster = state.cluster.as_ref().map(|c| c.check());
    let shutting_down = state.shutdown.is_cancelled();
    let ready = store.is_ok() && !shutting_down && cluster.as_ref().is_none_or(Result::is_ok);
    let body = json!({
        "ready": ready,
        "shutting_down": shutting_down,
        "store": {
            "kind": state.store.kind(),
            "ok": store.is_ok(),
            "error": store.err().map(|e| e.to_string()),
        },
        "cluster": cluster.map(|result| json!({
            "kind": "redis",
            "ok": result.is_ok(),
            "error": result.err(),
        })),
        "documents_loaded": state.registry.loaded(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
