//! Identity connectors for the sync server: who someone is, and what they
//! may do in each workspace.
//!
//! - [`sso::oidc`] (feature `oidc`): OpenID Connect single sign-on. The
//!   web UI's login (authorization code + PKCE) and bearer-token validation
//!   for the API and WebSocket, with presets for Azure AD (Entra ID), Okta
//!   and Google Workspace.
//! - [`sso::ldap`] (feature `ldap`): simple bind against an on-premises
//!   directory, reading group membership.
//! - [`roles`]: configuration mapping those groups to workspace [`Role`]s.
//!
//! Every sign-in ends in the same [`Identity`]; sessions, tokens of our own
//! and policy are the server's business, not this crate's.
//!
//! # Quick start
//!
//! Groups to roles, as the server does after any sign-in:
//!
//! ```
//! use connectors::{GroupMapping, Identity, Role};
//!
//! let mapping: GroupMapping = toml::from_str(r#"
//!     [[rules]]
//!     group = "eng-admins"
//!     workspace = "acme"
//!     role = "admin"
//!
//!     [[rules]]
//!     group = "staff"
//!     workspace = "*"
//!     role = "viewer"
//! "#).unwrap();
//!
//! let alice = Identity {
//!     subject: "248289761001".into(),
//!     issuer: "https://login.example.com".into(),
//!     email: Some("alice@example.com".into()),
//!     name: Some("Alice".into()),
//!     groups: vec!["eng-admins".into(), "staff".into()],
//!     expires_at: None,
//! };
//! let roles = mapping.roles_for(&alice.groups);
//! assert_eq!(roles["acme"], Role::Admin);
//! assert_eq!(roles["*"], Role::Viewer);
//! assert_eq!(mapping.role_in(&alice.groups, "elsewhere"), Some(Role::Viewer));
//! ```
//!
//! An OIDC login and a bearer token (needs a provider, so not run here):
//!
//! ```no_run
//! # #[cfg(feature = "oidc")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use connectors::sso::oidc::{OidcConfig, OidcProvider};
//!
//! let mut config = OidcConfig::okta("acme.okta.com", "0oa1example", "https://collab.acme.com/auth/callback")?;
//! config.client_secret = Some("from-the-secret-store".into());
//! let provider = OidcProvider::discover(config).await?;
//!
//! // GET /login
//! let start = provider.begin_login();
//! // store start.state under start.state.key(), set the cookie, redirect to start.authorize_url
//!
//! // GET /auth/callback?code=..&state=..
//! # let (stored_state, code, returned_state) = (start.state, "code", "state");
//! let person = provider.finish_login(stored_state, code, returned_state).await?;
//!
//! // Authorization: Bearer ...
//! let caller = provider.validate_bearer("eyJhbGciOi...").await?;
//! # let _ = (person, caller);
//! # Ok(())
//! # }
//! ```

#[cfg(any(feature = "oidc", feature = "ldap"))]
mod duration_secs;
mod identity;
pub mod roles;
mod secret;
pub mod sso;

pub use identity::Identity;
pub use roles::{GroupMapping, Role, RoleRule};
pub use secret::Secret;
