//! Access tokens built independently of the verifier (jsonwebtoken and hand-made JWTs, in the
//! exact Twilio layout), and every way the verifier refuses one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const NOW: u64 = 1_800_000_000;
const ACCOUNT: &str = "AC00000000000000000000000000000001";
const KEY: &str = "SK00000000000000000000000000000001";
const KEY2: &str = "SK00000000000000000000000000000002";
const SECRET: &str = "the-api-key-secret";
const SECRET2: &str = "the-rotated-secret";

fn auth() -> (Auth, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k1"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.path().join("k2"), SECRET2).unwrap();
    std::fs::write(dir.path().join("admin"), "admin-token\n").unwrap();
    let toml = format!(
        r#"
[admin]
token_file = "{d}/admin"
[auth]
account_sid = "{ACCOUNT}"
max_token_ttl_secs = 3600
[[auth.api_keys]]
sid = "{KEY}"
secret_file = "{d}/k1"
[[auth.api_keys]]
sid = "{KEY2}"
secret_file = "{d}/k2"
[[credentials]]
sid = "CRapns"
platform = "apns"
bundle_id = "com.example.app"
team_id = "T"
key_id = "K"
key_file = "/k.p8"
[[credentials]]
sid = "CRfcm1"
platform = "fcm"
service_account_file = "/sa.json"
[[credentials]]
sid = "CRfcm2"
platform = "fcm"
service_account_file = "/sa.json"
"#,
        d = dir.path().display()
    );
    let settings = Settings::from_toml_with_env(&toml, Vec::new()).unwrap();
    (Auth::from_settings(&settings).unwrap(), dir)
}

fn claims() -> Value {
    json!({
        "jti": format!("{KEY}-{NOW}"),
        "iss": KEY,
        "sub": ACCOUNT,
        "nbf": NOW - 10,
        "exp": NOW + 3000,
        "grants": {
            "identity": "alice",
            "voice": {"incoming": {"allow": true}, "push_credential_sid": "CRapns"}
        }
    })
}

fn twilio_header() -> Header {
    Header {
        typ: Some("JWT".into()),
        cty: Some("twilio-fpa;v=1".into()),
        ..Header::new(Algorithm::HS256)
    }
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &twilio_header(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn with(mut c: Value, pointer: &str, value: Value) -> Value {
    *c.pointer_mut(pointer).unwrap() = value;
    c
}

fn without(mut c: Value, parent: &str, key: &str) -> Value {
    c.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    c
}

#[test]
fn a_twilio_token_verifies() {
    let (auth, _d) = auth();
    let t = auth.verify(&sign(&claims(), SECRET), NOW).unwrap();
    assert_eq!(t.identity, "alice");
    assert_eq!(t.push_credential_sid.as_deref(), Some("CRapns"));
    assert!(t.incoming_allowed);
    assert_eq!(t.api_key_sid, KEY);
    assert_eq!(auth.credential_for(&t, Platform::Apns).unwrap(), "CRapns");
}

#[test]
fn without_nbf_and_with_other_grants_and_a_rotated_key() {
    let (auth, _d) = auth();
    let mut c = without(claims(), "", "nbf");
    c["grants"]["video"] = json!({"room": "r1"});
    c["grants"]["chat"] = json!({"service_sid": "IS1"});
    c["iss"] = KEY2.into();
    let t = auth.verify(&sign(&c, SECRET2), NOW).unwrap();
    assert_eq!(t.identity, "alice");
    // A token without `typ` and `cty` is fine too.
    let plain = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(auth.verify(&plain, NOW).is_ok());
}

#[test]
fn every_rejection_has_its_code_and_names_the_problem() {
    let (auth, _d) = auth();
    let good = sign(&claims(), SECRET);
    let parts: Vec<&str> = good.split('.').collect();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let rs256 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256"})),
        parts[1],
        parts[2]
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let long_identity = "x".repeat(122);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("alg none", none, "invalid_token", "only HS256"),
        ("RS256 header", rs256, "invalid_token", "only HS256"),
        ("HS512", hs512, "invalid_token", "only HS256"),
        (
            "wrong secret",
            sign(&claims(), "nope"),
            "invalid_token",
            "signature",
        ),
        (
            "unknown iss",
            sign(&with(claims(), "/iss", "SKother".into()), SECRET),
            "invalid_token",
            "`iss`",
        ),
        (
            "wrong sub",
            sign(&with(claims(), "/sub", "ACother".into()), SECRET),
            "invalid_token",
            "`sub`",
        ),
        (
            "expired",
            sign(&with(claims(), "/exp", (NOW - 31).into()), SECRET),
            "token_expired",
            "expired",
        ),
        (
            "nbf ahead",
            sign(&with(claims(), "/nbf", (NOW + 31).into()), SECRET),
            "invalid_token",
            "not valid before",
        ),
        (
            "too long",
            sign(&with(claims(), "/exp", (NOW - 10 + 3601).into()), SECRET),
            "invalid_token",
            "at most 3600",
        ),
        (
            "no exp",
            sign(&without(claims(), "", "exp"), SECRET),
            "invalid_token",
            "`exp`",
        ),
        (
            "no identity",
            sign(&without(claims(), "/grants", "identity"), SECRET),
            "invalid_token",
            "grants.identity is missing",
        ),
        (
            "empty identity",
            sign(&with(claims(), "/grants/identity", "".into()), SECRET),
            "invalid_token",
            "empty",
        ),
        (
            "control char",
            sign(
                &with(claims(), "/grants/identity", "al\nice".into()),
                SECRET,
            ),
            "invalid_token",
            "control",
        ),
        (
            "122 bytes",
            sign(
                &with(claims(), "/grants/identity", long_identity.into()),
                SECRET,
            ),
            "invalid_token",
            "121",
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            "invalid_token",
            "three",
        ),
        (
            "bad base64",
            format!("{}.!!!.{}", parts[0], parts[2]),
            "invalid_token",
            "claims",
        ),
        (
            "bad json",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode("{nope"),
                parts[2]
            ),
            "invalid_token",
            "claims",
        ),
        ("not a jwt", "hello".into(), "invalid_token", "three"),
    ];
    for (name, token, code, says) in cases {
        let err = auth.verify(&token, NOW).expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err}");
        assert_eq!(err.status(), 401, "{name}");
        let msg = err.to_string();
        assert!(
            msg.contains(says),
            "{name}: {msg:?} should mention {says:?}"
        );
        assert!(!msg.contains(SECRET), "{name}: never echo the secret");
    }
}

#[test]
fn skew_of_thirty_seconds_is_tolerated() {
    let (auth, _d) = auth();
    assert!(auth
        .verify(
            &sign(&with(claims(), "/exp", (NOW - 30).into()), SECRET),
            NOW
        )
        .is_ok());
    assert!(auth
        .verify(
            &sign(&with(claims(), "/nbf", (NOW + 30).into()), SECRET),
            NOW
        )
        .is_ok());
}

#[test]
fn registration_needs_the_incoming_grant() {
    let (auth, _d) = auth();
    for c in [
        with(claims(), "/grants/voice/incoming/allow", false.into()),
        without(claims(), "/grants/voice", "incoming"),
        without(claims(), "/grants", "voice"),
    ] {
        let t = auth.verify(&sign(&c, SECRET), NOW).unwrap();
        let err = t.require_incoming().unwrap_err();
        assert_eq!((err.code(), err.status()), ("grant_missing", 403));
    }
}

#[test]
fn the_credential_comes_from_the_grant_or_the_only_one_of_the_platform() {
    let (auth, _d) = auth();
    let no_sid = without(claims(), "/grants/voice", "push_credential_sid");
    let t = auth.verify(&sign(&no_sid, SECRET), NOW).unwrap();
    assert_eq!(auth.credential_for(&t, Platform::Apns).unwrap(), "CRapns");
    let err = auth.credential_for(&t, Platform::Fcm).unwrap_err();
    assert!(err.to_string().contains("several fcm"), "{err}");

    let unknown = with(
        claims(),
        "/grants/voice/push_credential_sid",
        "CRnope".into(),
    );
    let t = auth.verify(&sign(&unknown, SECRET), NOW).unwrap();
    let err = auth.credential_for(&t, Platform::Apns).unwrap_err();
    assert!(
        err.to_string().contains("CRnope is not configured"),
        "{err}"
    );

    let t = auth.verify(&sign(&claims(), SECRET), NOW).unwrap();
    let err = auth.credential_for(&t, Platform::Fcm).unwrap_err();
    assert!(err.to_string().contains("not an fcm credential"), "{err}");
}

#[test]
fn admin_token_is_compared_exactly() {
    let (auth, _d) = auth();
    assert!(auth.admin_token_matches("admin-token"));
    assert!(!auth.admin_token_matches("admin-token "));
    assert!(!auth.admin_token_matches(""));
    assert!(!format!("{auth:?}").contains("admin-token"));
}

#[test]
fn minted_tokens_verify_and_carry_the_twilio_header() {
    let (auth, dir) = auth();
    let toml = format!(
        "[auth]\naccount_sid = \"{ACCOUNT}\"\n[[auth.api_keys]]\nsid = \"{KEY}\"\nsecret_file = \"{}/k1\"\n[[credentials]]\nsid = \"CRfcm1\"\nplatform = \"fcm\"\nservice_account_file = \"/sa.json\"\n",
        dir.path().display()
    );
    let settings = Settings::from_toml_with_env(&toml, Vec::new()).unwrap();
    let token = mint(&settings, "bob", 600, Some("CRfcm1"), NOW).unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["cty"], "twilio-fpa;v=1");
    let t = auth.verify(&token, NOW + 1).unwrap();
    assert_eq!(t.identity, "bob");
    assert_eq!(t.push_credential_sid.as_deref(), Some("CRfcm1"));
    assert!(mint(&settings, "bob", 600, Some("CRnope"), NOW).is_err());
}
