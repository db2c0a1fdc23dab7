//! API keys for server-to-server use: `POST /api/keys` creates one (the
//! key is in that answer only), `GET /api/keys?workspace=W` lists a
//! workspace's keys, `DELETE /api/keys/{id}` revokes one at once, live
//! connections on every node included. Each needs the admin role in every workspace the
//! key opens; each is decided by policy and put on the audit trail.

use axum::extract::{Path, Query, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use governance::audit::Action;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::credentials::Authenticated;
use crate::auth::store::ApiKeyRecord;
use crate::auth::{AccessChange, Role, Target, keys};
use crate::error::AppError;
use crate::state::AppState;

/// The key routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/keys", get(list).post(create))
        .route("/api/keys/{id}", delete(revoke))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    workspaces: Vec<String>,
    role: Role,
}

/// A key as listed: everything but its hash.
#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    name: String,
    workspaces: Vec<String>,
    role: Role,
    created_by: String,
    created_ms: u64,
    revoked_ms: Option<u64>,
    last_used_ms: Option<u64>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            name: k.name,
            workspaces: k.workspaces,
            role: k.role,
            created_by: k.created_by,
            created_ms: k.created_ms,
            revoked_ms: k.revoked_ms,
            last_used_ms: k.last_used_ms,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(e.to_string())
}

/// Admits `action` by `auth` as an admin action in each of `workspaces`.
async fn admit(
    state: &AppState,
    auth: &Authenticated,
    workspaces: &[String],
    details: serde_json::Value,
) -> Result<Vec<Option<Role>>, AppError> {
    let mut roles = Vec::new();
    for workspace in workspaces {
        let caller = auth.caller(state, Target::Workspace(workspace)).await?;
        let op = state
            .guard
            .operation(Action::AdminAction, &caller, workspace, None)
            .details(details.clone());
        state.guard.authorize(op).await?;
        roles.push(caller.role);
    }
    Ok(roles)
}

async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(request): Json<CreateKey>,
) -> Result<Json<serde_json::Value>, AppError> {
    if request.name.trim().is_empty() || request.workspaces.is_empty() {
        return Err(AppError::BadRequest(
            "an API key needs a \"name\" and at least one workspace in \"workspaces\"".into(),
        ));
    }
    let new = keys::generate();
    let details = json!({
        "api_key": "create", "id": new.id, "name": request.name,
        "workspaces": request.workspaces, "role": request.role,
    });
    let roles = admit(&state, &auth, &request.workspaces, details).await?;
    if roles.iter().any(|r| r.is_none_or(|r| r < request.role)) {
        return Err(AppError::Forbidden(format!(
            "an API key cannot have a role ({}) above yours",
            request.role
        )));
    }
    let record = ApiKeyRecord {
        id: new.id.clone(),
        name: request.name,
        hash: new.hash,
        workspaces: request.workspaces,
        role: request.role,
        created_by: auth.principal.user.clone(),
        created_ms: crate::auth::tokens::now_secs() * 1000,
        revoked_ms: None,
        last_used_ms: None,
    };
    state
        .auth
        .store()
        .create_key(&record)
        .await
        .map_err(unavailable)?;
    let mut body = serde_json::to_value(KeyView::from(record)).map_err(unavailable)?;
    body["key"] = json!(new.key);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    workspace: String,
}

async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<KeyView>>, AppError> {
    let workspace = query.workspace;
    admit(
        &state,
        &auth,
        std::slice::from_ref(&workspace),
        json!({ "api_key": "list" }),
    )
    .await?;
    let keys = state.auth.store().keys().await.map_err(unavailable)?;
    Ok(Json(
        keys.into_iter()
            .filter(|k| k.workspaces.iter().any(|w| *w == workspace || w == "*"))
            .map(KeyView::from)
            .collect(),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AppError> {
    let store = state.auth.store();
    let key = store
        .keys()
        .await
        .map_err(unavailable)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| AppError::NotFound(format!("no API key {id:?}")))?;
    admit(
        &state,
        &auth,
        &key.workspaces,
        json!({ "api_key": "revoke", "id": id }),
    )
    .await?;
    let now = crate::auth::tokens::now_secs() * 1000;
    store.revoke_key(&id, now).await.map_err(unavailable)?;
    state.announce_access(AccessChange {
        workspace: "*".into(),
        user: format!("key:{id}"),
    });
    let mut view = KeyView::from(key);
    view.revoked_ms.get_or_insert(now);
    Ok(Json(view))
}
