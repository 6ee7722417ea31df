//! The JWT backend against forged, expired, misaddressed and confused tokens,
//! and the shared conformance suite.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use micro_auth::{Auth, ErrorKind, conformance::Fixture, jwt::JwtAuth};
use serde_json::{Value, json};

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa-public.pem");
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "orders";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({
        "sub": "ada",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "nbf": now() - 10,
        "scope": "orders:read profile",
        "tenant": "acme",
    })
}

fn rs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn auth() -> JwtAuth {
    JwtAuth::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(5))
        .rsa_pem_file(RSA_PUBLIC)
        .build()
        .unwrap()
}

fn fixture() -> Fixture<JwtAuth> {
    Fixture {
        auth: auth(),
        valid: rs256(&claims()),
    }
}

micro_auth::auth_conformance!(fixture());

#[tokio::test]
async fn a_valid_token_is_its_account_with_scopes_and_claims() {
    let account = auth().inspect(&rs256(&claims())).await.unwrap();
    assert_eq!(account.id, "ada");
    assert_eq!(account.issuer, ISSUER);
    assert_eq!(account.scopes, ["orders:read", "profile"]);
    assert_eq!(
        account.metadata.get("tenant").map(String::as_str),
        Some("acme")
    );
}

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut claims = claims();
    change(&mut claims);
    claims
}

#[tokio::test]
async fn every_forged_or_misaddressed_token_is_unauthenticated() {
    let b64 = |value: &Value| {
        use std::fmt::Write;
        // Unpadded base64url, written here so the test needs no other crate.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = value.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.write_char(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]))
                    .unwrap();
            }
        }
        out
    };
    let other_key = rcgen::KeyPair::generate().unwrap();
    let hs256_with_public_key = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&std::fs::read(RSA_PUBLIC).unwrap()).unwrap(),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("malformed", "not.a.token".to_owned()),
        ("expired", rs256(&with(|c| c["exp"] = json!(now() - 120)))),
        (
            "not yet valid",
            rs256(&with(|c| c["nbf"] = json!(now() + 120))),
        ),
        (
            "wrong issuer",
            rs256(&with(|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "wrong audience",
            rs256(&with(|c| c["aud"] = json!("billing"))),
        ),
        (
            "no expiry",
            rs256(&with(|c| drop(c.as_object_mut().unwrap().remove("exp")))),
        ),
        (
            "wrong signature",
            encode(
                &Header::new(Algorithm::ES256),
                &claims(),
                &EncodingKey::from_ec_pem(other_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims())
            ),
        ),
        (
            "HS256 signed with the RS256 public key",
            hs256_with_public_key,
        ),
    ];
    let auth = auth();
    for (case, token) in cases {
        let err = auth.inspect(&token).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{case}: {err}");
        assert_eq!(
            err.message(),
            "the token is not valid",
            "{case}: says nothing more"
        );
    }
    // Within the leeway, a just-expired token still passes.
    let just_expired = rs256(&with(|c| c["exp"] = json!(now() - 2)));
    assert!(auth.inspect(&just_expired).await.is_ok());
}

#[tokio::test]
async fn keys_come_from_a_jwks_file_chosen_by_kid() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"a shared secret of at least thirty-two bytes";
    let jwks = json!({"keys": [{
        "kty": "oct",
        "kid": "k1",
        "alg": "HS256",
        "k": "YSBzaGFyZWQgc2VjcmV0IG9mIGF0IGxlYXN0IHRoaXJ0eS10d28gYnl0ZXM",
    }]});
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let auth = JwtAuth::builder()
        .issuer(ISSUER)
        .jwks_file(&path)
        .build()
        .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    assert_eq!(auth.inspect(&token).await.unwrap().id, "ada");
    header.kid = Some("unknown".to_owned());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    assert_eq!(
        auth.inspect(&token).await.unwrap_err().kind(),
        ErrorKind::Unauthenticated
    );
}

#[test]
fn unusable_keys_are_named_at_build() {
    let err = JwtAuth::builder()
        .rsa_pem_file("/nonexistent.pem")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    assert_eq!(
        JwtAuth::builder().build().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}
