//! Bearer-token validation: a JWT (an RFC 9068 access token, or an ID
//! token) checked against the issuer's JWKS.
//!
//! Order matters: the header is read first (algorithm allow-list, key id),
//! then the signature is checked, and only then are the claims trusted
//! enough to be checked and reported on. A token whose signature fails says
//! nothing more about itself than that.

use super::config::{OidcConfig, OidcConfigError, asymmetric_algorithm};
use super::jwks::{JwksCache, Keys};
use crate::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeySetUrl, JwsSigningAlgorithm};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest token accepted, in bytes. Real tokens are a few KiB even with
/// many groups; anything far larger is not worth parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a bearer token was refused.
///
/// Each message is safe to show the caller (it names only what the token
/// itself says, and what we expected). All variants mean "401, get a new
/// token", except [`KeysUnavailable`](Self::KeysUnavailable), which is the
/// provider's failure, not the caller's (answer 503).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a signed JWT: wrong shape, bad base64 or JSON, a required claim
    /// missing, or an unsupported header. `reason` says which.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// The header names an algorithm outside the allow-list (this includes
    /// `none`, which is never accepted).
    #[error("token algorithm {alg:?} is not allowed")]
    AlgorithmNotAllowed {
        /// The algorithm the token's header names.
        alg: String,
    },
    /// No key in the issuer's JWKS matches the token's `kid`, even after
    /// fetching the JWKS again (or the refetch was rate-limited).
    #[error("token is signed with an unknown key (kid {})", quoted_or_none(kid))]
    UnknownKey {
        /// The key id the token names, if any.
        kid: Option<String>,
    },
    /// The signature does not verify with the key the token names.
    #[error("token signature is invalid")]
    BadSignature,
    /// The `iss` claim is not the configured issuer.
    #[error("token issuer {got:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        got: String,
    },
    /// None of the token's audiences is one we accept.
    #[error("token audience {got:?} does not include any of {expected:?}")]
    WrongAudience {
        /// The audiences we accept.
        expected: Vec<String>,
        /// The token's `aud`.
        got: Vec<String>,
    },
    /// `exp` has passed (allowing for the configured clock skew).
    #[error("token expired at {}", format_time(*expired_at))]
    Expired {
        /// The token's `exp`, in seconds since the Unix epoch.
        expired_at: i64,
    },
    /// `nbf` is still ahead (allowing for the configured clock skew).
    #[error("token is not valid before {}", format_time(*not_before))]
    NotYetValid {
        /// The token's `nbf`, in seconds since the Unix epoch.
        not_before: i64,
    },
    /// The `hd` claim is not the configured Google Workspace domain.
    #[error(
        "account domain {} is not the expected {expected:?}",
        quoted_or_none(got)
    )]
    WrongHostedDomain {
        /// The configured domain.
        expected: String,
        /// The token's `hd`, if any (`None` for a consumer Google account).
        got: Option<String>,
    },
    /// The issuer's JWKS could not be fetched and no keys are cached.
    #[error("the identity provider's signing keys could not be fetched")]
    KeysUnavailable {
        /// What went wrong fetching them.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TokenError {
    /// Whether the identity provider, not the caller, is at fault (its keys
    /// could not be fetched): answer 503, not 401.
    pub fn is_provider_failure(&self) -> bool {
        matches!(self, TokenError::KeysUnavailable { .. })
    }
}

fn quoted_or_none(value: &Option<String>) -> String {
    value
        .as_deref()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "none".into())
}

fn format_time(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{unix_secs} (seconds since the epoch)"))
}

fn malformed(reason: impl Into<String>) -> TokenError {
    TokenError::Malformed {
        reason: reason.into(),
    }
}

/// Validates JWT bearer tokens of one issuer against its JWKS.
///
/// [`OidcProvider`](super::OidcProvider) holds one (built from the
/// discovery document); build one directly for an API that only accepts
/// tokens and never runs a login, when the JWKS URL is known.
///
/// Signatures are checked with openidconnect's own JWK implementation
/// ([`JsonWebKey::verify_signature`]), the same code that verifies ID
/// tokens at login, so there is one JOSE/crypto stack in the build and not
/// two that could disagree. Claims are checked here and not by
/// openidconnect's ID-token verifier, which requires the client id in
/// `aud` (an access token is for the API, not the client) and reports
/// failures as strings; the errors here carry the expiry time and both
/// audiences as data.
pub struct TokenValidator {
    issuer: String,
    audiences: Vec<String>,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    clock_skew: Duration,
    groups_claim: Option<String>,
    hosted_domain: Option<String>,
    pub(crate) jwks: JwksCache,
}

impl TokenValidator {
    /// A validator for tokens issued by `config.issuer_url`, with keys from
    /// `jwks_url` (fetched on first use).
    pub fn new(config: &OidcConfig, jwks_url: url::Url) -> Result<Self, super::OidcError> {
        let http = super::http_client(config)?;
        Ok(Self::with_keys(
            config,
            JsonWebKeySetUrl::from_url(jwks_url),
            http,
            None,
        )?)
    }

    pub(crate) fn with_keys(
        config: &OidcConfig,
        jwks_url: JsonWebKeySetUrl,
        http: reqwest::Client,
        initial: Option<CoreJsonWebKeySet>,
    ) -> Result<Self, OidcConfigError> {
        let allowed_algs = config.validate()?;
        Ok(Self {
            issuer: config.issuer_url.clone(),
            audiences: config.accepted_audiences(),
            allowed_algs,
            clock_skew: config.clock_skew,
            groups_claim: config.groups_claim.clone(),
            hosted_domain: config.hosted_domain.clone(),
            jwks: JwksCache::new(
                jwks_url,
                http,
                config.jwks_refresh_interval,
                config.jwks_refetch_cooldown,
                initial,
            ),
        })
    }

    /// Checks `token` (without any `Bearer ` prefix) and returns who it
    /// speaks for: header and algorithm, signature (fetching the JWKS again,
    /// rate-limited, when the key id is new), then issuer, audience, expiry
    /// and not-before with the configured skew, and the hosted domain when
    /// configured.
    pub async fn validate(&self, token: &str) -> Result<Identity, TokenError> {
        let jwt = Jwt::parse(token)?;
        let alg = self.check_algorithm(&jwt.header)?;
        self.verify_signature(&jwt, &alg).await?;
        let claims = jwt.claims()?;
        self.check_claims(&claims, unix_now())?;
        self.identity(&claims)
    }

    fn check_algorithm(&self, header: &Header) -> Result<CoreJwsSigningAlgorithm, TokenError> {
        let not_allowed = || TokenError::AlgorithmNotAllowed {
            alg: header.alg.clone(),
        };
        // `asymmetric_algorithm` never yields `none` or an HMAC, whatever
        // the allow-list says.
        let alg = asymmetric_algorithm(&header.alg).ok_or_else(not_allowed)?;
        if !self.allowed_algs.contains(&alg) {
            return Err(not_allowed());
        }
        if let Some(crit) = &header.crit {
            return Err(malformed(format!(
                "unsupported critical header parameters {crit:?}"
            )));
        }
        Ok(alg)
    }

    async fn verify_signature(
        &self,
        jwt: &Jwt<'_>,
        alg: &CoreJwsSigningAlgorithm,
    ) -> Result<(), TokenError> {
        let keys = self.jwks.current().await?;
        match check_with(&keys, jwt, alg) {
            Err(TokenError::UnknownKey { .. }) => {}
            other => return other,
        }
        // A key id we have not seen: the provider may have rotated keys.
        match self.jwks.refetch_for_unknown_kid(keys.generation).await? {
            Some(newer) => check_with(&newer, jwt, alg),
            None => Err(TokenError::UnknownKey {
                kid: jwt.header.kid.clone(),
            }),
        }
    }

    pub(crate) fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let iss = claims
            .iss
            .as_deref()
            .ok_or_else(|| malformed("no iss claim"))?;
        if iss != self.issuer {
            return Err(TokenError::WrongIssuer {
                expected: self.issuer.clone(),
                got: iss.to_owned(),
            });
        }
        let aud = claims
            .aud
            .as_ref()
            .ok_or_else(|| malformed("no aud claim"))?
            .to_vec();
        if !aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenError::WrongAudience {
                expected: self.audiences.clone(),
                got: aud,
            });
        }
        let skew = self.clock_skew.as_secs() as i64;
        let exp = claims.exp.ok_or_else(|| malformed("no exp claim"))?;
        if now > exp.saturating_add(skew) {
            return Err(TokenError::Expired { expired_at: exp });
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(skew) < nbf
        {
            return Err(TokenError::NotYetValid { not_before: nbf });
        }
        if claims.sub.as_deref().is_none_or(str::is_empty) {
            return Err(malformed("no sub claim"));
        }
        self.check_hosted_domain(claims)
    }

    pub(crate) fn check_hosted_domain(&self, claims: &Claims) -> Result<(), TokenError> {
        match &self.hosted_domain {
            Some(expected) if claims.hd.as_ref() != Some(expected) => {
                Err(TokenError::WrongHostedDomain {
                    expected: expected.clone(),
                    got: claims.hd.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The identity a checked token speaks for.
    pub(crate) fn identity(&self, claims: &Claims) -> Result<Identity, TokenError> {
        Ok(Identity {
            subject: claims.sub.clone().unwrap_or_default(),
            issuer: claims.iss.clone().unwrap_or_default(),
            email: claims
                .email
                .clone()
                .filter(|_| claims.email_verified != Some(false)),
            name: claims.name.clone(),
            groups: self.groups(claims)?,
            expires_at: claims
                .exp
                .and_then(|exp| u64::try_from(exp).ok())
                .map(|exp| UNIX_EPOCH + Duration::from_secs(exp)),
        })
    }

    fn groups(&self, claims: &Claims) -> Result<Vec<String>, TokenError> {
        let Some(name) = &self.groups_claim else {
            return Ok(Vec::new());
        };
        match claims.other.get(name) {
            None | Some(Value::Null) => {
                let overage = claims
                    .other
                    .get("_claim_names")
                    .and_then(|names| names.get(name))
                    .is_some();
                if overage {
                    tracing::warn!(
                        subject = claims.sub.as_deref().unwrap_or_default(),
                        "the provider left out the {name} claim because the user has too many groups \
                         (Azure AD overage); the identity has no groups"
                    );
                }
                Ok(Vec::new())
            }
            Some(Value::String(group)) => Ok(vec![group.clone()]),
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        malformed(format!("the {name} claim is not a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(malformed(format!(
                "the {name} claim is not a list of strings"
            ))),
        }
    }
}

/// Verifies `jwt` with the matching key of `keys`. `UnknownKey` when the
/// key set has no key for the token's `kid` (or, for a token without `kid`,
/// no key of the right type).
fn check_with(keys: &Keys, jwt: &Jwt<'_>, alg: &CoreJwsSigningAlgorithm) -> Result<(), TokenError> {
    let kid = jwt.header.kid.as_deref();
    let candidates: Vec<&CoreJsonWebKey> = keys
        .set
        .keys()
        .iter()
        .filter(|key| match kid {
            Some(kid) => key.key_id().map(|id| id.as_str()) == Some(kid),
            // No kid: any key that fits the algorithm may be the one.
            None => alg.key_type().as_ref() == Some(key.key_type()),
        })
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey {
            kid: kid.map(str::to_owned),
        });
    }
    let message = jwt.signing_input.as_bytes();
    if candidates
        .iter()
        .any(|key| key.verify_signature(alg, message, &jwt.signature).is_ok())
    {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The JOSE header fields we read.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

/// A compact JWS split into its parts, signature not yet checked.
pub(crate) struct Jwt<'a> {
    header: Header,
    /// `base64(header) "." base64(payload)`: what the signature covers.
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        let parts: Vec<&str> = token.split('.').collect();
        match parts.len() {
            3 => {}
            5 => return Err(malformed("encrypted tokens (JWE) are not supported")),
            _ => return Err(malformed("not a JWT (expected three dot-separated parts)")),
        }
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| malformed(format!("the {what} is not base64url")))
        };
        let header_bytes = decode(parts[0], "header")?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|_| malformed("the header is not a JSON object with an alg"))?;
        let payload = decode(parts[1], "payload")?;
        let signature = decode(parts[2], "signature")?;
        let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
        Ok(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    pub(crate) fn claims(&self) -> Result<Claims, TokenError> {
        serde_json::from_slice(&self.payload).map_err(|err| malformed(format!("bad claims: {err}")))
    }
}

/// The claims we read; everything else stays in `other` (where the groups
/// claim, whose name is configured, is found).
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<i64>,
    pub(crate) email: Option<String>,
    pub(crate) email_verified: Option<bool>,
    pub(crate) name: Option<String>,
    pub(crate) hd: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

/// `aud`: one string or a list of them (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, possibly fractional.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<f64>::deserialize(d)?;
    match value {
        Some(v) if v.is_finite() => Ok(Some(v.floor() as i64)),
        Some(_) => Err(serde::de::Error::custom("not a finite number")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_that_are_not_jwts_are_malformed() {
        let cases = [
            ("", "not a JWT (expected three dot-separated parts)"),
            ("abc", "not a JWT (expected three dot-separated parts)"),
            ("a.b.c.d.e", "encrypted tokens (JWE) are not supported"),
            ("!!.e30.", "the header is not base64url"),
            ("e30.e30.", "the header is not a JSON object with an alg"),
        ];
        for (token, reason) in cases {
            match Jwt::parse(token) {
                Err(TokenError::Malformed { reason: got }) => assert_eq!(got, reason, "{token}"),
                other => panic!("{token}: {:?}", other.err()),
            }
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            Jwt::parse(&long),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn times_in_messages_are_rfc3339_utc() {
        let err = TokenError::Expired {
            expired_at: 1_700_000_000,
        };
        assert_eq!(err.to_string(), "token expired at 2023-11-14T22:13:20Z");
    }
}
