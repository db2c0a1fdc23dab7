//! Single sign-on: OpenID Connect providers and LDAP directories, each
//! behind its own cargo feature.

#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "oidc")]
pub mod oidc;
