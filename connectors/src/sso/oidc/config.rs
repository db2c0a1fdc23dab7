//! [`OidcConfig`]: which provider, which client, what to accept; with
//! ready-made settings for Azure AD (Entra ID), Okta and Google Workspace.

use crate::duration_secs;
use crate::secret::Secret;
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde::Deserialize;
use std::time::Duration;

/// Errors in an [`OidcConfig`], found before anything is sent to the
/// provider.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcConfigError {
    /// The issuer is not an absolute http(s) URL.
    #[error("issuer {0:?} is not an absolute http(s) URL")]
    InvalidIssuer(String),
    /// The redirect URL is not an absolute http(s) URL.
    #[error("redirect URL {0:?} is not an absolute http(s) URL")]
    InvalidRedirectUrl(String),
    /// The client id is empty.
    #[error("client id is empty")]
    EmptyClientId,
    /// A signing algorithm that is unknown or unsupported (ES512, which
    /// openidconnect cannot verify), or one that must never be accepted
    /// from a JWKS: `none`, or an HMAC (`HS256`...) whose "key" would be
    /// public.
    #[error(
        "signing algorithm {0:?} cannot be allowed (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
    )]
    DisallowedAlgorithm(String),
    /// The allow-list of signing algorithms is empty, so no token could pass.
    #[error("no signing algorithm is allowed")]
    NoAlgorithms,
    /// An Azure AD tenant that is not a tenant ID (a GUID). Multi-tenant
    /// endpoints (`common`, `organizations`) have no single issuer to check
    /// tokens against, and a domain name resolves to an issuer that names
    /// the GUID, so discovery would reject it.
    #[error(
        "Azure AD tenant {0:?} is not a tenant ID (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)"
    )]
    InvalidAzureTenant(String),
    /// An Okta domain that is not a bare host name.
    #[error("Okta domain {0:?} is not a host name such as example.okta.com")]
    InvalidOktaDomain(String),
    /// A Google Workspace domain that is not a bare domain name.
    #[error("Google Workspace domain {0:?} is not a domain name such as example.com")]
    InvalidWorkspaceDomain(String),
}

/// How to talk to one OpenID Connect provider, and what to accept from it.
///
/// Build one with a preset ([`azure_ad`](Self::azure_ad),
/// [`okta`](Self::okta), [`google`](Self::google),
/// [`generic`](Self::generic)) and adjust the public fields, or deserialize
/// it from the server's configuration file (durations are whole seconds).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer, exactly as the provider writes it in its discovery
    /// document and in every token's `iss` (a trailing slash matters, which
    /// is why this is a string and not a normalising URL type).
    pub issuer_url: String,
    /// The client (application) id registered at the provider.
    pub client_id: String,
    /// The client secret, for a confidential client; `None` for a public
    /// client, which then relies on PKCE alone.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Where the provider sends the browser back after login; must be
    /// registered at the provider exactly as written here.
    pub redirect_url: String,
    /// Scopes asked for at login besides `openid`, which is always sent.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Audiences a bearer token may carry (any one of them suffices). Empty
    /// means the client id alone, which is what ID tokens carry.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Name of the claim holding the person's groups (a list of strings, or
    /// a single string), e.g. `groups`. `None`: the provider sends none and
    /// [`Identity::groups`](crate::Identity::groups) stays empty.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Google Workspace domain that every token's `hd` claim must name; see
    /// [`OidcConfig::google`]. `None` skips the check.
    #[serde(default)]
    pub hosted_domain: Option<String>,
    /// Signing algorithms accepted, by their JOSE names. Only asymmetric
    /// ones may be listed: `none` and HMAC are refused at startup.
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// Leeway for `exp` and `nbf`, for clocks that disagree a little.
    #[serde(
        default = "default_clock_skew",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub clock_skew: Duration,
    /// How old the cached JWKS may get before it is fetched again on next
    /// use. This is what makes a key the provider has withdrawn stop
    /// verifying tokens; a new key is picked up sooner, on first sight of its
    /// `kid`.
    #[serde(
        default = "default_jwks_refresh_interval",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub jwks_refresh_interval: Duration,
    /// Least time between two JWKS fetches caused by tokens naming a `kid`
    /// not in the cache. Anyone can send such a token, so without this limit
    /// every request could make us call the provider.
    #[serde(
        default = "default_jwks_refetch_cooldown",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub jwks_refetch_cooldown: Duration,
    /// How long a started login may take before
    /// [`finish_login`](super::OidcProvider::finish_login) refuses it; the
    /// server's storage for login states should expire them at the same age.
    #[serde(
        default = "default_login_ttl",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub login_ttl: Duration,
    /// Time limit for each HTTP request to the provider.
    #[serde(
        default = "default_http_timeout",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub http_timeout: Duration,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_algorithms() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
    .map(String::from)
    .to_vec()
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_jwks_refresh_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_jwks_refetch_cooldown() -> Duration {
    Duration::from_secs(30)
}

fn default_login_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OidcConfig {
    /// Any OpenID Connect provider that publishes a discovery document
    /// (Keycloak, Auth0, Ping, ADFS, Dex...). Groups are off until
    /// [`groups_claim`](Self::groups_claim) is set.
    pub fn generic(
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        redirect_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            redirect_url: redirect_url.into(),
            scopes: default_scopes(),
            audiences: Vec::new(),
            groups_claim: None,
            hosted_domain: None,
            allowed_algorithms: default_algorithms(),
            clock_skew: default_clock_skew(),
            jwks_refresh_interval: default_jwks_refresh_interval(),
            jwks_refetch_cooldown: default_jwks_refetch_cooldown(),
            login_ttl: default_login_ttl(),
            http_timeout: default_http_timeout(),
        }
    }

    /// Azure AD (Microsoft Entra ID), single tenant, v2.0 endpoints.
    ///
    /// - Issuer `https://login.microsoftonline.com/{tenant_id}/v2.0`; the
    ///   tenant must be its ID (a GUID), see
    ///   [`OidcConfigError::InvalidAzureTenant`].
    /// - Groups from the `groups` claim, which Entra ID sends once the app
    ///   registration's token configuration adds it. Values are group
    ///   object IDs unless the registration is set to emit names
    ///   (`sAMAccountName`, for groups synced from on-premises AD), so map
    ///   IDs in the [`GroupMapping`](crate::GroupMapping). Past 200 groups
    ///   Entra ID leaves the claim out ("overage") and the identity has no
    ///   groups; assign groups to the application to stay under the limit.
    /// - Bearer tokens: the audience is the API's client id (v2 tokens) or
    ///   `api://{client_id}` (v1 tokens), both accepted. Clients must ask for
    ///   a scope of this API (e.g. `api://{client_id}/.default`): tokens for
    ///   Microsoft Graph are not meant to be verified by anyone but Graph.
    pub fn azure_ad(
        tenant_id: &str,
        client_id: impl Into<String>,
        redirect_url: impl Into<String>,
    ) -> Result<Self, OidcConfigError> {
        if !is_guid(tenant_id) {
            return Err(OidcConfigError::InvalidAzureTenant(tenant_id.to_owned()));
        }
        let client_id = client_id.into();
        let mut config = Self::generic(
            format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
            client_id.clone(),
            redirect_url,
        );
        config.audiences = vec![client_id.clone(), format!("api://{client_id}")];
        config.groups_claim = Some("groups".into());
        Ok(config)
    }

    /// Okta, through its `default` custom authorization server
    /// (`https://{domain}/oauth2/default`).
    ///
    /// A custom authorization server, not the org server at
    /// `https://{domain}`, because only its access tokens are meant to be
    /// verified by a resource server; set [`issuer_url`](Self::issuer_url)
    /// for another custom server. Bearer tokens carry the server's audience
    /// (`api://default` unless changed in Okta); ID tokens carry the client
    /// id; both are accepted. Groups come from a `groups` claim, which must
    /// be added to the authorization server (with a group filter) for both
    /// token kinds; the `groups` scope is requested.
    pub fn okta(
        domain: &str,
        client_id: impl Into<String>,
        redirect_url: impl Into<String>,
    ) -> Result<Self, OidcConfigError> {
        if !is_host_name(domain) {
            return Err(OidcConfigError::InvalidOktaDomain(domain.to_owned()));
        }
        let client_id = client_id.into();
        let mut config = Self::generic(
            format!("https://{domain}/oauth2/default"),
            client_id.clone(),
            redirect_url,
        );
        config.audiences = vec!["api://default".into(), client_id];
        config.scopes.push("groups".into());
        config.groups_claim = Some("groups".into());
        Ok(config)
    }

    /// Google Workspace, limited to accounts of one Workspace domain.
    ///
    /// Google ID tokens carry no groups (its access tokens are opaque, so
    /// [`validate_bearer`](super::OidcProvider::validate_bearer) only
    /// accepts Google ID tokens, audience = client id). What the preset
    /// does instead:
    /// - it requires the `hd` (hosted domain) claim to equal
    ///   `workspace_domain`, so a personal Gmail account or another
    ///   company's Workspace account is refused even though Google signed
    ///   its token (and sends `hd` with the login request, which only
    ///   preselects accounts in Google's UI: the claim check is what counts);
    /// - [`Identity::groups`](crate::Identity::groups) stays empty; give
    ///   Workspace users roles with rules for groups the server adds itself,
    ///   or read Google Groups through the Admin SDK (a service account with
    ///   domain-wide delegation), which this crate does not do.
    pub fn google(
        workspace_domain: &str,
        client_id: impl Into<String>,
        redirect_url: impl Into<String>,
    ) -> Result<Self, OidcConfigError> {
        if !is_host_name(workspace_domain) {
            return Err(OidcConfigError::InvalidWorkspaceDomain(
                workspace_domain.to_owned(),
            ));
        }
        let mut config = Self::generic("https://accounts.google.com", client_id, redirect_url);
        config.hosted_domain = Some(workspace_domain.to_owned());
        Ok(config)
    }

    /// Checks the parts that can be checked without the network, and
    /// returns the allowed algorithms in openidconnect's terms.
    pub(crate) fn validate(&self) -> Result<Vec<CoreJwsSigningAlgorithm>, OidcConfigError> {
        if !is_http_url(&self.issuer_url) {
            return Err(OidcConfigError::InvalidIssuer(self.issuer_url.clone()));
        }
        if !is_http_url(&self.redirect_url) {
            return Err(OidcConfigError::InvalidRedirectUrl(
                self.redirect_url.clone(),
            ));
        }
        if self.client_id.is_empty() {
            return Err(OidcConfigError::EmptyClientId);
        }
        if self.allowed_algorithms.is_empty() {
            return Err(OidcConfigError::NoAlgorithms);
        }
        self.allowed_algorithms
            .iter()
            .map(|name| {
                asymmetric_algorithm(name)
                    .ok_or_else(|| OidcConfigError::DisallowedAlgorithm(name.clone()))
            })
            .collect()
    }

    /// The audiences bearer tokens are checked against.
    pub(crate) fn accepted_audiences(&self) -> Vec<String> {
        if self.audiences.is_empty() {
            vec![self.client_id.clone()]
        } else {
            self.audiences.clone()
        }
    }
}

/// The algorithm named `name` if it is an asymmetric signature algorithm.
pub(crate) fn asymmetric_algorithm(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()?;
    match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        | CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384
        | CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512
        | CoreJwsSigningAlgorithm::RsaSsaPssSha256
        | CoreJwsSigningAlgorithm::RsaSsaPssSha384
        | CoreJwsSigningAlgorithm::RsaSsaPssSha512
        | CoreJwsSigningAlgorithm::EcdsaP256Sha256
        | CoreJwsSigningAlgorithm::EcdsaP384Sha384
        | CoreJwsSigningAlgorithm::EdDsa => Some(alg),
        _ => None,
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false)
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIRECT: &str = "https://collab.example.com/auth/callback";

    #[test]
    fn azure_preset_needs_a_tenant_guid() {
        let config =
            OidcConfig::azure_ad("72f988bf-86f1-41af-91ab-2d7cd011db47", "app-id", REDIRECT)
                .unwrap();
        assert_eq!(
            config.issuer_url,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
        );
        assert_eq!(config.accepted_audiences(), ["app-id", "api://app-id"]);
        assert_eq!(config.groups_claim.as_deref(), Some("groups"));
        for bad in [
            "common",
            "organizations",
            "contoso.onmicrosoft.com",
            "72f988bf/../x",
        ] {
            assert_eq!(
                OidcConfig::azure_ad(bad, "app-id", REDIRECT).unwrap_err(),
                OidcConfigError::InvalidAzureTenant(bad.into())
            );
        }
    }

    #[test]
    fn okta_preset_uses_the_default_authorization_server() {
        let config = OidcConfig::okta("acme.okta.com", "0oa1", REDIRECT).unwrap();
        assert_eq!(config.issuer_url, "https://acme.okta.com/oauth2/default");
        assert_eq!(config.accepted_audiences(), ["api://default", "0oa1"]);
        assert!(config.scopes.contains(&"groups".to_owned()));
        assert_eq!(
            OidcConfig::okta("https://acme.okta.com", "0oa1", REDIRECT).unwrap_err(),
            OidcConfigError::InvalidOktaDomain("https://acme.okta.com".into())
        );
    }

    #[test]
    fn google_preset_checks_the_hosted_domain_and_has_no_groups() {
        let config =
            OidcConfig::google("example.com", "123.apps.googleusercontent.com", REDIRECT).unwrap();
        assert_eq!(config.issuer_url, "https://accounts.google.com");
        assert_eq!(config.hosted_domain.as_deref(), Some("example.com"));
        assert_eq!(config.groups_claim, None);
        assert_eq!(
            config.accepted_audiences(),
            ["123.apps.googleusercontent.com"]
        );
        assert!(OidcConfig::google("example.com/evil", "c", REDIRECT).is_err());
    }

    #[test]
    fn none_and_hmac_can_never_be_allowed() {
        for alg in ["none", "HS256", "HS512", "ES512", "RSA-OAEP", "nonsense"] {
            let mut config = OidcConfig::generic("https://idp.example.com", "c", REDIRECT);
            config.allowed_algorithms = vec!["RS256".into(), alg.into()];
            assert_eq!(
                config.validate().unwrap_err(),
                OidcConfigError::DisallowedAlgorithm(alg.into())
            );
        }
        let config = OidcConfig::generic("https://idp.example.com", "c", REDIRECT);
        assert_eq!(config.validate().unwrap().len(), 9);
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let config: OidcConfig = toml::from_str(
            r#"
            issuer_url = "https://idp.example.com/realms/acme"
            client_id = "collab"
            client_secret = "s3cret"
            redirect_url = "https://collab.example.com/auth/callback"
            groups_claim = "groups"
            clock_skew = 30
            "#,
        )
        .unwrap();
        assert_eq!(config.clock_skew, Duration::from_secs(30));
        assert_eq!(config.login_ttl, Duration::from_secs(600));
        assert_eq!(config.scopes, ["email", "profile"]);
        assert_eq!(
            config.client_secret.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        config.validate().unwrap();
    }
}
