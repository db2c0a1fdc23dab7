//! The audit trail over HTTP:
//!
//! - `GET /api/audit?workspace=&user=&document=&action=&from=&to=&after=&limit=`:
//!   a page of entries, oldest first, with `next` to continue;
//! - the same with `format=jsonl` or `format=csv`: every matching entry,
//!   for a SIEM;
//! - `GET /api/audit/verify[?workspace=]`: checks the hash chains and
//!   signed checkpoints and names the first bad entry of each chain.
//!
//! Reading the trail is itself audited (`audit.search`, `audit.export`,
//! `audit.verify`) and needs the admin role on the workspace (every
//! workspace when none is given).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use governance::audit::{Action, ExportFormat, VerifyScope};
use governance::store::{AuditQuery, Cursor};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Target;
use crate::auth::credentials::Authenticated;
use crate::error::AppError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/audit", get(search))
        .route("/api/audit/verify", get(verify))
}

/// The filters of a search.
#[derive(Debug, Default, Deserialize)]
struct SearchParams {
    workspace: Option<String>,
    user: Option<String>,
    document: Option<String>,
    /// Comma-separated action names (`update.accepted,connection.open`).
    action: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    from: Option<u64>,
    /// Milliseconds since the epoch, exclusive.
    to: Option<u64>,
    /// The previous page's `next`.
    after: Option<String>,
    limit: Option<usize>,
    /// `json` (a page, the default), `jsonl` or `csv` (everything).
    format: Option<String>,
}

impl SearchParams {
    fn query(&self) -> Result<AuditQuery, AppError> {
        let actions = match &self.action {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    name.trim().parse::<Action>().map_err(|_| {
                        AppError::BadRequest(format!(
                            "unknown audit action {name:?} (for example connection.open, update.accepted, document.export)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let after = match &self.after {
            None => None,
            Some(token) => Some(Cursor::decode(token).ok_or_else(|| {
                AppError::BadRequest("after is not a cursor this server returned".into())
            })?),
        };
        Ok(AuditQuery {
            workspace: self.workspace.clone(),
            actor: self.user.clone(),
            document: self.document.clone(),
            actions,
            from_ms: self.from,
            to_ms: self.to,
            after,
            limit: self.limit.unwrap_or(100),
        })
    }
}

/// Decides and records a read of the trail.
async fn admit(
    state: &AppState,
    auth: &Authenticated,
    action: Action,
    workspace: Option<&str>,
    details: serde_json::Value,
) -> Result<(), AppError> {
    let caller = auth
        .caller(state, Target::Workspace(workspace.unwrap_or("*")))
        .await?;
    let op = state
        .guard
        .operation(action, &caller, workspace.unwrap_or("*"), None)
        .details(details);
    state.guard.authorize(op).await.map(drop)
}

async fn search(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<SearchParams>,
) -> Result<Response, AppError> {
    let query = params.query()?;
    let filters = json!({
        "workspace": params.workspace, "user": params.user, "document": params.document,
        "action": params.action, "from": params.from, "to": params.to,
    });
    let log = state.guard.governance().audit().clone();
    let format = match params.format.as_deref() {
        None | Some("json") => None,
        Some(other) => Some(other.parse::<ExportFormat>().map_err(|_| {
            AppError::BadRequest(format!("format must be json, jsonl or csv, not {other:?}"))
        })?),
    };
    let workspace = params.workspace.as_deref();
    match format {
        None => {
            admit(&state, &auth, Action::AuditSearch, workspace, filters).await?;
            let page = log
                .search(&query)
                .await
                .map_err(|e| AppError::Unavailable(format!("audit trail: {e}")))?;
            Ok(Json(json!({
                "entries": page.entries,
                "next": page.next.map(|c| c.encode()),
            }))
            .into_response())
        }
        Some(format) => {
            admit(&state, &auth, Action::AuditExport, workspace, filters).await?;
            let mut out = Vec::new();
            governance::audit::export(&log, query, format, &mut out, &mut |_| {})
                .await
                .map_err(|e| AppError::Unavailable(format!("audit export: {e}")))?;
            Ok(([(header::CONTENT_TYPE, format.content_type())], out).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct VerifyParams {
    workspace: Option<String>,
}

async fn verify(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<VerifyParams>,
) -> Result<Response, AppError> {
    let workspace = params.workspace.as_deref();
    admit(
        &state,
        &auth,
        Action::AuditVerify,
        workspace,
        json!({ "workspace": workspace }),
    )
    .await?;
    let scope = match params.workspace {
        Some(w) => VerifyScope::Workspace(w),
        None => VerifyScope::All,
    };
    let report = state
        .guard
        .governance()
        .audit()
        .verify(&scope, &mut |_, _| {})
        .await
        .map_err(|e| AppError::Unavailable(format!("audit trail: {e}")))?;
    Ok(Json(json!({ "ok": report.ok(), "chains": report.chains })).into_response())
}
