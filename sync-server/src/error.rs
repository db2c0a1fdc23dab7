//! The one error type of the HTTP API. A 4xx carries a message that names
//! what was wrong; a 5xx says only "internal error" and logs the cause.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crdt_core::{ApplyError, UpdateError};

use crate::docs::{DocError, NameError};

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// A WebSocket endpoint was called without a valid upgrade (426).
    #[error("{0}")]
    UpgradeRequired(String),
    /// No valid credential (401); the message names what is wrong with it.
    #[error("{0}")]
    Unauthorized(String),
    /// Refused by policy or role (403); the message names the policy.
    #[error("{0}")]
    Forbidden(String),
    /// Over a request limit (429); `retry_after` seconds until it resets.
    #[error("{message}")]
    TooManyRequests {
        /// Which limit, and how far over.
        message: String,
        /// Seconds to wait, sent as `Retry-After`.
        retry_after: u64,
    },
    /// Well-formed but cannot be processed (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Temporarily unable to serve (503).
    #[error("{0}")]
    Unavailable(String),
    /// A fault on our side (500); the message is logged, not returned.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::Unauthorized(m) => {
                let body = Json(serde_json::json!({ "error": m }));
                return (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    body,
                )
                    .into_response();
            }
            AppError::TooManyRequests {
                message,
                retry_after,
            } => {
                let body = Json(serde_json::json!({ "error": message }));
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, retry_after.to_string())],
                    body,
                )
                    .into_response();
            }
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            AppError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            AppError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            AppError::UpgradeRequired(m) => (
                StatusCode::UPGRADE_REQUIRED,
                format!("this is a WebSocket endpoint for the y-websocket protocol: {m}"),
            ),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<NameError> for AppError {
    fn from(error: NameError) -> Self {
        AppError::BadRequest(error.to_string())
    }
}

impl From<DocError> for AppError {
    fn from(error: DocError) -> Self {
        match error {
            DocError::NotFound => AppError::NotFound(error.to_string()),
            DocError::Invalid(ApplyError::Decode(UpdateError::TooLarge { .. })) => {
                AppError::TooLarge(error.to_string())
            }
            DocError::Invalid(_) => AppError::BadRequest(error.to_string()),
            DocError::Json(_) => AppError::Unprocessable(error.to_string()),
            DocError::Closed | DocError::ShuttingDown => AppError::Unavailable(error.to_string()),
            DocError::Store(cause) => {
                tracing::warn!(%cause, "storage error");
                AppError::Unavailable("storage unavailable".into())
            }
            DocError::Load(cause) => AppError::Internal(cause.to_string()),
            DocError::Restore(_) | DocError::Erase(_) => AppError::Unprocessable(error.to_string()),
            DocError::Forbidden(_) => AppError::Forbidden(error.to_string()),
        }
    }
}
