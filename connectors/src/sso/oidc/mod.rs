//! OpenID Connect single sign-on: the browser login (authorization code
//! with PKCE) and bearer-token validation for the API and WebSocket.
//!
//! [`OidcProvider::discover`] reads the issuer's discovery document and
//! JWKS once; then
//! - [`begin_login`](OidcProvider::begin_login) /
//!   [`finish_login`](OidcProvider::finish_login) run the web UI's login
//!   (see [`LoginState`] for how the server keeps the login between the
//!   two), and
//! - [`validate_bearer`](OidcProvider::validate_bearer) checks an
//!   `Authorization: Bearer` token (a JWT access token, RFC 9068, or an ID
//!   token) with the cached JWKS, refetching it when a token names a new
//!   key.
//!
//! # Choices
//! - **openidconnect** runs discovery, the code exchange and the ID-token
//!   checks at login (signature, issuer, audience, `azp`, expiry, nonce,
//!   `at_hash`): that is the certified-style part, with the nonce and PKCE
//!   handled by a library that has been reviewed for it.
//! - **Bearer tokens** are checked by [`TokenValidator`], which uses
//!   openidconnect's JWK type to verify signatures (one crypto stack for
//!   both paths: RustCrypto's RSA, ECDSA and Ed25519, no OpenSSL) and checks
//!   claims itself, because access tokens are for the API (`aud` is the
//!   API, not the client id, which openidconnect's ID-token verifier
//!   insists on) and because [`TokenError`] must say *which* check failed,
//!   with the data (expiry time, expected and actual audience), where the
//!   library reports strings. `jsonwebtoken` would have done the same with
//!   a second JOSE implementation and crypto backend in the build.
//! - **Algorithms**: asymmetric only. `none` and HMAC (`HS256`...) are
//!   refused whatever the configuration says: with a public JWKS, HMAC
//!   would let anyone sign ("algorithm confusion").
//! - **Key rotation**: a token naming an unknown `kid` makes the cache fetch
//!   the JWKS again, at most once per
//!   [`jwks_refetch_cooldown`](OidcConfig::jwks_refetch_cooldown); keys
//!   also expire from the cache after
//!   [`jwks_refresh_interval`](OidcConfig::jwks_refresh_interval), so a key
//!   the provider withdraws stops working.
//! - **HTTP**: reqwest on rustls, redirects not followed (a discovery or
//!   JWKS URL that redirects is refused rather than trusted), every request
//!   time-limited.

mod config;
mod jwks;
mod login;
mod token;

pub use config::{OidcConfig, OidcConfigError};
pub use login::{LoginStart, LoginState};
pub use token::{MAX_TOKEN_LEN, TokenError, TokenValidator};

use crate::identity::Identity;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreIdTokenVerifier,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    Scope, SignatureVerificationError, TokenResponse,
};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Errors of discovery and of the browser login.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The configuration is invalid.
    #[error("invalid OIDC configuration: {0}")]
    Config(#[from] OidcConfigError),
    /// The HTTP client could not be built (TLS setup).
    #[error("could not set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The discovery document (or the JWKS it points to) could not be
    /// fetched, or is invalid, or names another issuer.
    #[error("could not read the discovery document of {issuer}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The discovery document has no token endpoint, so no code flow.
    #[error("the identity provider {issuer} has no token endpoint")]
    NoTokenEndpoint {
        /// The configured issuer.
        issuer: String,
    },
    /// The `state` the provider returned is not this login's CSRF token:
    /// the callback does not belong to the login this browser started.
    #[error("the sign-in response does not belong to this sign-in attempt; start again")]
    CsrfMismatch,
    /// The login began longer ago than the configured login TTL.
    #[error("the sign-in attempt expired after {} s; start again", ttl.as_secs())]
    LoginExpired {
        /// The configured limit.
        ttl: Duration,
    },
    /// The token endpoint refused the code (an OAuth error response).
    #[error("the identity provider refused the sign-in: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ProviderRejected {
        /// The OAuth error code, e.g. `invalid_grant`.
        error: String,
        /// The provider's explanation, if any.
        description: Option<String>,
    },
    /// The token endpoint could not be reached, or answered nonsense.
    #[error("could not exchange the authorization code with the identity provider")]
    TokenExchange(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The token response has no ID token (was `openid` dropped?).
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    /// The ID token failed openidconnect's checks (signature, issuer,
    /// audience, expiry, nonce...).
    #[error("the ID token is invalid: {0}")]
    IdToken(#[source] ClaimsVerificationError),
    /// The ID token passed those checks but not ours (hosted domain, groups
    /// claim), or the provider's keys could not be fetched.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// One OpenID Connect provider, discovered: runs logins and validates
/// bearer tokens. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub struct OidcProvider {
    config: OidcConfig,
    client: CoreClient<
        EndpointSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointMaybeSet,
        EndpointMaybeSet,
    >,
    http: reqwest::Client,
    issuer: IssuerUrl,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    validator: TokenValidator,
}

/// The HTTP client for one provider: rustls, no redirects, time-limited.
pub(crate) fn http_client(config: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.http_timeout)
        .user_agent(concat!(
            "collab-engine-connectors/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(OidcError::HttpClient)
}

impl OidcProvider {
    /// Reads the issuer's discovery document and JWKS and checks the
    /// configuration against them.
    pub async fn discover(config: OidcConfig) -> Result<Self, OidcError> {
        let allowed_algs = config.validate()?;
        let issuer = IssuerUrl::new(config.issuer_url.clone())
            .map_err(|_| OidcConfigError::InvalidIssuer(config.issuer_url.clone()))?;
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|_| OidcConfigError::InvalidRedirectUrl(config.redirect_url.clone()))?;
        let http = http_client(&config)?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|err| OidcError::Discovery {
                issuer: config.issuer_url.clone(),
                source: Box::new(err),
            })?;
        if metadata.token_endpoint().is_none() {
            return Err(OidcError::NoTokenEndpoint {
                issuer: config.issuer_url.clone(),
            });
        }
        // Basic auth is the default; a provider that only takes the secret
        // in the form body says so here.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        let validator = TokenValidator::with_keys(
            &config,
            metadata.jwks_uri().clone(),
            http.clone(),
            Some(metadata.jwks().clone()),
        )?;
        let mut client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(redirect);
        if post_only {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(Self {
            config,
            client,
            http,
            issuer,
            allowed_algs,
            validator,
        })
    }

    /// The configuration this provider was discovered with.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Starts a browser login: a fresh CSRF token, nonce and PKCE (S256)
    /// verifier, and the authorization URL that carries their public halves.
    pub fn begin_login(&self) -> LoginStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(self.config.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(domain) = &self.config.hosted_domain {
            request = request.add_extra_param("hd", domain.clone());
        }
        let (authorize_url, csrf, nonce) = request.url();
        LoginStart {
            authorize_url,
            state: LoginState::new(
                csrf.secret().clone(),
                nonce.secret().clone(),
                verifier.secret().clone(),
            ),
        }
    }

    /// Finishes a browser login: checks that `returned_csrf` (the callback's
    /// `state` parameter) is this login's and that the login is recent,
    /// exchanges `code` (with the PKCE verifier), and verifies the ID token,
    /// nonce included. Consumes `state`: a login finishes once.
    pub async fn finish_login(
        &self,
        state: LoginState,
        code: &str,
        returned_csrf: &str,
    ) -> Result<Identity, OidcError> {
        let expected = state.csrf_token.as_bytes();
        if !bool::from(expected.ct_eq(returned_csrf.as_bytes())) {
            return Err(OidcError::CsrfMismatch);
        }
        let age = state.issued_at().elapsed().unwrap_or(Duration::ZERO);
        if age > self.config.login_ttl {
            return Err(OidcError::LoginExpired {
                ttl: self.config.login_ttl,
            });
        }

        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|err| OidcError::TokenExchange(Box::new(err)))?
            .set_pkce_verifier(PkceCodeVerifier::new(state.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|err| match err {
                RequestTokenError::ServerResponse(response) => OidcError::ProviderRejected {
                    error: response.error().to_string(),
                    description: response.error_description().cloned(),
                },
                other => OidcError::TokenExchange(Box::new(other)),
            })?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(state.nonce.clone());

        let mut keys = self.validator.jwks.current().await?;
        loop {
            let verifier = self.id_token_verifier(&keys.set);
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => {
                    if let Some(expected) = claims.access_token_hash() {
                        let alg = id_token.signing_alg().map_err(|e| {
                            OidcError::IdToken(ClaimsVerificationError::SignatureVerification(e))
                        })?;
                        let key = id_token.signing_key(&verifier).map_err(|e| {
                            OidcError::IdToken(ClaimsVerificationError::SignatureVerification(e))
                        })?;
                        let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                            .map_err(|e| {
                                OidcError::IdToken(ClaimsVerificationError::Other(e.to_string()))
                            })?;
                        if actual != *expected {
                            return Err(OidcError::IdToken(ClaimsVerificationError::Other(
                                "at_hash does not match the access token".into(),
                            )));
                        }
                    }
                    break;
                }
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) => {
                    // Signed with a key newer than our cache: rotation.
                    match self
                        .validator
                        .jwks
                        .refetch_for_unknown_kid(keys.generation)
                        .await?
                    {
                        Some(newer) if newer.generation != keys.generation => keys = newer,
                        _ => {
                            return Err(OidcError::IdToken(
                                ClaimsVerificationError::SignatureVerification(
                                    SignatureVerificationError::NoMatchingKey,
                                ),
                            ));
                        }
                    }
                }
                Err(err) => return Err(OidcError::IdToken(err)),
            }
        }

        // Verified above; read the claims openidconnect does not model
        // (groups, hosted domain) from the same token.
        let raw = id_token.to_string();
        let claims = token::Jwt::parse(&raw)?.claims()?;
        self.validator.check_hosted_domain(&claims)?;
        Ok(self.validator.identity(&claims)?)
    }

    fn id_token_verifier<'a>(
        &'a self,
        keys: &openidconnect::core::CoreJsonWebKeySet,
    ) -> CoreIdTokenVerifier<'a> {
        let skew = chrono::Duration::from_std(self.config.clock_skew).unwrap_or_default();
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(self.allowed_algs.iter().cloned())
        // openidconnect has no leeway setting: checking against a clock set
        // back by the skew gives `exp` the same leeway as bearer tokens.
        .set_time_fn(move || chrono::Utc::now() - skew)
    }

    /// Validates an `Authorization: Bearer` token; see
    /// [`TokenValidator::validate`].
    pub async fn validate_bearer(&self, token: &str) -> Result<Identity, TokenError> {
        self.validator.validate(token).await
    }
}
