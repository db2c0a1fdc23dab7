//! Tokens the server signs itself (HS256 JWTs): short-lived document
//! tokens, which the y-websocket provider passes as `?token=`, and session
//! cookies after a browser sign-in.
//!
//! HS256 with a server secret rather than an asymmetric key: the server is
//! the only one that issues and checks them, so there is no public key to
//! publish, and HMAC is a few microseconds per WebSocket upgrade. The
//! claims say what the token may be used for (`kind`, and `doc`/`ws` with a
//! role ceiling), so a token stolen for one document opens nothing else.
//! OIDC tokens never take this path: they are told apart by `iss`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthMethod, Role};

/// The `iss` of every token this server signs.
pub const ISSUER: &str = "collab-sync-server";

/// Why one of our tokens was refused. Messages are safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of ours: wrong shape, encoding or claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the server's secret.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired at {} (unix seconds)", .0)]
    Expired(u64),
    /// A session cookie used as a document token, or the reverse.
    #[error("a {got} token cannot be used as a {expected} token")]
    WrongKind {
        /// What was needed.
        expected: &'static str,
        /// What the token is.
        got: String,
    },
}

/// What a token of ours is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A document token (`POST /api/tokens`).
    Document,
    /// A browser session (the session cookie).
    Session,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Document => "document",
            TokenKind::Session => "session",
        }
    }
}

/// The claims of a token this server signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// Display name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups at sign-in; roles are recomputed from them at each use, so a
    /// changed group rule or membership applies to existing tokens.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How the user originally signed in.
    pub method: AuthMethod,
    /// What this token is.
    pub kind: TokenKind,
    /// The only document the token opens (document tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The only workspace the token opens (document tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<String>,
    /// The highest role the token grants, whatever the user's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds.
    pub exp: u64,
}

/// Signs and checks our tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(***)")
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenSigner {
    /// A signer over `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The compact JWT of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).expect("claims serialize");
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(body)
        );
        let mut mac = self.mac();
        mac.update(input.as_bytes());
        let signature = mac.finalize().into_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Whether `token` claims to be ours (its `iss`), without trusting it:
    /// decides which validator a bearer token goes to.
    pub fn is_ours(token: &str) -> bool {
        let mut parts = token.split('.');
        let (Some(_), Some(body)) = (parts.next(), parts.next()) else {
            return false;
        };
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice::<Iss>(&b).ok())
            .and_then(|c| c.iss)
            .is_some_and(|iss| iss == ISSUER)
    }

    /// Checks signature, expiry and kind, and returns the claims.
    pub fn verify(&self, token: &str, kind: TokenKind, now: u64) -> Result<Claims, TokenError> {
        let malformed = |m: &str| TokenError::Malformed(m.to_owned());
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("bad header encoding"))?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| malformed("bad header JSON"))?;
        if header["alg"] != "HS256" {
            return Err(malformed("algorithm must be HS256"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::BadSignature)?;
        let mut mac = self.mac();
        let signed = token.rfind('.').map_or(token, |dot| &token[..dot]);
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| malformed("bad claims encoding"))?;
        let claims: Claims =
            serde_json::from_slice(&body).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if claims.iss != ISSUER {
            return Err(malformed("not issued by this server"));
        }
        if claims.exp <= now {
            return Err(TokenError::Expired(claims.exp));
        }
        if claims.kind != kind {
            return Err(TokenError::WrongKind {
                expected: kind.as_str(),
                got: claims.kind.as_str().to_owned(),
            });
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            name: None,
            groups: vec!["staff".into()],
            method: AuthMethod::Bearer,
            kind: TokenKind::Document,
            doc: Some("acme/plan".into()),
            ws: None,
            role: Some(Role::Editor),
            iat: 100,
            exp,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let signer = TokenSigner::new(&[7; 32]);
        let token = signer.sign(&claims(200));
        assert!(TokenSigner::is_ours(&token));
        assert_eq!(
            signer.verify(&token, TokenKind::Document, 150).unwrap(),
            claims(200)
        );
        assert_eq!(
            signer.verify(&token, TokenKind::Document, 200),
            Err(TokenError::Expired(200))
        );
        assert!(matches!(
            signer.verify(&token, TokenKind::Session, 150),
            Err(TokenError::WrongKind { .. })
        ));
        let other = TokenSigner::new(&[8; 32]);
        assert_eq!(
            other.verify(&token, TokenKind::Document, 150),
            Err(TokenError::BadSignature)
        );
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            signer.verify(&tampered, TokenKind::Document, 150),
            Err(TokenError::BadSignature)
        );
    }
}
