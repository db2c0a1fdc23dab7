//! Compliance reports and lineage over HTTP:
//!
//! - `GET /api/reports/gdpr-access/{user}?format=json|csv|html`: everything
//!   stored about a user: account, roles, audit entries, the documents they
//!   wrote and the text still attributed to them;
//! - `GET /api/reports/gdpr-erasure/{user}?format=`: what erasing the user
//!   does, per workspace's erasure mode (a plan: nothing is changed);
//! - `POST /api/erasures/{user}` with `{"confirm": "<user>"}`: carries the
//!   erasure out (see [`crate::erasure`]) and answers with what was done:
//!   200 when every document is done, 500 with the same report when some
//!   failed (running it again finishes them). Owners only (policy
//!   `roles.owner-only`);
//! - `GET /api/reports/access-review?workspace=&from=&to=&format=`: the
//!   SOC 2 access review, who had which role when, and who changed it;
//! - `GET /api/lineage/{document}?depth=`: where the document's content
//!   came from and went.
//!
//! Each is decided by policy and audited as `report.generate` (lineage as
//! `document.read`) before it is built.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governance::audit::Action;
use governance::compliance::{
    ReportFormat, access_review, gdpr_access, plan_erasure, pseudonym, render,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Target;
use crate::auth::credentials::Authenticated;
use crate::docs::DocName;
use crate::error::AppError;
use crate::guard::{ServerSource, actor};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports/gdpr-access/{user}", get(gdpr))
        .route("/api/reports/gdpr-erasure/{user}", get(erasure))
        .route("/api/erasures/{user}", post(erase))
        .route("/api/reports/access-review", get(review))
        .route("/api/lineage/{*document}", get(lineage))
}

#[derive(Debug, Default, Deserialize)]
struct ReportParams {
    format: Option<String>,
    workspace: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

impl ReportParams {
    fn format(&self) -> Result<ReportFormat, AppError> {
        match self.format.as_deref() {
            None => Ok(ReportFormat::Json),
            Some(f) => f.parse().map_err(|_| {
                AppError::BadRequest(format!("format must be json, csv or html, not {f:?}"))
            }),
        }
    }
}

fn source(state: &AppState) -> ServerSource {
    ServerSource::new(
        state.store.clone(),
        state.auth.store().clone(),
        state.config.docs.limits.clone(),
    )
}

async fn admit(
    state: &AppState,
    auth: &Authenticated,
    workspace: &str,
    details: serde_json::Value,
) -> Result<(), AppError> {
    let caller = auth.caller(state, Target::Workspace(workspace)).await?;
    let op = state
        .guard
        .operation(Action::ReportGenerate, &caller, workspace, None)
        .details(details);
    state.guard.authorize(op).await.map(drop)
}

fn failed(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(format!("report: {e}"))
}

fn rendered<R: governance::compliance::Report>(report: &R, format: ReportFormat) -> Response {
    let mut out = Vec::new();
    render(report, format, &mut out);
    ([(header::CONTENT_TYPE, format.content_type())], out).into_response()
}

async fn gdpr(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(user): Path<String>,
    Query(params): Query<ReportParams>,
) -> Result<Response, AppError> {
    let format = params.format()?;
    admit(
        &state,
        &auth,
        "*",
        json!({ "report": "gdpr_access", "user": user }),
    )
    .await?;
    let log = state.guard.governance().audit();
    let report = gdpr_access(&user, &source(&state), log)
        .await
        .map_err(failed)?;
    Ok(rendered(&report, format))
}

async fn erasure(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(user): Path<String>,
    Query(params): Query<ReportParams>,
) -> Result<Response, AppError> {
    let format = params.format()?;
    admit(
        &state,
        &auth,
        "*",
        json!({ "report": "gdpr_erasure_plan", "user": user }),
    )
    .await?;
    let caller = auth.caller(&state, Target::Workspace("*")).await?;
    let log = state.guard.governance().audit();
    let plan = plan_erasure(&user, &caller.user, &source(&state), log)
        .await
        .map_err(failed)?;
    Ok(rendered(&plan, format))
}

#[derive(Debug, Deserialize)]
struct EraseRequest {
    /// The user id again, so a slip of the path erases no one.
    confirm: String,
}

async fn erase(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(user): Path<String>,
    Json(request): Json<EraseRequest>,
) -> Result<Response, AppError> {
    if request.confirm != user {
        return Err(AppError::BadRequest(format!(
            "confirm must repeat the user id {user:?} exactly"
        )));
    }
    let caller = auth.caller(&state, Target::Workspace("*")).await?;
    let log = state.guard.governance().audit();
    // The trail names the subject by pseudonym only, from the request on.
    let subject = pseudonym(log.keys(), &user);
    let op = state
        .guard
        .operation(Action::UserErasure, &caller, "*", None)
        .details(json!({ "subject": subject, "stage": "requested" }));
    state.guard.authorize(op).await?;
    let plan = plan_erasure(&user, &caller.user, &source(&state), log)
        .await
        .map_err(failed)?;
    let report =
        crate::erasure::carry_out(&state, plan, actor(&caller), state.guard.source(&caller))
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let status = if report.outcome.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok((status, Json(report)).into_response())
}

async fn review(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<ReportParams>,
) -> Result<Response, AppError> {
    let format = params.format()?;
    let to = params.to.unwrap_or(u64::MAX / 2);
    let from = params.from.unwrap_or(0);
    let workspace = params.workspace.as_deref();
    admit(
        &state,
        &auth,
        workspace.unwrap_or("*"),
        json!({ "report": "soc2_access_review", "from": from, "to": to }),
    )
    .await?;
    let log = state.guard.governance().audit();
    let report = access_review(&source(&state), log, workspace, from, to)
        .await
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok(rendered(&report, format))
}

#[derive(Debug, Deserialize)]
struct LineageParams {
    depth: Option<u32>,
}

async fn lineage(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(document): Path<String>,
    Query(params): Query<LineageParams>,
) -> Result<Response, AppError> {
    let name = DocName::parse(&document)?;
    let caller = auth.caller(&state, Target::Document(&name)).await?;
    state
        .guard
        .admit(
            Action::DocumentRead,
            &caller,
            &name,
            json!({ "request": "lineage" }),
        )
        .await?;
    let depth = params.depth.unwrap_or(3).min(10);
    let graph = state
        .guard
        .governance()
        .lineage_graph(name.as_str(), depth)
        .await
        .map_err(|e| AppError::Unavailable(format!("lineage: {e}")))?;
    Ok(Json(graph).into_response())
}
