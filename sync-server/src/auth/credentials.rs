//! What a client presents, pulled out of the request by axum extractors.
//!
//! - `Authorization: Bearer <token>`: an OIDC access or ID token, a
//!   document token of ours, or an API key (`csk_...`);
//! - `?token=<token>`: the same, for clients that cannot set headers (the
//!   y-websocket provider sends its `params` option as query parameters,
//!   and browsers cannot set headers on a WebSocket);
//! - the session cookie, after a browser sign-in.
//!
//! The header wins over the query, which wins over the cookie: an explicit
//! credential is what the client means to use.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::{Caller, Principal, Target};
use crate::error::AppError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "collab_session";

/// The prefix of API keys, which tells them apart from JWTs.
pub const API_KEY_PREFIX: &str = "csk_";

/// One credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token (header or query).
    Bearer(String),
    /// An API key (header or query).
    ApiKey(String),
    /// The session cookie's value.
    Session(String),
}

/// Everything a request says about who sent it.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The credential, if any.
    pub credential: Option<Credential>,
    /// The client's address (the TCP peer).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl Credentials {
    /// Reads headers, the query string and the peer address.
    pub fn from_parts(parts: &Parts) -> Self {
        let headers = &parts.headers;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            })
            .or_else(|| query_token(parts.uri.query()));
        let credential = match bearer {
            Some(token) if token.starts_with(API_KEY_PREFIX) => Some(Credential::ApiKey(token)),
            Some(token) => Some(Credential::Bearer(token)),
            None => cookie(headers, SESSION_COOKIE).map(Credential::Session),
        };
        Self {
            credential,
            ip: parts
                .extensions
                .get::<ConnectInfo<ClientAddr>>()
                .map(|c| c.0.0.ip()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Credentials::from_parts(parts))
    }
}

/// Who presented `credentials`; a user seen for the first time is
/// provisioned, and that is put on the audit trail.
pub async fn authenticate(
    state: &AppState,
    credentials: &Credentials,
) -> Result<Principal, AppError> {
    let principal = state.auth.authenticate(credentials).await?;
    if state.auth.provision(&principal).await? {
        let caller = Caller {
            user: principal.user.clone(),
            display_name: principal.display_name.clone(),
            method: principal.method,
            groups: principal.groups.clone(),
            role: None,
            ip: credentials.ip,
            user_agent: credentials.user_agent.clone(),
        };
        state.guard.record_event(
            governance::audit::Action::SignIn,
            &caller,
            "*",
            governance::audit::Outcome::Allowed,
            serde_json::json!({ "provisioned": true, "method": principal.method }),
        );
    }
    Ok(principal)
}

/// An authenticated request: who, and how they got in. Refuses the request
/// (401, naming the problem) when sign-in is configured and the credential
/// is missing or invalid.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub principal: Principal,
    /// What they sent.
    pub credentials: Credentials,
}

impl Authenticated {
    /// The caller for `target`, or why the credential does not open it.
    pub async fn caller(&self, state: &AppState, target: Target<'_>) -> Result<Caller, AppError> {
        Ok(state
            .auth
            .caller(&self.principal, target, &self.credentials)
            .await?)
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credentials = Credentials::from_parts(parts);
        let principal = authenticate(state, &credentials).await?;
        Ok(Self {
            principal,
            credentials,
        })
    }
}

/// The client's address as axum's connect info, for the plain and the
/// TLS listener alike (see `crate::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);
