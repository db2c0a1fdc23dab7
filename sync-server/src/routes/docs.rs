//! The document REST API.
//!
//! - `GET  /api/docs/{document}`: the content as JSON;
//! - `GET  /api/docs/{document}/update[?v=2]`: the whole state as one Yjs update;
//! - `POST /api/docs/{document}/update[?v=2]`: apply a Yjs update (answered once durable);
//! - `GET  /api/docs/{document}/presence`: who is connected now;
//! - `POST /api/docs/{document}/copy?source={document}`: merge another
//!   document's content into this one (recorded as lineage);
//! - the history routes of [`super::versions`]: `/versions`,
//!   `/versions/{id}`, `/versions/{id}/restore` and `/diff`.
//!
//! Names may contain `/`, so the action is read from the end of the raw
//! path. A document whose own name ends in one of those suffixes is
//! addressed with that slash escaped (`team%2Fupdate`).
//!
//! Every request is decided by policy and put on the audit trail before
//! it runs: reads as `document.read`, whole-state downloads as
//! `document.export`, versions saved as `document.create`, restores and
//! copies as `document.copy`. Writes are decided by the document task and
//! audited per update when they commit.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crdt_core::Encoding;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use std::sync::Arc;

use governance::audit::Action as AuditAction;
use governance::lineage::{EdgeKind, LineageEdge, LineageNode};

use super::versions;
use crate::auth::Caller;
use crate::auth::Target;
use crate::auth::credentials::Authenticated;
use crate::docs::{Command, DocName, ReadKind, ReadOut};
use crate::error::AppError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/docs/{*path}", get(read).post(write))
}

enum Action {
    Content,
    Update,
    Presence,
    Versions,
    Version(u64),
    Restore(u64),
    Diff,
    Copy,
}

impl Action {
    /// What the request is, for policy and audit.
    fn audited(&self, history: &versions::HistoryQuery, post: bool) -> Option<AuditAction> {
        Some(match self {
            Action::Update if post => return None,
            Action::Update => AuditAction::DocumentExport,
            Action::Version(_) if history.wants_update() => AuditAction::DocumentExport,
            Action::Versions if post => AuditAction::DocumentCreate,
            Action::Restore(_) | Action::Copy => AuditAction::DocumentCopy,
            Action::Content
            | Action::Presence
            | Action::Versions
            | Action::Version(_)
            | Action::Diff => AuditAction::DocumentRead,
        })
    }
}

/// `…/versions/{id}` and `…/versions/{id}/restore`.
fn version_action(raw: &str) -> Option<(&str, Action)> {
    let (rest, restore) = match raw.strip_suffix("/restore") {
        Some(rest) => (rest, true),
        None => (raw, false),
    };
    let (rest, id) = rest.rsplit_once('/')?;
    let name = rest.strip_suffix("/versions")?;
    let id = id.parse().ok()?;
    Some((
        name,
        if restore {
            Action::Restore(id)
        } else {
            Action::Version(id)
        },
    ))
}

fn target(uri: &Uri) -> Result<(DocName, Action), AppError> {
    let raw = uri
        .path()
        .strip_prefix("/api/docs/")
        .ok_or_else(|| AppError::NotFound("no such route".into()))?;
    let (name, action) = if let Some(name) = raw.strip_suffix("/update") {
        (name, Action::Update)
    } else if let Some(name) = raw.strip_suffix("/presence") {
        (name, Action::Presence)
    } else if let Some(name) = raw.strip_suffix("/versions") {
        (name, Action::Versions)
    } else if let Some(name) = raw.strip_suffix("/diff") {
        (name, Action::Diff)
    } else if let Some(name) = raw.strip_suffix("/copy") {
        (name, Action::Copy)
    } else if let Some(found) = version_action(raw) {
        found
    } else {
        (raw, Action::Content)
    };
    let name = percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| AppError::BadRequest("document name is not valid UTF-8".into()))?;
    Ok((DocName::parse(&name)?, action))
}

#[derive(Debug, Deserialize)]
struct EncodingQuery {
    v: Option<String>,
}

impl EncodingQuery {
    fn encoding(&self) -> Result<Encoding, AppError> {
        match self.v.as_deref() {
            None | Some("1") => Ok(Encoding::V1),
            Some("2") => Ok(Encoding::V2),
            Some(other) => Err(AppError::BadRequest(format!(
                "v must be 1 or 2 (the Yjs update encoding), not {other:?}"
            ))),
        }
    }
}

/// Decides and records the request before it runs.
async fn admit(
    state: &AppState,
    caller: &Caller,
    name: &DocName,
    action: &Action,
    history: &versions::HistoryQuery,
    post: bool,
    uri: &Uri,
) -> Result<(), AppError> {
    if let Some(audited) = action.audited(history, post) {
        let details = serde_json::json!({ "request": uri.to_string() });
        state.guard.admit(audited, caller, name, details).await?;
    }
    Ok(())
}

async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    uri: Uri,
    Query(query): Query<EncodingQuery>,
    Query(history): Query<versions::HistoryQuery>,
) -> Result<Response, AppError> {
    let (name, action) = target(&uri)?;
    let caller = auth.caller(&state, Target::Document(&name)).await?;
    admit(&state, &caller, &name, &action, &history, false, &uri).await?;
    let registry = &state.registry;
    match action {
        Action::Copy => Err(AppError::BadRequest(
            "a copy is a POST to /api/docs/{document}/copy?source={document}".into(),
        )),
        Action::Versions => versions::list(&state, &name).await,
        Action::Version(id) => versions::get(&state, &name, id, &history).await,
        Action::Diff => versions::diff(&state, &name, &history).await,
        Action::Restore(_) => Err(AppError::BadRequest(
            "a restore is a POST to /api/docs/{document}/versions/{id}/restore".into(),
        )),
        Action::Content => {
            let what = ReadKind::Json;
            match registry
                .request(&name, |reply| Command::Read { what, reply })
                .await?
            {
                ReadOut::Json(json) => Ok(axum::Json(json).into_response()),
                ReadOut::State(_) => Err(AppError::Internal("expected JSON".into())),
            }
        }
        Action::Update => {
            let what = ReadKind::State(query.encoding()?);
            match registry
                .request(&name, |reply| Command::Read { what, reply })
                .await?
            {
                ReadOut::State(bytes) => {
                    state.guard.lineage(exported(&caller, &name, &uri)).await;
                    Ok(
                        ([(header::CONTENT_TYPE, "application/octet-stream")], bytes)
                            .into_response(),
                    )
                }
                ReadOut::Json(_) => Err(AppError::Internal("expected a state".into())),
            }
        }
        Action::Presence => {
            let present = registry
                .request(&name, |reply| Command::Presence { reply })
                .await?;
            Ok(
                axum::Json(serde_json::json!({ "document": name.as_str(), "present": present }))
                    .into_response(),
            )
        }
    }
}

async fn write(
    State(state): State<AppState>,
    auth: Authenticated,
    uri: Uri,
    Query(query): Query<EncodingQuery>,
    Query(history): Query<versions::HistoryQuery>,
    Query(copy_query): Query<CopyQuery>,
    body: Body,
) -> Result<Response, AppError> {
    let (name, action) = target(&uri)?;
    let caller = Arc::new(auth.caller(&state, Target::Document(&name)).await?);
    admit(&state, &caller, &name, &action, &history, true, &uri).await?;
    match action {
        Action::Update => write_update(&state, name, &query, caller, body).await,
        Action::Versions => versions::save(&state, &name, caller.author(), body).await,
        Action::Restore(id) => versions::restore(&state, &name, caller.author(), id).await,
        Action::Copy => copy(&state, name, copy_query.source.as_deref(), caller).await,
        _ => Err(AppError::BadRequest(
            "POST is accepted on /api/docs/{document}/update, /copy, /versions and /versions/{id}/restore"
                .into(),
        )),
    }
}

async fn write_update(
    state: &AppState,
    name: DocName,
    query: &EncodingQuery,
    caller: Arc<Caller>,
    body: Body,
) -> Result<Response, AppError> {
    let encoding = query.encoding()?;
    let limit = state.config.docs.limits.max_update_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        AppError::TooLarge(format!("update body exceeds the limit of {limit} bytes"))
    })?;
    if bytes.is_empty() {
        return Err(AppError::BadRequest(
            "empty body: send a binary Yjs update".into(),
        ));
    }
    let update = bytes.to_vec();
    state
        .registry
        .request(&name, |reply| Command::Write {
            update: update.clone(),
            encoding,
            origin: caller.author().to_owned(),
            caller: caller.clone(),
            reply,
        })
        .await?;
    state
        .guard
        .lineage(LineageEdge {
            from: LineageNode::external("http", "POST update"),
            to: LineageNode::document(name.as_str()),
            kind: EdgeKind::Import,
            actor: caller.user.clone(),
            at_ms: now_ms(),
            details: serde_json::json!({ "bytes": update.len() }),
        })
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct CopyQuery {
    source: Option<String>,
}

/// Merges `source`'s whole state into `name`, as `caller`. Reading the
/// source is its own decision: copying out of a document needs the right
/// to export it.
async fn copy(
    state: &AppState,
    name: DocName,
    source: Option<&str>,
    caller: Arc<Caller>,
) -> Result<Response, AppError> {
    let source = DocName::parse(source.ok_or_else(|| {
        AppError::BadRequest("copy needs ?source={document to copy from}".into())
    })?)?;
    let details = serde_json::json!({ "copied_to": name.as_str() });
    state
        .guard
        .admit(AuditAction::DocumentExport, &caller, &source, details)
        .await?;
    let what = ReadKind::State(Encoding::V1);
    let ReadOut::State(update) = state
        .registry
        .request(&source, |reply| Command::Read { what, reply })
        .await?
    else {
        return Err(AppError::Internal("expected a state".into()));
    };
    state
        .registry
        .request(&name, |reply| Command::Write {
            update: update.clone(),
            encoding: Encoding::V1,
            origin: caller.author().to_owned(),
            caller: caller.clone(),
            reply,
        })
        .await?;
    state
        .guard
        .lineage(LineageEdge {
            from: LineageNode::document(source.as_str()),
            to: LineageNode::document(name.as_str()),
            kind: EdgeKind::Copy,
            actor: caller.user.clone(),
            at_ms: now_ms(),
            details: serde_json::json!({ "bytes": update.len() }),
        })
        .await;
    Ok(
        axum::Json(
            serde_json::json!({ "document": name.as_str(), "copied_from": source.as_str() }),
        )
        .into_response(),
    )
}

/// The lineage edge of a whole-state download.
fn exported(caller: &Caller, name: &DocName, uri: &Uri) -> LineageEdge {
    LineageEdge {
        from: LineageNode::document(name.as_str()),
        to: LineageNode::external("http", uri.path()),
        kind: EdgeKind::Export,
        actor: caller.user.clone(),
        at_ms: now_ms(),
        details: serde_json::json!({}),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
