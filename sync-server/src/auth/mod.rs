//! Who is calling, and with which role.
//!
//! Every request and every WebSocket connection is turned into a
//! [`Caller`] before anything else happens. Governance (audit and policy)
//! and the document tasks read only this type, never headers or tokens.
//!
//! With no identity provider configured the server runs in anonymous mode:
//! every caller is `anonymous` with the owner role. That mode is for local
//! use only.
//!
//! The path of a request: [`credentials`] pulls what the client sent (a
//! bearer token, `?token=`, the session cookie, its address) out of the
//! request; [`Auth::authenticate`] turns it into a [`Principal`] (who, and
//! what their credential allows at most); [`Auth::caller`] resolves the
//! principal for one document or workspace into the [`Caller`] everything
//! else reads. Roles are decided there from group rules and memberships;
//! what a role may do is decided by the policy engine (see `guard`).

pub mod config;
pub mod credentials;
pub mod keys;
pub mod limits;
pub mod session;
pub mod store;
pub mod store_pg;
pub mod tokens;

mod principal;

use std::net::IpAddr;

pub use connectors::Role;
pub use principal::{AccessChange, Auth, AuthError, AuthStartError, Grant, Principal, Target};

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No identity provider configured (local use only).
    Anonymous,
    /// The web UI's session cookie, after an OIDC or LDAP sign-in.
    Session,
    /// An OIDC access or ID token from the identity provider.
    Bearer,
    /// A short-lived document token (JWT) the server issued.
    DocumentToken,
    /// A server-to-server API key.
    ApiKey,
    /// The local break-glass administrator.
    BreakGlass,
    /// An LDAP bind (then a session cookie or a document token).
    Ldap,
}

/// An authenticated caller, resolved for one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable user id: `anonymous`, or the provisioned user's id, or
    /// `key:<id>` for an API key.
    pub user: String,
    /// A name to show (activity feed, attribution), if known.
    pub display_name: Option<String>,
    /// How they signed in.
    pub method: AuthMethod,
    /// Their groups (from SSO or LDAP).
    pub groups: Vec<String>,
    /// Their effective role in the workspace asked about; `None` means no
    /// access at all.
    pub role: Option<Role>,
    /// The client's address, if known.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, if sent.
    pub user_agent: Option<String>,
}

impl Caller {
    /// The anonymous-mode caller: owner of everything.
    pub fn anonymous(ip: Option<IpAddr>, user_agent: Option<String>) -> Self {
        Self {
            user: "anonymous".into(),
            display_name: None,
            method: AuthMethod::Anonymous,
            groups: Vec::new(),
            role: Some(Role::Owner),
            ip,
            user_agent,
        }
    }

    /// The id attribution and activity record for this caller: the stable
    /// user id, never the display name (names change and are not unique,
    /// and GDPR access and erasure find a user's content by id).
    pub fn author(&self) -> &str {
        &self.user
    }
}

/// Opens the identity store beside the document store the configuration
/// names: its own sled database under the data directory, or the same
/// PostgreSQL schema.
pub fn open_store(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn store::IdentityStore>, store::IdentityStoreError> {
    use crate::config::StoreKind;
    Ok(match config.store {
        StoreKind::Sled => std::sync::Arc::new(store::SledIdentityStore::open(
            &config.data_dir.join("identity"),
        )?),
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .ok_or_else(|| store::IdentityStoreError("no database URL".into()))?;
            std::sync::Arc::new(store_pg::PgIdentityStore::open(
                url.expose(),
                &config.database_schema,
            )?)
        }
    })
}
