//! Who is calling, and with which role.
//!
//! Every request and every WebSocket connection is turned into a
//! [`Caller`] before anything else happens. Governance (audit and policy)
//! and the document tasks read only this type, never headers or tokens.
//!
//! With no identity provider configured the server runs in anonymous mode:
//! every caller is `anonymous` with the owner role. That mode is for local
//! use only.

use std::net::IpAddr;

pub use connectors::Role;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

    /// The name attribution and activity use for this caller.
    pub fn author(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.user)
    }
}
