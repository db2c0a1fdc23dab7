//! Bearer-token validation against tokens the test signs itself, with keys
//! served by a JWKS file server: every way a token must be refused, each
//! with its exact error, plus key rotation and the refetch rate limit.
//! (The full flow with a real provider is in `oidc_flow.rs`.)

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connectors::sso::oidc::{OidcConfig, OidcError, TokenError, TokenValidator};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::sha2::{Sha256, Sha512};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::jwks_server::JwksServer;

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "urn:collab:api";

/// RSA key generation is slow-ish; two keys serve every test.
fn keys() -> &'static [(String, RsaPrivateKey); 2] {
    static KEYS: OnceLock<[(String, RsaPrivateKey); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        [
            (
                "key-1".to_owned(),
                RsaPrivateKey::new(&mut rng, 2048).expect("RSA key"),
            ),
            (
                "key-2".to_owned(),
                RsaPrivateKey::new(&mut rng, 2048).expect("RSA key"),
            ),
        ]
    })
}

fn jwk((kid, key): &(String, RsaPrivateKey)) -> Value {
    json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    })
}

fn jwks(keys: &[&(String, RsaPrivateKey)]) -> String {
    json!({ "keys": keys.iter().map(|k| jwk(k)).collect::<Vec<_>>() }).to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A compact JWS of `claims` signed with `key` (RS256 unless `alg` says
/// RS512), with `header` fields added.
fn sign(key: &(String, RsaPrivateKey), alg: &str, claims: &Value) -> String {
    let header = json!({ "alg": alg, "typ": "at+jwt", "kid": key.0 });
    let input = format!("{}.{}", b64(&header), b64(claims));
    let signature = match alg {
        "RS256" => SigningKey::<Sha256>::new(key.1.clone())
            .sign(input.as_bytes())
            .to_vec(),
        "RS512" => SigningKey::<Sha512>::new(key.1.clone())
            .sign(input.as_bytes())
            .to_vec(),
        other => panic!("test signs RS256 or RS512, not {other}"),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "user-42",
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 300,
        "email": "alice@example.test",
        "name": "Alice Admin",
        "groups": ["eng-admins", "staff"],
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn config() -> OidcConfig {
    let mut config = OidcConfig::generic(ISSUER, "collab-web", "http://127.0.0.1:9/auth/callback");
    config.audiences = vec![AUDIENCE.into()];
    config.groups_claim = Some("groups".into());
    config.allowed_algorithms = vec!["RS256".into()];
    // Long, so a test can tell "rate-limited" from "fetched again".
    config.jwks_refetch_cooldown = Duration::from_secs(3600);
    config
}

async fn setup(config: &OidcConfig) -> (JwksServer, TokenValidator) {
    let server = JwksServer::start(jwks(&[&keys()[0]])).await;
    let validator = TokenValidator::new(config, server.url.clone()).expect("validator");
    (server, validator)
}

async fn refused(validator: &TokenValidator, token: &str) -> TokenError {
    validator
        .validate(token)
        .await
        .expect_err("token must be refused")
}

#[tokio::test]
async fn a_good_token_gives_the_identity() {
    let (server, validator) = setup(&config()).await;
    let identity = validator
        .validate(&sign(&keys()[0], "RS256", &claims()))
        .await
        .unwrap();
    assert_eq!(identity.subject, "user-42");
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.email.as_deref(), Some("alice@example.test"));
    assert_eq!(identity.name.as_deref(), Some("Alice Admin"));
    assert_eq!(identity.groups, ["eng-admins", "staff"]);
    let exp = identity
        .expires_at
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((exp - (now() + 300)).abs() <= 2);
    // Keys were fetched once, on first use, and cached after.
    validator
        .validate(&sign(&keys()[0], "RS256", &claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn an_expired_token_names_its_expiry_time() {
    let (_server, validator) = setup(&config()).await;
    let token = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "exp", json!(1_700_000_000)),
    );
    let err = refused(&validator, &token).await;
    assert!(
        matches!(
            err,
            TokenError::Expired {
                expired_at: 1_700_000_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "token expired at 2023-11-14T22:13:20Z");
}

#[tokio::test]
async fn clock_skew_is_allowed_for_exp_and_nbf_but_no_more() {
    let (_server, validator) = setup(&config()).await; // 60 s of skew
    let just_expired = with(claims(), "exp", json!(now() - 30));
    validator
        .validate(&sign(&keys()[0], "RS256", &just_expired))
        .await
        .unwrap();

    let nbf_soon = with(claims(), "nbf", json!(now() + 30));
    validator
        .validate(&sign(&keys()[0], "RS256", &nbf_soon))
        .await
        .unwrap();

    let nbf = 4_102_444_800; // 2100-01-01
    let err = refused(
        &validator,
        &sign(&keys()[0], "RS256", &with(claims(), "nbf", json!(nbf))),
    )
    .await;
    assert!(
        matches!(err, TokenError::NotYetValid { not_before } if not_before == nbf),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "token is not valid before 2100-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn a_wrong_audience_names_expected_and_actual() {
    let (_server, validator) = setup(&config()).await;
    let token = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "aud", json!(["urn:billing:api", "other"])),
    );
    let err = refused(&validator, &token).await;
    assert_eq!(
        err.to_string(),
        r#"token audience ["urn:billing:api", "other"] does not include any of ["urn:collab:api"]"#
    );
    // One matching audience among several is enough.
    let token = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "aud", json!(["other", AUDIENCE])),
    );
    validator.validate(&token).await.unwrap();
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let (_server, validator) = setup(&config()).await;
    let token = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "iss", json!("https://evil.example")),
    );
    assert_eq!(
        refused(&validator, &token).await.to_string(),
        r#"token issuer "https://evil.example" is not the expected "https://idp.example.test""#
    );
}

#[tokio::test]
async fn a_tampered_signature_or_payload_is_a_bad_signature() {
    let (_server, validator) = setup(&config()).await;
    let token = sign(&keys()[0], "RS256", &claims());
    let (input, signature) = token.rsplit_once('.').unwrap();

    // Flip one bit of the signature.
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 0x01;
    let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    let err = refused(&validator, &tampered).await;
    assert!(matches!(err, TokenError::BadSignature), "{err:?}");
    assert_eq!(err.to_string(), "token signature is invalid");

    // Give yourself a group, keep the signature.
    let (header, _) = input.split_once('.').unwrap();
    let promoted = with(claims(), "groups", json!(["founders"]));
    let forged = format!("{header}.{}.{signature}", b64(&promoted));
    assert!(matches!(
        refused(&validator, &forged).await,
        TokenError::BadSignature
    ));

    // Signed by a key that is not the one its kid names.
    let impostor = (keys()[0].0.clone(), keys()[1].1.clone());
    assert!(matches!(
        refused(&validator, &sign(&impostor, "RS256", &claims())).await,
        TokenError::BadSignature
    ));
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion_are_refused() {
    let (_server, validator) = setup(&config()).await;

    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "kid": "key-1" })),
        b64(&claims())
    );
    let err = refused(&validator, &unsigned).await;
    assert_eq!(err.to_string(), r#"token algorithm "none" is not allowed"#);

    // HS256 "signed" with the public key as the HMAC secret: the classic
    // confusion attack. Refused on the algorithm, before any key is used.
    let header = b64(&json!({ "alg": "HS256", "kid": "key-1" }));
    let hs = format!("{header}.{}.c2lnbmF0dXJl", b64(&claims()));
    assert_eq!(
        refused(&validator, &hs).await.to_string(),
        r#"token algorithm "HS256" is not allowed"#
    );

    // A real algorithm that this configuration does not allow.
    let rs512 = sign(&keys()[0], "RS512", &claims());
    assert_eq!(
        refused(&validator, &rs512).await.to_string(),
        r#"token algorithm "RS512" is not allowed"#
    );
}

#[tokio::test]
async fn malformed_tokens_say_what_is_wrong() {
    let (_server, validator) = setup(&config()).await;
    assert_eq!(
        refused(&validator, "not-a-jwt").await.to_string(),
        "malformed token: not a JWT (expected three dot-separated parts)"
    );
    let no_sub = claims().as_object().cloned().map(|mut m| {
        m.remove("sub");
        Value::Object(m)
    });
    let token = sign(&keys()[0], "RS256", &no_sub.unwrap());
    assert_eq!(
        refused(&validator, &token).await.to_string(),
        "malformed token: no sub claim"
    );

    let token = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "groups", json!([1, 2])),
    );
    assert_eq!(
        refused(&validator, &token).await.to_string(),
        "malformed token: the groups claim is not a list of strings"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_rate_limited() {
    let (server, validator) = setup(&config()).await;
    validator
        .validate(&sign(&keys()[0], "RS256", &claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    let stranger = ("nobody-knows".to_owned(), keys()[1].1.clone());
    let err = refused(&validator, &sign(&stranger, "RS256", &claims())).await;
    assert_eq!(
        err.to_string(),
        r#"token is signed with an unknown key (kid "nobody-knows")"#
    );
    assert_eq!(server.hits(), 2, "an unknown kid fetches the JWKS again");

    // Within the cooldown, more unknown kids cost the provider nothing.
    for _ in 0..5 {
        assert!(matches!(
            refused(&validator, &sign(&stranger, "RS256", &claims())).await,
            TokenError::UnknownKey { .. }
        ));
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_and_the_old_one_kept_while_published() {
    let (server, validator) = setup(&config()).await;
    let old_token = sign(&keys()[0], "RS256", &claims());
    validator.validate(&old_token).await.unwrap();

    // The provider publishes key-2 next to key-1 and signs with key-2.
    server.set(jwks(&[&keys()[1], &keys()[0]]));
    let new_token = sign(&keys()[1], "RS256", &claims());
    validator.validate(&new_token).await.unwrap();
    assert_eq!(server.hits(), 2);
    validator.validate(&old_token).await.unwrap();

    // Once key-1 is withdrawn and the cache has been refreshed, its tokens
    // fail. (Refresh interval zero: every use refreshes.)
    let mut config = config();
    config.jwks_refresh_interval = Duration::ZERO;
    let refreshing = TokenValidator::new(&config, server.url.clone()).unwrap();
    refreshing.validate(&old_token).await.unwrap();
    server.set(jwks(&[&keys()[1]]));
    let err = refused(&refreshing, &old_token).await;
    assert_eq!(
        err.to_string(),
        r#"token is signed with an unknown key (kid "key-1")"#
    );
    refreshing.validate(&new_token).await.unwrap();
}

#[tokio::test]
async fn unreachable_keys_are_the_providers_failure() {
    // Port 9 (discard) on loopback: nothing listens.
    let validator =
        TokenValidator::new(&config(), "http://127.0.0.1:9/jwks.json".parse().unwrap()).unwrap();
    let err = refused(&validator, &sign(&keys()[0], "RS256", &claims())).await;
    assert!(matches!(err, TokenError::KeysUnavailable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the identity provider's signing keys could not be fetched"
    );
}

#[tokio::test]
async fn groups_claim_shapes_and_unverified_email() {
    let (_server, validator) = setup(&config()).await;
    let one = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "groups", json!("staff")),
    );
    assert_eq!(validator.validate(&one).await.unwrap().groups, ["staff"]);

    // Azure AD "overage": too many groups, claim replaced by a pointer.
    let mut overage = claims();
    overage.as_object_mut().unwrap().remove("groups");
    overage["_claim_names"] = json!({ "groups": "src1" });
    assert!(
        validator
            .validate(&sign(&keys()[0], "RS256", &overage))
            .await
            .unwrap()
            .groups
            .is_empty()
    );

    let unverified = with(claims(), "email_verified", json!(false));
    assert_eq!(
        validator
            .validate(&sign(&keys()[0], "RS256", &unverified))
            .await
            .unwrap()
            .email,
        None
    );
}

#[tokio::test]
async fn google_workspace_tokens_must_name_the_domain() {
    let mut config = config();
    config.hosted_domain = Some("example.test".into());
    let (_server, validator) = setup(&config).await;
    let ok = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "hd", json!("example.test")),
    );
    validator.validate(&ok).await.unwrap();

    let gmail = sign(&keys()[0], "RS256", &claims());
    assert_eq!(
        refused(&validator, &gmail).await.to_string(),
        r#"account domain none is not the expected "example.test""#
    );
    let other = sign(
        &keys()[0],
        "RS256",
        &with(claims(), "hd", json!("evil.test")),
    );
    assert_eq!(
        refused(&validator, &other).await.to_string(),
        r#"account domain "evil.test" is not the expected "example.test""#
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_up_front() {
    let mut config = config();
    config.allowed_algorithms = vec!["none".into()];
    let err = TokenValidator::new(&config, "http://127.0.0.1:9/jwks.json".parse().unwrap())
        .err()
        .unwrap();
    assert!(matches!(err, OidcError::Config(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"invalid OIDC configuration: signing algorithm "none" cannot be allowed (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"#
    );
}
