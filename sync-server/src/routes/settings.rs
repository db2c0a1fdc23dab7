//! A workspace's governance settings: `GET /api/workspaces/{ws}/settings`
//! shows them; `PATCH` changes the ones given:
//!
//! ```json
//! { "erasure_mode": { "mode": "pseudonymise" },
//!   "legal_hold": { "reason": "Case 2026-17" },
//!   "retention": { "audit_ms": 31536000000, "history_ms": null } }
//! ```
//!
//! `"legal_hold": null` lifts a hold. The erasure mode is `remove` (the
//! default), `pseudonymise`, or `retain` with a `legal_basis`. Changing
//! settings needs the owner role; each change is on the audit trail before
//! it is made.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use governance::audit::Action;
use governance::compliance::ErasureMode;
use governance::settings::{self, ChangedBy, RetentionPolicy, WorkspaceSettings};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Target;
use crate::auth::credentials::Authenticated;
use crate::error::AppError;
use crate::guard::actor;
use crate::state::AppState;

/// The settings routes.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/workspaces/{workspace}/settings",
        get(show).patch(change),
    )
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(format!("settings: {e}"))
}

async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(workspace): Path<String>,
) -> Result<Json<WorkspaceSettings>, AppError> {
    let caller = auth.caller(&state, Target::Workspace(&workspace)).await?;
    let op = state
        .guard
        .operation(Action::AdminAction, &caller, &workspace, None)
        .details(json!({ "settings": "read" }));
    state.guard.authorize(op).await?;
    let log = state.guard.governance().audit();
    let current = settings::read(log.store().as_ref(), &workspace)
        .await
        .map_err(unavailable)?;
    Ok(Json(current))
}

/// The hold to place; `null` lifts it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hold {
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    erasure_mode: Option<ErasureMode>,
    retention: Option<RetentionPolicy>,
    /// Absent: unchanged; `null`: lifted.
    #[serde(default, deserialize_with = "present")]
    legal_hold: Option<Option<Hold>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Hold>>, D::Error> {
    Option::<Hold>::deserialize(d).map(Some)
}

async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(workspace): Path<String>,
    Json(request): Json<Change>,
) -> Result<Json<WorkspaceSettings>, AppError> {
    if workspace.is_empty() || workspace == "*" {
        return Err(AppError::BadRequest(
            "name one workspace (\"*\" is not a workspace)".into(),
        ));
    }
    if let Some(ErasureMode::Retain { legal_basis }) = &request.erasure_mode
        && legal_basis.trim().is_empty()
    {
        return Err(AppError::BadRequest(
            "erasure mode retain needs a legal_basis".into(),
        ));
    }
    let caller = auth.caller(&state, Target::Workspace(&workspace)).await?;
    let op = state
        .guard
        .operation(Action::PolicyChange, &caller, &workspace, None)
        .details(json!({ "settings": "change" }));
    state.guard.authorize(op).await?;
    let log = state.guard.governance().audit();
    let by = ChangedBy {
        actor: actor(&caller),
        source: state.guard.source(&caller),
    };
    if let Some(mode) = &request.erasure_mode {
        settings::set_erasure_mode(log, &workspace, mode, &by)
            .await
            .map_err(unavailable)?;
    }
    if let Some(retention) = request.retention {
        settings::set_retention(log, &workspace, retention, &by)
            .await
            .map_err(unavailable)?;
    }
    match &request.legal_hold {
        Some(Some(hold)) => settings::set_legal_hold(log, &workspace, &hold.reason, &by)
            .await
            .map(drop)
            .map_err(unavailable)?,
        Some(None) => settings::clear_legal_hold(log, &workspace, &by)
            .await
            .map(drop)
            .map_err(unavailable)?,
        None => {}
    }
    let current = settings::read(log.store().as_ref(), &workspace)
        .await
        .map_err(unavailable)?;
    Ok(Json(current))
}
