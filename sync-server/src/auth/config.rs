//! The identity file (`--identity-file`): identity providers, the
//! directory, group-to-role rules, and the secrets of our own tokens.
//!
//! ```toml
//! token-secret = "at least 32 random bytes, base64 or plain"   # or --token-secret
//! token-max-ttl-secs = 3600
//!
//! [[oidc]]
//! name = "okta"                 # used in /auth/login?provider=okta
//! preset = "okta"               # okta | azure-ad | google | generic
//! domain = "acme.okta.com"      # okta: the org domain; google: the Workspace domain
//! client-id = "0oa1example"
//! client-secret = "..."
//! redirect-url = "https://collab.acme.com/auth/callback"
//! audiences = ["api://collab"]  # bearer tokens; default: the client id
//!
//! [ldap]                        # connectors' LdapConfig, snake_case keys
//! url = "ldaps://ldap.acme.com"
//! user = { mode = "dn_template", dn_template = "uid={username},ou=people,dc=acme,dc=com" }
//! groups = { mode = "member_of", attribute = "memberOf" }
//!
//! [[roles]]
//! group = "eng-admins"
//! workspace = "acme"            # "*" for every workspace
//! role = "admin"
//!
//! [break-glass]                 # off unless present
//! user = "root"
//! password-argon2 = "$argon2id$v=19$..."
//! ```
//!
//! With no provider, no directory and no break-glass account the server is
//! in anonymous mode: everyone is the owner of everything. That is for
//! local use only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use connectors::sso::ldap::LdapConfig;
use connectors::sso::oidc::OidcConfig;
use connectors::{GroupMapping, RoleRule, Secret};
use serde::Deserialize;

/// Shortest token secret accepted, in bytes: HS256 wants a key at least as
/// long as its output.
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Why the identity configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityConfigError {
    /// The file could not be read.
    #[error("cannot read identity file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid identity TOML.
    #[error("invalid identity file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        reason: String,
    },
    /// A value is wrong.
    #[error("identity: {0}")]
    Invalid(String),
}

/// Which ready-made OIDC settings an entry starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OidcPreset {
    /// Any provider with a discovery document; needs `issuer-url`.
    #[default]
    Generic,
    /// Azure AD (Entra ID); needs `tenant`.
    AzureAd,
    /// Okta; needs `domain` (the org's domain).
    Okta,
    /// Google Workspace; needs `domain` (the Workspace domain).
    Google,
}

/// One `[[oidc]]` entry of the identity file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OidcEntry {
    /// Short name, for `/auth/login?provider=NAME`.
    pub name: String,
    /// The preset the settings start from.
    #[serde(default)]
    pub preset: OidcPreset,
    /// The issuer (generic).
    pub issuer_url: Option<String>,
    /// The Azure AD tenant id (azure-ad).
    pub tenant: Option<String>,
    /// The Okta org domain or Google Workspace domain.
    pub domain: Option<String>,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret, for a confidential client.
    pub client_secret: Option<Secret>,
    /// This server's `/auth/callback` URL as registered at the provider.
    pub redirect_url: String,
    /// Audiences a bearer token may carry; default: the client id.
    pub audiences: Option<Vec<String>>,
    /// The claim holding groups; the preset's default otherwise.
    pub groups_claim: Option<String>,
    /// Scopes asked for at sign-in besides `openid`.
    pub scopes: Option<Vec<String>>,
    /// Seconds a cached JWKS is trusted before it is fetched again.
    pub jwks_refresh_secs: Option<u64>,
    /// Least seconds between two fetches caused by unknown key ids.
    pub jwks_refetch_cooldown_secs: Option<u64>,
}

impl OidcEntry {
    /// The connectors' configuration this entry describes.
    pub fn to_config(&self) -> Result<OidcConfig, IdentityConfigError> {
        let need = |value: &Option<String>, key: &str| {
            value.clone().ok_or_else(|| {
                IdentityConfigError::Invalid(format!(
                    "oidc provider {:?} ({:?}) needs {key}",
                    self.name, self.preset
                ))
            })
        };
        let client = self.client_id.clone();
        let redirect = self.redirect_url.clone();
        let invalid = |e: connectors::sso::oidc::OidcConfigError| {
            IdentityConfigError::Invalid(format!("oidc provider {:?}: {e}", self.name))
        };
        let mut config = match self.preset {
            OidcPreset::Generic => {
                OidcConfig::generic(need(&self.issuer_url, "issuer-url")?, client, redirect)
            }
            OidcPreset::AzureAd => {
                OidcConfig::azure_ad(&need(&self.tenant, "tenant")?, client, redirect)
                    .map_err(invalid)?
            }
            OidcPreset::Okta => OidcConfig::okta(&need(&self.domain, "domain")?, client, redirect)
                .map_err(invalid)?,
            OidcPreset::Google => {
                OidcConfig::google(&need(&self.domain, "domain")?, client, redirect)
                    .map_err(invalid)?
            }
        };
        config.client_secret = self.client_secret.clone();
        if let Some(audiences) = &self.audiences {
            config.audiences = audiences.clone();
        }
        if let Some(claim) = &self.groups_claim {
            config.groups_claim = Some(claim.clone());
        }
        if let Some(scopes) = &self.scopes {
            config.scopes = scopes.clone();
        }
        if let Some(secs) = self.jwks_refresh_secs {
            config.jwks_refresh_interval = Duration::from_secs(secs);
        }
        if let Some(secs) = self.jwks_refetch_cooldown_secs {
            config.jwks_refetch_cooldown = Duration::from_secs(secs);
        }
        Ok(config)
    }
}

/// The local administrator for when the identity provider is down.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BreakGlass {
    /// The account's name (its user id is `break-glass:NAME`).
    pub user: String,
    /// The password's argon2 hash in PHC form (`$argon2id$...`).
    pub password_argon2: String,
}

impl std::fmt::Debug for BreakGlass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakGlass")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The identity file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IdentityFile {
    /// OpenID Connect providers.
    #[serde(default)]
    pub oidc: Vec<OidcEntry>,
    /// The LDAP directory.
    pub ldap: Option<LdapConfig>,
    /// Group-to-role rules.
    #[serde(default)]
    pub roles: Vec<RoleRule>,
    /// Secret signing document tokens and sessions.
    pub token_secret: Option<Secret>,
    /// Longest lifetime of a document token, in seconds.
    pub token_max_ttl_secs: Option<u64>,
    /// Lifetime of a sign-in session, in seconds.
    pub session_ttl_secs: Option<u64>,
    /// Mark the session cookie `Secure` (on unless the server is plain
    /// HTTP on loopback).
    pub cookie_secure: Option<bool>,
    /// The break-glass administrator; off when absent.
    pub break_glass: Option<BreakGlass>,
}

impl IdentityFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, IdentityConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| IdentityConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| IdentityConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The resolved identity configuration.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// OpenID Connect providers, by name.
    pub oidc: Vec<(String, OidcConfig)>,
    /// The LDAP directory, if any.
    pub ldap: Option<LdapConfig>,
    /// Groups to workspace roles.
    pub roles: GroupMapping,
    /// Signs document tokens and session cookies.
    pub token_secret: Option<Secret>,
    /// Longest lifetime of a document token.
    pub token_max_ttl: Duration,
    /// Lifetime of a sign-in session.
    pub session_ttl: Duration,
    /// Whether the session cookie is `Secure`.
    pub cookie_secure: bool,
    /// The break-glass administrator, if enabled.
    pub break_glass: Option<BreakGlass>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            oidc: Vec::new(),
            ldap: None,
            roles: GroupMapping::default(),
            token_secret: None,
            token_max_ttl: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(8 * 3600),
            cookie_secure: false,
            break_glass: None,
        }
    }
}

impl IdentityConfig {
    /// Resolves the file (if any) with the flags, which win.
    pub fn resolve(
        file: Option<IdentityFile>,
        token_secret: Option<String>,
        token_max_ttl_secs: Option<u64>,
    ) -> Result<Self, IdentityConfigError> {
        let file = file.unwrap_or_default();
        let invalid = |m: String| IdentityConfigError::Invalid(m);
        let mut oidc = Vec::new();
        for entry in &file.oidc {
            if oidc.iter().any(|(name, _)| name == &entry.name) {
                return Err(invalid(format!(
                    "two oidc providers are named {:?}",
                    entry.name
                )));
            }
            oidc.push((entry.name.clone(), entry.to_config()?));
        }
        let roles = GroupMapping::new(file.roles).map_err(|e| invalid(e.to_string()))?;
        let defaults = IdentityConfig::default();
        let config = IdentityConfig {
            oidc,
            ldap: file.ldap,
            roles,
            token_secret: token_secret.map(Secret::new).or(file.token_secret),
            token_max_ttl: token_max_ttl_secs
                .or(file.token_max_ttl_secs)
                .map_or(defaults.token_max_ttl, Duration::from_secs),
            session_ttl: file
                .session_ttl_secs
                .map_or(defaults.session_ttl, Duration::from_secs),
            cookie_secure: file.cookie_secure.unwrap_or(false),
            break_glass: file.break_glass,
        };
        config.validate()?;
        Ok(config)
    }

    /// Whether anyone must sign in: false means anonymous mode.
    pub fn is_configured(&self) -> bool {
        !self.oidc.is_empty() || self.ldap.is_some() || self.break_glass.is_some()
    }

    fn validate(&self) -> Result<(), IdentityConfigError> {
        let invalid = |m: &str| Err(IdentityConfigError::Invalid(m.to_owned()));
        if let Some(secret) = &self.token_secret
            && secret.expose().len() < MIN_TOKEN_SECRET_BYTES
        {
            return invalid("token-secret must be at least 32 bytes");
        }
        if self.is_configured() && self.token_secret.is_none() {
            return invalid(
                "an identity provider is configured, so token-secret (or --token-secret) is needed to sign sessions and document tokens",
            );
        }
        if self.token_max_ttl.is_zero() || self.session_ttl.is_zero() {
            return invalid("token-max-ttl-secs and session-ttl-secs must be at least 1");
        }
        if let Some(glass) = &self.break_glass
            && !glass.password_argon2.starts_with("$argon2")
        {
            return invalid(
                "break-glass password-argon2 must be an argon2 PHC hash ($argon2id$...)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_rules_parse() {
        let file: IdentityFile = toml::from_str(
            r#"
            token-secret = "0123456789abcdef0123456789abcdef"
            [[oidc]]
            name = "okta"
            preset = "okta"
            domain = "acme.okta.com"
            client-id = "abc"
            redirect-url = "https://collab.example/auth/callback"
            [[roles]]
            group = "staff"
            workspace = "*"
            role = "viewer"
            "#,
        )
        .unwrap();
        let config = IdentityConfig::resolve(Some(file), None, Some(60)).unwrap();
        assert!(config.is_configured());
        assert_eq!(
            config.oidc[0].1.issuer_url,
            "https://acme.okta.com/oauth2/default"
        );
        assert_eq!(config.token_max_ttl, Duration::from_secs(60));
        assert_eq!(config.roles.rules.len(), 1);
    }

    #[test]
    fn a_provider_without_a_secret_is_refused() {
        let file: IdentityFile = toml::from_str(
            r#"
            [[oidc]]
            name = "idp"
            issuer-url = "https://idp.example"
            client-id = "abc"
            redirect-url = "https://collab.example/auth/callback"
            "#,
        )
        .unwrap();
        let err = IdentityConfig::resolve(Some(file), None, None).unwrap_err();
        assert!(err.to_string().contains("token-secret"), "{err}");
        assert!(!IdentityConfig::default().is_configured());
    }
}
