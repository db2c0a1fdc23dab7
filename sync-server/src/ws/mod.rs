//! The WebSocket endpoint, `/ws/{document}`, speaking the y-websocket
//! protocol.

mod connection;

use std::collections::HashMap;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;

use crdt_core::Scope;
use governance::audit::Action;

use crate::auth::Target;
use crate::auth::credentials::Credentials;
use crate::docs::DocName;
use crate::error::AppError;
use crate::state::AppState;

/// Room for the frame header and envelope beyond the largest accepted
/// message, so that the decoder (not the socket library) refuses an
/// oversize frame and names the limit in the close reason.
const FRAME_SLACK: usize = 64 * 1024;

/// The WebSocket routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/ws/{*document}", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    credentials: Credentials,
    Path(document): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    // The name first: a bad name is the clearer error even over plain HTTP.
    let name = DocName::parse(&document)?;
    let ws = ws.map_err(|rejection| AppError::UpgradeRequired(rejection.body_text()))?;
    let scope = match params.get("access").map(String::as_str) {
        None | Some("write") => Scope::ReadWrite,
        Some("read") => Scope::ReadOnly,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "access must be \"read\" or \"write\", not {other:?}"
            )));
        }
    };
    // Refused before the upgrade, as an HTTP status naming the problem:
    // browsers hide close reasons of connections that never opened.
    let principal = crate::auth::credentials::authenticate(&state, &credentials).await?;
    let caller = state
        .auth
        .caller(&principal, Target::Document(&name), &credentials)
        .await?;
    let caller = Arc::new(caller);
    // On record before the upgrade is answered; a refusal names the policy.
    let details =
        serde_json::json!({ "access": if scope == Scope::ReadOnly { "read" } else { "write" } });
    state
        .guard
        .admit(Action::Connect, &caller, &name, details)
        .await?;
    let permit = state
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Unavailable("connection limit reached; try again later".into()))?;
    let max_frame = state.config.docs.limits.max_frame_bytes;
    let tracker = state.tracker.clone();
    Ok(ws
        .max_message_size(max_frame + FRAME_SLACK)
        .max_frame_size(max_frame + FRAME_SLACK)
        // Small buffers: an idle connection should cost kilobytes, not the
        // 128 KiB tungstenite reserves by default.
        .read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| {
            let who = connection::Who {
                caller,
                principal,
                credentials,
            };
            tracker.track_future(connection::serve(socket, state, name, scope, who, permit))
        }))
}
