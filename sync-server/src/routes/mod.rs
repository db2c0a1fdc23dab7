//! HTTP routes, one router per resource, merged here.

mod activity;
mod audit;
mod docs;
mod health;
mod keys;
mod limit;
mod members;
mod page;
mod reports;
mod settings;
mod signin;
mod tokens;
mod versions;

use axum::Router;

use crate::state::AppState;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(docs::router())
        .merge(activity::router())
        .merge(audit::router())
        .merge(reports::router())
        .merge(tokens::router())
        .merge(keys::router())
        .merge(members::router())
        .merge(settings::router())
        .merge(signin::router())
        .merge(page::router())
        .merge(crate::ws::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit::limit,
        ))
        .with_state(state)
}
