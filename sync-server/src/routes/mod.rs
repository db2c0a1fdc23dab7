//! HTTP routes, one router per resource, merged here.

mod activity;
mod audit;
mod docs;
mod health;
mod page;
mod reports;
mod versions;

use axum::Router;
use axum::http::HeaderMap;

use crate::auth::Caller;
use crate::state::AppState;

/// Who sent an HTTP request. Anonymous until sign-in is configured.
pub(crate) fn caller(headers: &HeaderMap) -> Caller {
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Caller::anonymous(None, user_agent)
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(docs::router())
        .merge(activity::router())
        .merge(audit::router())
        .merge(reports::router())
        .merge(page::router())
        .merge(crate::ws::router())
        .with_state(state)
}
