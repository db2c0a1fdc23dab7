//! Who signed in, as the connectors report it to the server.

use std::time::SystemTime;

/// A person authenticated by an identity provider or a directory.
///
/// The same shape comes out of OIDC (a finished login or a validated bearer
/// token) and out of LDAP, so the server maps every kind of sign-in to roles
/// the same way: [`groups`](Self::groups) goes through
/// [`GroupMapping::roles_for`](crate::roles::GroupMapping::roles_for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Stable identifier of the person at the [`issuer`](Self::issuer): the
    /// OIDC `sub` claim, or the entry's DN for LDAP. Key accounts on
    /// `(issuer, subject)`, never on the email address, which can be reused.
    pub subject: String,
    /// Who vouched for the person: the OIDC issuer URL, or the LDAP URL.
    pub issuer: String,
    /// Email address, when the provider states one. An OIDC address that the
    /// provider marks `email_verified: false` is left out.
    pub email: Option<String>,
    /// Display name (`name` claim, or the configured LDAP attribute).
    pub name: Option<String>,
    /// Group names (or IDs, for Azure AD) the person belongs to, as the
    /// provider spells them; empty when the provider sends none.
    pub groups: Vec<String>,
    /// When the token this identity came from stops being valid (`exp`).
    /// `None` for LDAP, where the server alone decides how long a session
    /// lasts.
    pub expires_at: Option<SystemTime>,
}
