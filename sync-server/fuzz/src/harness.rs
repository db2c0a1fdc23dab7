//! What each fuzz target does with one input.
//!
//! `sync-server/tests/fuzz_regressions.rs` includes this file by path, so
//! every committed crasher is replayed through exactly the code that found
//! it. Each function returns `Ok` when sync-server accepted the input and
//! its refusal otherwise; it panics only when a guarantee is broken (a panic
//! in the decoder, an accepted input that does not re-encode to itself, a
//! token accepted that the signer did not make, a name accepted against the
//! documented rules).

use bytes::Bytes;
use sync_server::auth::tokens::{TokenError, TokenKind, TokenSigner};
use sync_server::cluster::{Body, Envelope};
use sync_server::docs::{DocName, MAX_NAME_LEN, NameError};

/// Every fuzz target, by the name of its `fuzz_targets/` file.
pub const TARGETS: [&str; 3] = ["cluster_envelope", "document_token", "doc_name"];

/// The secret the `document_token` target verifies with. The kept
/// `valid-*` tokens are signed with it.
pub const TOKEN_SECRET: &[u8] = b"sync-server fuzz secret, 32 byte";

/// The clock the `document_token` target verifies at (2023-11-14), so a
/// kept token neither expires nor depends on when the test runs.
pub const TOKEN_NOW: u64 = 1_700_000_000;

/// Runs `target` on one input.
pub fn run(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "cluster_envelope" => cluster_envelope(data),
        "document_token" => document_token(data),
        "doc_name" => doc_name(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}

/// A message from another node, as Redis delivers it. One that decodes must
/// obey the header's rules and re-encode to exactly the bytes received: the
/// format has no slack, so anything else means a field was misread.
fn cluster_envelope(data: &[u8]) -> Result<(), String> {
    let envelope = Envelope::decode(Bytes::copy_from_slice(data)).map_err(|e| e.to_string())?;
    if let Body::Updates {
        first_seq,
        last_seq,
        ..
    } = &envelope.body
    {
        assert!(
            *first_seq >= 1 && first_seq <= last_seq,
            "accepted entries {first_seq}..={last_seq}"
        );
    }
    let encoded = envelope.encode();
    assert_eq!(&encoded[..], data, "re-encoding changed the message");
    assert_eq!(
        Envelope::decode(encoded),
        Ok(envelope),
        "the re-encoded message decodes differently"
    );
    Ok(())
}

/// A bearer token or session cookie from a client, as text (invalid UTF-8
/// replaced, as an HTTP header or query string would reach us). Accepted
/// means accepted as either kind; a token is only ever accepted when it is
/// exactly what the signer makes of the claims it carries.
fn document_token(data: &[u8]) -> Result<(), String> {
    let token = String::from_utf8_lossy(data);
    let signer = TokenSigner::new(TOKEN_SECRET);
    let ours = TokenSigner::is_ours(&token);
    let mut accepted = None;
    let mut refusals = Vec::new();
    for kind in [TokenKind::Document, TokenKind::Session] {
        match signer.verify(&token, kind, TOKEN_NOW) {
            Ok(claims) => {
                assert_eq!(claims.kind, kind, "accepted as the wrong kind");
                assert!(claims.exp > TOKEN_NOW, "accepted after expiry");
                assert!(ours, "accepted a token is_ours does not claim");
                assert_eq!(
                    signer.sign(&claims),
                    token,
                    "accepted a token the signer did not make"
                );
                assert!(accepted.replace(claims).is_none(), "accepted as both kinds");
            }
            Err(e) => refusals.push(e),
        }
    }
    if accepted.is_some() {
        // The same token under another secret must not verify.
        let other = TokenSigner::new(b"some other secret");
        for kind in [TokenKind::Document, TokenKind::Session] {
            assert_eq!(
                other.verify(&token, kind, TOKEN_NOW),
                Err(TokenError::BadSignature),
                "another secret accepted the token"
            );
        }
        return Ok(());
    }
    Err(refusals[0].to_string())
}

/// Whether the documented rules allow `c` in a document name.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-' | '/')
}

/// A document name from a URL (invalid UTF-8 replaced). Checked against the
/// rules in `docs/name.rs`, restated here: 1 to `MAX_NAME_LEN` bytes, all
/// from `[A-Za-z0-9._~-]` and `/`; a refusal names the first reason.
fn doc_name(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let first_bad = text.chars().enumerate().find(|&(_, c)| !allowed(c));
    match DocName::parse(&text) {
        Ok(name) => {
            assert!(!text.is_empty(), "accepted an empty name");
            assert!(text.len() <= MAX_NAME_LEN, "accepted {} bytes", text.len());
            assert_eq!(first_bad, None, "accepted a forbidden character");
            assert_eq!(name.as_str(), text, "the name changed");
            assert_eq!(name.to_string(), text, "the name displays differently");
            let workspace = text.split('/').next().unwrap_or_default();
            assert_eq!(name.workspace(), workspace, "wrong workspace");
            Ok(())
        }
        Err(e) => {
            match &e {
                NameError::Empty => assert!(text.is_empty(), "{e} for {text:?}"),
                NameError::BadCharacter { found, position } => {
                    assert_eq!(first_bad, Some((*position, *found)), "{e} for {text:?}")
                }
                NameError::TooLong { len } => {
                    assert_eq!(first_bad, None, "{e} for {text:?}");
                    assert!(*len == text.len() && *len > MAX_NAME_LEN, "{e}");
                }
            }
            Err(e.to_string())
        }
    }
}
