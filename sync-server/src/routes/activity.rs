//! The activity feed of a workspace:
//!
//! - `GET /api/activity/{workspace}?before={id}&limit={n}`: events, newest
//!   first; page on with `before` set to the answer's `next_before`;
//! - `GET /api/activity/{workspace}/stream`: new events as server-sent
//!   events (`event: edit|version|restore|join|leave`, data the event as
//!   JSON). A subscriber that falls behind gets `event: lagged` with the
//!   number of events it missed, and should page them in.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::docs::{DocError, MAX_NAME_LEN};
use crate::error::AppError;
use crate::history::ActivityEvent;
use crate::state::AppState;

/// Most events one page returns.
const MAX_PAGE: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/activity/{workspace}", get(page))
        .route("/api/activity/{workspace}/stream", get(stream))
}

fn check(workspace: &str) -> Result<(), AppError> {
    if workspace.is_empty()
        || workspace.len() > MAX_NAME_LEN
        || workspace.chars().any(char::is_control)
    {
        return Err(AppError::BadRequest(format!(
            "workspace must be 1-{MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn page(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, AppError> {
    check(&workspace)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::BadRequest(format!("limit must be 1-{MAX_PAGE}")));
    }
    let events = state
        .store
        .activity(&workspace, query.before, limit)
        .await
        .map_err(|e| AppError::from(DocError::Store(e)))?;
    let next_before = (events.len() == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({
        "workspace": workspace,
        "events": events,
        "next_before": next_before,
    }))
    .into_response())
}

async fn stream(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    check(&workspace)?;
    let receiver = state.activity.subscribe();
    let shutdown = state.shutdown.clone();
    let events = futures_util::stream::unfold(
        (receiver, workspace, shutdown),
        |(mut receiver, workspace, shutdown)| async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                let event = match next {
                    Ok(event) if event.workspace == workspace => sse_event(&event),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        Event::default().event("lagged").data(missed.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, workspace, shutdown)));
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(event: &ActivityEvent) -> Event {
    let kind = serde_json::to_value(&event.event.kind)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "activity".into());
    Event::default()
        .event(kind)
        .id(event.id.to_string())
        .json_data(event)
        .unwrap_or_else(|_| Event::default().event("error").data("unserializable event"))
}
