//! The history API of one document (reached through [`super::docs`]):
//!
//! - `GET  …/versions`: the versions, newest first;
//! - `POST …/versions` with `{"label": …, "description": …}`: save a named
//!   version of the current state (answered once stored);
//! - `GET  …/versions/{id}`: a version with its content as JSON, or with
//!   `?format=update` the state as one Yjs update (`&v=2` for lib0 v2);
//! - `POST …/versions/{id}/restore`: edit the document back to that
//!   version's content; every connected client receives the edit;
//! - `GET  …/diff?from={id}[&to={id}]`: what changed between two versions
//!   (`to` defaults to the current state), with who wrote and who deleted
//!   each run of text.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crdt_core::wire::VersionRequest;
use crdt_core::{Document, Encoding};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::docs::{Command, DocError, DocName, ReadKind, ReadOut};
use crate::error::AppError;
use crate::history::{Authors, VersionMeta};
use crate::state::AppState;
use crate::store::StoreError;

/// Query of the history routes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryQuery {
    format: Option<String>,
    v: Option<String>,
    from: Option<u64>,
    to: Option<String>,
}

impl HistoryQuery {
    /// Whether the version is asked for as a Yjs update (an export).
    pub(super) fn wants_update(&self) -> bool {
        self.format.as_deref() == Some("update")
    }
}

fn stored(error: StoreError) -> AppError {
    DocError::Store(error).into()
}

/// Runs CPU-heavy work (loading states, diffs) off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("history task failed: {e}")))?
}

async fn load_version(
    state: &AppState,
    name: &DocName,
    id: u64,
) -> Result<(VersionMeta, Vec<u8>), AppError> {
    state
        .store
        .version(name, id)
        .await
        .map_err(stored)?
        .ok_or_else(|| AppError::NotFound(format!("document {name} has no version {id}")))
}

pub(super) async fn list(state: &AppState, name: &DocName) -> Result<Response, AppError> {
    let mut versions = state.store.versions(name).await.map_err(stored)?;
    versions.reverse();
    Ok(Json(json!({ "document": name.as_str(), "versions": versions })).into_response())
}

pub(super) async fn get(
    state: &AppState,
    name: &DocName,
    id: u64,
    query: &HistoryQuery,
) -> Result<Response, AppError> {
    let (meta, bytes) = load_version(state, name, id).await?;
    match query.format.as_deref() {
        None | Some("json") => {
            let limits = state.config.docs.limits.clone();
            let content = blocking(move || {
                let doc = Document::load(limits, Some((Encoding::V2, bytes.as_slice())), [])
                    .map_err(|e| {
                        AppError::Internal(format!("stored version is unreadable: {e}"))
                    })?;
                doc.to_json()
                    .map_err(|e| AppError::Unprocessable(e.to_string()))
            })
            .await?;
            let mut body =
                serde_json::to_value(&meta).map_err(|e| AppError::Internal(e.to_string()))?;
            body["content"] = content;
            Ok(Json(body).into_response())
        }
        Some("update") => {
            let update = match query.v.as_deref() {
                Some("2") => bytes,
                None | Some("1") => {
                    blocking(move || {
                        let update =
                            <yrs::Update as yrs::updates::decoder::Decode>::decode_v2(&bytes)
                                .map_err(|e| {
                                    AppError::Internal(format!("stored version is unreadable: {e}"))
                                })?;
                        Ok(yrs::updates::encoder::Encode::encode_v1(&update))
                    })
                    .await?
                }
                Some(other) => {
                    return Err(AppError::BadRequest(format!(
                        "v must be 1 or 2 (the Yjs update encoding), not {other:?}"
                    )));
                }
            };
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], update).into_response())
        }
        Some(other) => Err(AppError::BadRequest(format!(
            "format must be json or update, not {other:?}"
        ))),
    }
}

/// Saves a named version; `author` is the caller's user id.
pub(super) async fn save(
    state: &AppState,
    name: &DocName,
    author: &str,
    body: Body,
) -> Result<Response, AppError> {
    let bytes = to_bytes(body, 4096)
        .await
        .map_err(|_| AppError::TooLarge("a version request is at most 4096 bytes".into()))?;
    let request = VersionRequest::parse(&bytes).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let meta = state
        .registry
        .request(name, |reply| Command::SaveVersion {
            request: request.clone(),
            author: author.to_owned(),
            reply,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

/// Restores version `id`; `author` is the caller's user id.
pub(super) async fn restore(
    state: &AppState,
    name: &DocName,
    author: &str,
    id: u64,
) -> Result<Response, AppError> {
    let (_, bytes) = load_version(state, name, id).await?;
    let bytes = Arc::new(bytes);
    let meta = state
        .registry
        .request(name, |reply| Command::Restore {
            version: id,
            state: bytes.clone(),
            author: author.to_owned(),
            reply,
        })
        .await?;
    Ok(Json(json!({ "restored": id, "version": meta })).into_response())
}

pub(super) async fn diff(
    state: &AppState,
    name: &DocName,
    query: &HistoryQuery,
) -> Result<Response, AppError> {
    let from = query
        .from
        .ok_or_else(|| AppError::BadRequest("diff needs ?from={version id}".into()))?;
    let (from_meta, from_state) = load_version(state, name, from).await?;
    let (to_meta, to_state, until_ms) = match query.to.as_deref() {
        None | Some("current") => {
            let what = ReadKind::State(Encoding::V2);
            let ReadOut::State(bytes) = state
                .registry
                .request(name, |reply| Command::Read { what, reply })
                .await?
            else {
                return Err(AppError::Internal("expected a state".into()));
            };
            (Value::String("current".into()), bytes, u64::MAX)
        }
        Some(id) => {
            let id = id.parse().map_err(|_| {
                AppError::BadRequest(format!(
                    "to must be a version id or \"current\", not {id:?}"
                ))
            })?;
            let (meta, bytes) = load_version(state, name, id).await?;
            let until = meta.created_ms;
            (
                serde_json::to_value(meta).map_err(|e| AppError::Internal(e.to_string()))?,
                bytes,
                until,
            )
        }
    };
    let buckets = state.store.attribution(name).await.map_err(stored)?;
    let limits = state.config.docs.limits.clone();
    let after_ms = from_meta.created_ms;
    let (roots, authors) = blocking(move || {
        let diff = crdt_core::version::diff(
            &limits,
            (Encoding::V2, &from_state),
            (Encoding::V2, &to_state),
        )
        .map_err(|e| AppError::Unprocessable(e.to_string()))?;
        let mut roots =
            serde_json::to_value(&diff.roots).map_err(|e| AppError::Internal(e.to_string()))?;
        let authors = attribute(
            &mut roots,
            &Authors::from_buckets(&buckets),
            after_ms,
            until_ms,
        );
        Ok((roots, authors))
    })
    .await?;
    Ok(Json(json!({
        "document": name.as_str(),
        "from": from_meta,
        "to": to_meta,
        "roots": roots,
        "authors": authors,
    }))
    .into_response())
}

/// Characters one author inserted and deleted between two versions.
#[derive(Debug, Default, serde::Serialize)]
struct Contribution {
    inserted: usize,
    deleted: usize,
}

/// Names who wrote each text run (`author`) and who deleted each deleted
/// run (`deleted_by`), and sums characters per author.
fn attribute(
    roots: &mut Value,
    authors: &Authors,
    after_ms: u64,
    until_ms: u64,
) -> BTreeMap<String, Contribution> {
    let mut totals: BTreeMap<String, Contribution> = BTreeMap::new();
    let Some(roots) = roots.as_object_mut() else {
        return totals;
    };
    for root in roots.values_mut() {
        let Some(runs) = root.get_mut("runs").and_then(Value::as_array_mut) else {
            continue;
        };
        for run in runs {
            let client = run["client"].as_u64();
            let clock = run["clock"].as_u64().and_then(|c| u32::try_from(c).ok());
            let chars = run["text"].as_str().map_or(0, |t| t.chars().count());
            let writer = client.and_then(|c| authors.writer(c)).map(str::to_owned);
            run["author"] = writer.clone().map_or(Value::Null, Value::String);
            match run["change"].as_str() {
                Some("inserted") => {
                    if let Some(writer) = writer {
                        totals.entry(writer).or_default().inserted += chars;
                    }
                }
                Some("deleted") => {
                    let deleter = match (client, clock) {
                        (Some(client), Some(clock)) => authors
                            .deleter(client, clock, after_ms, until_ms)
                            .map(str::to_owned),
                        _ => None,
                    };
                    if let Some(deleter) = &deleter {
                        totals.entry(deleter.clone()).or_default().deleted += chars;
                    }
                    run["deleted_by"] = deleter.map_or(Value::Null, Value::String);
                }
                _ => {}
            }
        }
    }
    totals
}
