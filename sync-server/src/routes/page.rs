//! The built-in page: two editors side by side on one document.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::state::AppState;

const INDEX: &str = include_str!("../../assets/index.html");

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Html(INDEX) }))
}
