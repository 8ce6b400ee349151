//! The hostile-input rows an app can send: registration bodies, access tokens and identities.

use axum::body::Body;
use callpush::domain::now_ms;
use http::{Method, Request};
use ring::hmac;
use serde_json::json;

use super::drivers::{
    attacker_header, b64, claims_with, device, hs256, jwt, jwt_text, nested, register, request,
    resigned, with_token, Driver, Input, JSON,
};
use crate::support::api::{claims, token, ACCOUNT_SID, KEY_SECRET, KEY_SID};

/// These rows' drivers, by id, in the table's order.
pub(super) fn rows() -> Vec<(&'static str, Driver)> {
    vec![
        // Registration bodies.
        ("P01", |_| {
            register(format!(
                r#"{{"platform":"fcm","device_token":"{}"}}"#,
                "a".repeat(17 * 1024)
            ))
        }),
        ("P02", |_| register(nested(5_000))),
        ("P03", |_| {
            register(format!(
                r#"{{"platform":"fcm","device_token":"t","x":{}1{}}}"#,
                r#"{"a":"#.repeat(2_500),
                "}".repeat(2_500)
            ))
        }),
        ("P04", |_| register(r#""platform fcm""#)),
        ("P05", |_| register(r#"{"platform":5,"device_token":"t"}"#)),
        ("P06", |_| {
            register(r#"{"platform":"fcm","device_token":["t"]}"#)
        }),
        ("P07", |_| {
            register(r#"{"platform":"fcm","platform":"apns","device_token":"t"}"#)
        }),
        ("P08", |_| {
            register(b"{\"platform\":\"fcm\",\"device_token\":\"t\xff\xfe\"}".to_vec())
        }),
        ("P09", |_| register("")),
        ("P10", |_| {
            Input::Public(request(
                Method::POST,
                "/v1/registrations",
                Some(&token("alice")),
                Some("text/plain"),
                r#"{"platform":"fcm","device_token":"t"}"#,
            ))
        }),
        ("P11", |_| {
            register(r#"{"platform":"fcm","device_token":"t","identity":"bob"}"#)
        }),
        ("P12", |_| device("fcm", "abc\u{0}def")),
        ("P13", |_| device("apns", &"a".repeat(65))),
        ("P14", |_| device("apns", &"g".repeat(64))),
        ("P15", |_| device("apns", &"a".repeat(63))),
        ("P16", |_| device("apns", &"a".repeat(202))),
        ("P17", |_| device("fcm", "abc def")),
        ("P18", |_| device("fcm", "abc{x}def")),
        ("P19", |_| device("fcm", "abc*")),
        ("P20", |_| device("fcm", &"a".repeat(4097))),
        ("P21", |_| device("fcm", "")),
        ("P22", |_| device("fcm", "abcé")),
        ("P23", |_| device("fcm", "abc\ndef")),
        ("P24", |_| {
            register(r#"{"platform":"fcm","fid":"cF3kq9zYRv2X-B8mN1pQ_"}"#)
        }),
        ("P25", |_| {
            register(r#"{"platform":"fcm","fid":"cF3kq9zYRv2X-{B8mN1}Qw"}"#)
        }),
        ("P26", |_| {
            register(r#"{"platform":"fcm","device_token":"t","fid":"cF3kq9zYRv2X-B8mN1pQ_w"}"#)
        }),
        ("P27", |_| {
            register(r#"{"platform":"apns","fid":"cF3kq9zYRv2X-B8mN1pQ_w"}"#)
        }),
        ("P28", |_| {
            register(format!(
                r#"{{"platform":"apns","device_token":"{}","environment":"development"}}"#,
                "ab".repeat(32)
            ))
        }),
        ("P29", |_| {
            register(r#"{"platform":"fcm","device_token":"t","environment":"sandbox"}"#)
        }),
        // Access tokens.
        ("T01", |_| {
            Input::Public(request(
                Method::POST,
                "/v1/registrations",
                None,
                Some(JSON),
                r#"{"platform":"fcm","device_token":"t"}"#,
            ))
        }),
        ("T02", |_| {
            Input::Public(
                Request::post("/v1/registrations")
                    .header("authorization", "Basic YWxpY2U6cHc=")
                    .header("content-type", JSON)
                    .body(Body::from(r#"{"platform":"fcm","device_token":"t"}"#))
                    .unwrap(),
            )
        }),
        ("T03", |_| with_token("not-a-jwt")),
        ("T04", |_| {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            with_token(&format!(
                "{header}.{}.",
                b64(claims("alice").to_string().as_bytes())
            ))
        }),
        ("T05", |_| {
            let good = token("alice");
            let mut parts = good.split('.');
            let (_, body, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
            with_token(&format!(
                "{}.{body}.{sig}",
                b64(br#"{"alg":"none","typ":"JWT"}"#)
            ))
        }),
        ("T06", |_| {
            with_token(&jwt_text(
                r#"{"alg":"HS512","typ":"JWT"}"#,
                &claims("alice").to_string(),
                hmac::HMAC_SHA512,
                KEY_SECRET,
            ))
        }),
        ("T07", |_| {
            with_token(&jwt(json!({"alg": "RS256", "typ": "JWT"}), claims("alice")))
        }),
        ("T08", |_| attacker_header("kid", json!("SK-attacker"))),
        ("T09", |_| {
            attacker_header("jku", json!("https://attacker.example/jwks.json"))
        }),
        ("T10", |_| {
            attacker_header("jwk", json!({"kty": "oct", "k": b64(b"attacker-secret")}))
        }),
        ("T11", |_| {
            attacker_header("x5u", json!("https://attacker.example/cert.pem"))
        }),
        ("T12", |_| with_token(&resigned(""))),
        ("T13", |_| {
            let bob = token("bob");
            let alice = token("alice");
            let sig = alice.rsplit('.').next().unwrap();
            let (input, _) = bob.rsplit_once('.').unwrap();
            with_token(&format!("{input}.{sig}"))
        }),
        ("T14", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("exp", json!((now_ms() / 1000 + 600).to_string())),
            ))
        }),
        ("T15", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("grants", json!([{"identity": "alice"}])),
            ))
        }),
        ("T16", |_| {
            with_token(&jwt(
                hs256(),
                claims_with(
                    "grants",
                    json!({"identity": 42, "voice": {"incoming": {"allow": true}}}),
                ),
            ))
        }),
        ("T17", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("pad", json!("x".repeat(9 * 1024))),
            ))
        }),
        ("T18", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("pad", json!("x".repeat(60 * 1024))),
            ))
        }),
        ("T19", |_| {
            let now = now_ms() / 1000;
            let mut c = claims_with("exp", json!(now - 3600));
            c["nbf"] = json!(now - 7200);
            with_token(&jwt(hs256(), c))
        }),
        ("T20", |_| {
            with_token(&jwt(hs256(), claims_with("iss", json!("SK-unknown"))))
        }),
        ("T21", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("sub", json!("AC-another-account")),
            ))
        }),
        ("T22", |_| {
            with_token(&jwt(hs256(), claims_with("exp", json!(-1))))
        }),
        ("T23", |_| {
            with_token(&jwt(hs256(), claims_with("exp", json!(1e30))))
        }),
        ("T24", |_| {
            let mut c = claims("alice");
            c.as_object_mut().unwrap().remove("exp");
            with_token(&jwt(hs256(), c))
        }),
        ("T25", |_| {
            with_token(&jwt(
                hs256(),
                claims_with("nbf", json!(now_ms() / 1000 + 86_400)),
            ))
        }),
        ("T26", |_| {
            with_token(&jwt(
                hs256(),
                claims_with(
                    "grants",
                    json!({"identity": "alice", "voice": {"incoming": {"allow": "true"}}}),
                ),
            ))
        }),
        ("T27", |_| {
            let good = token("alice");
            let (_, rest) = good.split_once('.').unwrap();
            with_token(&format!("%%%not-base64%%%.{rest}"))
        }),
        ("T28", |_| {
            with_token(&jwt_text(
                r#"["HS256"]"#,
                &claims("alice").to_string(),
                hmac::HMAC_SHA256,
                KEY_SECRET,
            ))
        }),
        ("T29", |_| {
            let text = claims("alice").to_string();
            let doubled = text.replacen('{', r#"{"sub":"AC-another-account","#, 1);
            assert!(doubled.contains(ACCOUNT_SID) && doubled.contains(KEY_SID));
            with_token(&jwt_text(
                &hs256().to_string(),
                &doubled,
                hmac::HMAC_SHA256,
                KEY_SECRET,
            ))
        }),
        ("T30", |_| with_token(&resigned("!!!!$$$$****"))),
        // Identities.
        ("I01", |_| Input::Identity("al{ice".into())),
        ("I02", |_| Input::Identity("al}ice".into())),
        ("I03", |_| Input::Identity("}alice".into())),
        ("I04", |_| Input::Identity("}".into())),
        ("I05", |_| Input::Identity("{}".into())),
        ("I06", |_| Input::Identity("a:b:c".into())),
        ("I07", |_| Input::Identity("*".into())),
        ("I08", |_| Input::Identity("alice smith".into())),
        ("I09", |_| Input::Identity("é".repeat(60) + "x")),
        ("I10", |_| Input::Identity("x".repeat(122))),
        ("I11", |_| Input::Identity("al\u{0}ice".into())),
        ("I12", |_| Input::Identity("al\nice".into())),
        ("I13", |_| Input::Identity(String::new())),
        ("I14", |_| Input::Identity("al\u{FFFD}ice".into())),
    ]
}
