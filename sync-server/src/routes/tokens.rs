//! `POST /api/tokens`: short-lived document tokens for a signed-in user.
//!
//! A web app signs the user in (OIDC, LDAP), asks for a token for the one
//! document it opens, and hands it to the y-websocket provider as
//! `params: { token }`. The token opens that document (or workspace) only,
//! with at most the role asked for, and dies after its TTL.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::auth::credentials::Authenticated;
use crate::auth::{Grant, Role, Target};
use crate::docs::DocName;
use crate::error::AppError;
use crate::state::AppState;

/// The token routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/tokens", post(issue))
}

/// What a token is asked for: exactly one of `document` and `workspace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    document: Option<String>,
    workspace: Option<String>,
    /// The ceiling; default: the user's role there now.
    role: Option<Role>,
    /// Lifetime; capped by the server's maximum.
    ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
    role: Role,
}

async fn issue(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(request): Json<TokenRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    if matches!(
        auth.principal.grant,
        Grant::Scoped { .. } | Grant::Key { .. }
    ) {
        return Err(AppError::Forbidden(
            "document tokens are issued to signed-in users, not to document tokens or API keys"
                .into(),
        ));
    }
    let document = request
        .document
        .as_deref()
        .map(DocName::parse)
        .transpose()?;
    let target = match (&document, request.workspace.as_deref()) {
        (Some(doc), None) => Target::Document(doc),
        (None, Some(ws)) if !ws.is_empty() && !ws.contains('/') && ws != "*" => {
            Target::Workspace(ws)
        }
        _ => {
            return Err(AppError::BadRequest(
                "name exactly one of \"document\" and \"workspace\" (a workspace is a name without '/')"
                    .into(),
            ));
        }
    };
    let caller = auth.caller(&state, target).await?;
    let Some(current) = caller.role else {
        return Err(AppError::Forbidden(format!(
            "{} has no role in workspace {:?}",
            caller.user,
            match target {
                Target::Document(doc) => doc.workspace(),
                Target::Workspace(ws) => ws,
            }
        )));
    };
    let role = request.role.unwrap_or(current).min(current);
    let max = state.auth.config().token_max_ttl;
    let ttl = request.ttl_secs.map_or(max, Duration::from_secs);
    let (token, expires_at) = state.auth.issue_document_token(
        &auth.principal,
        document.as_ref(),
        request.workspace.as_deref(),
        role,
        ttl,
    )?;
    Ok(Json(TokenResponse {
        token,
        expires_at,
        document: request.document,
        workspace: request.workspace,
        role,
    }))
}
