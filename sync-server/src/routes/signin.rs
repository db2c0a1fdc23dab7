//! Browser sign-in: `/auth/login` → identity provider → `/auth/callback`
//! (OIDC authorization code with PKCE), `POST /auth/ldap` (directory
//! bind), `POST /auth/break-glass` (the local administrator, off unless
//! configured), `POST /auth/logout`, and `GET /auth/me`. A successful sign-in
//! sets the session cookie; every sign-in and failed sign-in is on the
//! audit trail.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use connectors::Identity;
use governance::audit::{Action, Outcome};
use serde::Deserialize;
use serde_json::json;

use crate::auth::credentials::{self, Authenticated, Credentials, SESSION_COOKIE};
use crate::auth::session::{LOGIN_COOKIE, set_cookie};
use crate::auth::{AuthMethod, Caller, Principal};
use crate::error::AppError;
use crate::state::AppState;

/// The sign-in routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/ldap", post(ldap))
        .route("/auth/break-glass", post(break_glass))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    provider: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let name = query.provider.as_deref();
    let provider = state.auth.oidc(name).ok_or_else(|| {
        AppError::NotFound(match name {
            Some(name) => format!("no OIDC provider named {name:?}"),
            None => "name the provider: /auth/login?provider=NAME".into(),
        })
    })?;
    let provider_name = state
        .auth
        .config()
        .oidc
        .iter()
        .find(|(_, c)| c.issuer_url == provider.config().issuer_url)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    let start = provider.begin_login();
    let ttl = provider.config().login_ttl;
    let key = start.state.key().to_owned();
    state.auth.logins().insert(&provider_name, start.state, ttl);
    let cookie = set_cookie(
        LOGIN_COOKIE,
        &key,
        "/auth",
        ttl.as_secs(),
        state.auth.config().cookie_secure,
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, start.authorize_url.to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    credentials: Credentials,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let result = finish_oidc(&state, &headers, query).await;
    signed_in(&state, &credentials, result, AuthMethod::Bearer, "oidc")
}

async fn finish_oidc(
    state: &AppState,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<Identity, String> {
    if let Some(error) = query.error {
        let description = query.error_description.unwrap_or_default();
        return Err(format!(
            "the identity provider refused the sign-in: {error} {description}"
        ));
    }
    let (Some(code), Some(returned)) = (query.code, query.state) else {
        return Err("the callback lacks code and state".into());
    };
    let key = credentials::cookie(headers, LOGIN_COOKIE)
        .ok_or("no sign-in in progress in this browser (login cookie missing); start again")?;
    let (provider_name, login) = state
        .auth
        .logins()
        .take(&key)
        .ok_or("this sign-in attempt is unknown or already used; start again")?;
    let provider = state
        .auth
        .oidc(Some(&provider_name))
        .ok_or("the provider of this sign-in is no longer configured")?;
    provider
        .finish_login(login, &code, &returned)
        .await
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct LdapLogin {
    username: String,
    password: String,
}

async fn ldap(
    State(state): State<AppState>,
    credentials: Credentials,
    Json(login): Json<LdapLogin>,
) -> Result<Response, AppError> {
    let directory = state
        .auth
        .ldap()
        .ok_or_else(|| AppError::NotFound("no LDAP directory is configured".into()))?;
    let result = match directory
        .authenticate(&login.username, &login.password)
        .await
    {
        Ok(identity) => Ok(identity),
        Err(error) if error.is_user_error() => Err(error.to_string()),
        Err(error) => {
            tracing::warn!(%error, "LDAP sign-in failed on the directory's side");
            return Err(AppError::Unavailable(format!(
                "directory unavailable: {error}"
            )));
        }
    };
    let attempted = login.username;
    signed_in(
        &state,
        &credentials,
        result.map_err(|e| format!("{e} ({attempted})")),
        AuthMethod::Ldap,
        "ldap",
    )
}

#[derive(Deserialize)]
struct BreakGlassLogin {
    user: String,
    password: String,
}

/// The local administrator, for when the identity provider is down: off
/// unless the identity file has a `[break-glass]` account; every use (and
/// every failed attempt) is on the audit trail.
async fn break_glass(
    State(state): State<AppState>,
    credentials: Credentials,
    Json(login): Json<BreakGlassLogin>,
) -> Result<Response, AppError> {
    let account = state
        .auth
        .config()
        .break_glass
        .clone()
        .ok_or_else(|| AppError::NotFound("break-glass sign-in is off".into()))?;
    let attempted = login.user.clone();
    let hash = account.password_argon2.clone();
    // Argon2 is slow on purpose: off the runtime's threads.
    let verified = tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        let parsed = argon2::PasswordHash::new(&hash).map_err(|e| e.to_string())?;
        Ok::<bool, String>(
            argon2::Argon2::default()
                .verify_password(login.password.as_bytes(), &parsed)
                .is_ok(),
        )
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
    .map_err(|e| AppError::Internal(format!("break-glass hash: {e}")))?;
    let result = if verified && login.user == account.user {
        Ok(Identity {
            subject: account.user.clone(),
            issuer: "break-glass".into(),
            email: None,
            name: Some(format!("{} (break-glass)", account.user)),
            groups: Vec::new(),
            expires_at: None,
        })
    } else {
        Err(format!(
            "invalid break-glass user or password ({attempted})"
        ))
    };
    signed_in(
        &state,
        &credentials,
        result,
        AuthMethod::BreakGlass,
        "break-glass",
    )
}

/// Ends a sign-in: the session cookie and an audit entry on success; a
/// 401 naming the problem and an audit entry on failure.
fn signed_in(
    state: &AppState,
    credentials: &Credentials,
    result: Result<Identity, String>,
    method: AuthMethod,
    via: &str,
) -> Result<Response, AppError> {
    let identity = match result {
        Ok(identity) => identity,
        Err(reason) => {
            let caller = Caller {
                user: "unknown".into(),
                display_name: None,
                method,
                groups: Vec::new(),
                role: None,
                ip: credentials.ip,
                user_agent: credentials.user_agent.clone(),
            };
            state.guard.record_event(
                Action::SignInFailed,
                &caller,
                "*",
                Outcome::Failed {
                    reason: reason.clone(),
                },
                json!({ "via": via }),
            );
            return Err(AppError::Unauthorized(format!("sign-in failed: {reason}")));
        }
    };
    let principal = Principal::from_identity(&identity, method);
    let (cookie, max_age) = state
        .auth
        .issue_session(&principal, method)
        .ok_or_else(|| AppError::Internal("sign-in without a token secret".into()))?;
    let caller = Caller {
        user: principal.user.clone(),
        display_name: principal.display_name.clone(),
        method,
        groups: principal.groups.clone(),
        role: None,
        ip: credentials.ip,
        user_agent: credentials.user_agent.clone(),
    };
    state.guard.record_event(
        Action::SignIn,
        &caller,
        "*",
        Outcome::Allowed,
        json!({ "via": via, "groups": principal.groups }),
    );
    let secure = state.auth.config().cookie_secure;
    let body = json!({
        "user": principal.user,
        "name": principal.display_name,
        "groups": principal.groups,
        "roles": state.auth.config().roles.roles_for(&principal.groups),
    });
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    for value in [
        set_cookie(SESSION_COOKIE, &cookie, "/", max_age, secure),
        set_cookie(LOGIN_COOKIE, "", "/auth", 0, secure),
    ] {
        if let Ok(value) = value.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

async fn logout(State(state): State<AppState>, auth: Authenticated) -> Response {
    if let Ok(caller) = auth
        .caller(&state, crate::auth::Target::Workspace("*"))
        .await
    {
        state
            .guard
            .record_event(Action::SignOut, &caller, "*", Outcome::Allowed, json!({}));
    }
    let cookie = set_cookie(
        SESSION_COOKIE,
        "",
        "/",
        0,
        state.auth.config().cookie_secure,
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

async fn me(State(state): State<AppState>, auth: Authenticated) -> Json<serde_json::Value> {
    let principal = &auth.principal;
    Json(json!({
        "user": principal.user,
        "name": principal.display_name,
        "method": principal.method,
        "groups": principal.groups,
        "anonymous": state.auth.is_anonymous(),
        "group_roles": state.auth.config().roles.roles_for(&principal.groups),
    }))
}
