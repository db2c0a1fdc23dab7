//! Workspace members: `GET /api/workspaces/{ws}/members`, and
//! `PUT`/`DELETE /api/workspaces/{ws}/members/{user}` to set or remove an
//! explicit role. Policy decides (managing roles needs admin; granting or
//! revoking owner needs owner) and the change is on the audit trail before
//! it is made. Live connections of that user, on every node, re-check at
//! once: a viewer's writes are refused from their next message, a user
//! with no role left is disconnected with 4403.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use governance::audit::Action;
use serde::Deserialize;
use serde_json::json;

use crate::auth::credentials::Authenticated;
use crate::auth::store::Member;
use crate::auth::{AccessChange, Role, Target};
use crate::error::AppError;
use crate::state::AppState;

/// The member routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workspaces/{workspace}/members", get(list))
        .route(
            "/api/workspaces/{workspace}/members/{*user}",
            axum::routing::put(set).delete(remove),
        )
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(e.to_string())
}

fn check_workspace(workspace: &str) -> Result<(), AppError> {
    if workspace.is_empty() || workspace == "*" {
        return Err(AppError::BadRequest(
            "name one workspace (\"*\" is not a workspace)".into(),
        ));
    }
    Ok(())
}

async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(workspace): Path<String>,
) -> Result<Json<Vec<Member>>, AppError> {
    check_workspace(&workspace)?;
    let caller = auth.caller(&state, Target::Workspace(&workspace)).await?;
    let op = state
        .guard
        .operation(Action::AdminAction, &caller, &workspace, None)
        .details(json!({ "members": "list" }));
    state.guard.authorize(op).await?;
    let members = state
        .auth
        .store()
        .members(&workspace)
        .await
        .map_err(unavailable)?;
    Ok(Json(members))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: Role,
}

async fn set(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((workspace, user)): Path<(String, String)>,
    Json(request): Json<SetRole>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_workspace(&workspace)?;
    let store = state.auth.store();
    let previous = store
        .member_role(&workspace, &user)
        .await
        .map_err(unavailable)?;
    let caller = auth.caller(&state, Target::Workspace(&workspace)).await?;
    let mut op = state
        .guard
        .operation(Action::RoleGrant, &caller, &workspace, None)
        .details(json!({ "user": user, "role": request.role, "previous": previous }));
    // Rank of the higher of the new and the old role: taking owner away
    // needs owner as much as giving it.
    op.granted_role = Some(previous.map_or(request.role, |p| p.max(request.role)));
    state.guard.authorize(op).await?;
    store
        .set_member(&workspace, &user, request.role)
        .await
        .map_err(unavailable)?;
    state.announce_access(AccessChange {
        workspace: workspace.clone(),
        user: user.clone(),
    });
    Ok(Json(
        json!({ "workspace": workspace, "user": user, "role": request.role }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((workspace, user)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    check_workspace(&workspace)?;
    let store = state.auth.store();
    let previous = store
        .member_role(&workspace, &user)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            AppError::NotFound(format!("{user} is not a member of workspace {workspace:?}"))
        })?;
    let caller = auth.caller(&state, Target::Workspace(&workspace)).await?;
    let mut op = state
        .guard
        .operation(Action::RoleRevoke, &caller, &workspace, None)
        .details(json!({ "user": user, "role": previous }));
    op.granted_role = Some(previous);
    state.guard.authorize(op).await?;
    store
        .remove_member(&workspace, &user)
        .await
        .map_err(unavailable)?;
    state.announce_access(AccessChange {
        workspace: workspace.clone(),
        user: user.clone(),
    });
    Ok(Json(
        json!({ "workspace": workspace, "user": user, "removed": previous }),
    ))
}
