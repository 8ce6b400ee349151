//! The drivers of the hostile-input table (docs/security.md): one per row id, each building
//! the request, stream entry, identity or configuration its row describes.

use std::path::{Path, PathBuf};

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use callpush::domain::now_ms;
use http::{Method, Request};
use ring::hmac;
use serde_json::{json, Value};

use crate::support::api::{claims, token, ACCOUNT_SID, ADMIN_TOKEN, KEY_SECRET, KEY_SID};
use crate::support::twilio;

pub const JSON: &str = "application/json";

/// What a driver sends.
pub enum Input {
    /// A request to the public router.
    Public(Request<Body>),
    /// A request to the admin router.
    Admin(Request<Body>),
    /// Register a fresh FCM device for this identity through the public API, then check the keys
    /// written to Redis.
    Identity(String),
    /// A stream entry (raw bytes), with an explicit id when given.
    Stream(Option<&'static str>, Vec<(Vec<u8>, Vec<u8>)>),
    /// A configuration file's text and `CALLPUSH_` variables; files it names live in
    /// [`Env::dir`].
    Config(String, Vec<(String, String)>),
}

/// What drivers may refer to.
pub struct Env {
    /// A temporary directory for files a configuration names.
    pub dir: PathBuf,
}

// ----- requests -----

pub fn request(
    method: Method,
    uri: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(body.into()).unwrap()
}

/// `POST /v1/registrations` as alice with this body.
fn register(body: impl Into<Body>) -> Input {
    Input::Public(request(
        Method::POST,
        "/v1/registrations",
        Some(&token("alice")),
        Some(JSON),
        body,
    ))
}

fn device(platform: &str, device_token: &str) -> Input {
    register(json!({"platform": platform, "device_token": device_token}).to_string())
}

/// `POST /v1/registrations` of a good FCM device with this bearer token.
fn with_token(bearer: &str) -> Input {
    Input::Public(request(
        Method::POST,
        "/v1/registrations",
        Some(bearer),
        Some(JSON),
        json!({"platform": "fcm", "device_token": "hostile-token-device"}).to_string(),
    ))
}

/// `POST /v1/calls` with the admin token and this body.
fn enqueue(body: impl Into<Body>) -> Input {
    Input::Admin(request(
        Method::POST,
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(JSON),
        body,
    ))
}

/// A good call event with `field` set to `value` (JSON).
fn call_with(field: &str, value: Value) -> Input {
    let mut body = json!({"type": "incoming", "to": "hostile-nobody", "call_sid": "CA-admin"});
    body[field] = value;
    enqueue(body.to_string())
}

fn admin(method: Method, uri: &str, body: Option<&str>) -> Input {
    let (ct, body) = match body {
        Some(b) => (Some(JSON), Body::from(b.to_string())),
        None => (None, Body::empty()),
    };
    Input::Admin(request(method, uri, Some(ADMIN_TOKEN), ct, body))
}

/// `GET uri` on the admin listener with the admin token.
fn get(uri: &str) -> Input {
    admin(Method::GET, uri, None)
}

/// `POST /v1/dead-letters/replay` with this body.
fn replay(body: &str) -> Input {
    admin(Method::POST, "/v1/dead-letters/replay", Some(body))
}

/// A JSON notification to alice signed with the auth token (HMAC-SHA1), sent with this
/// `X-Twilio-Webhooks-Signature-Settings` header.
fn json_with_settings(call_sid: &str, settings: &str) -> Input {
    let body = twilio::json_body(&twilio::notification(call_sid, call_sid, "alice"));
    let sig = twilio::json_signature(twilio::AUTH_TOKEN, twilio::WEBHOOK_URL, &body);
    let header = ("X-Twilio-Webhooks-Signature-Settings", settings);
    Input::Public(twilio::json_request(&body, Some(&sig), &[header]))
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

// ----- access tokens -----

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT of this header and claims text, signed with `alg` and `secret`.
fn jwt_text(header: &str, claims: &str, alg: hmac::Algorithm, secret: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let tag = hmac::sign(&hmac::Key::new(alg, secret.as_bytes()), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An HS256 JWT signed with the configured API key's secret.
pub fn jwt(header: Value, claims: Value) -> String {
    jwt_text(
        &header.to_string(),
        &claims.to_string(),
        hmac::HMAC_SHA256,
        KEY_SECRET,
    )
}

pub fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"})
}

/// alice's claims with `claim` set to `value`.
fn claims_with(claim: &str, value: Value) -> Value {
    let mut c = claims("alice");
    c[claim] = value;
    c
}

/// A header with an extra parameter, signed with the attacker's own secret.
fn attacker_header(param: &str, value: Value) -> Input {
    let mut header = hs256();
    header[param] = value;
    with_token(&jwt_text(
        &header.to_string(),
        &claims("alice").to_string(),
        hmac::HMAC_SHA256,
        "attacker-secret",
    ))
}

/// A good token with its signature replaced by `signature`.
fn resigned(signature: &str) -> String {
    let good = token("alice");
    let (input, _) = good.rsplit_once('.').unwrap();
    format!("{input}.{signature}")
}

// ----- stream entries -----

/// A good entry (to an identity without bindings) with `over` set and `drop` removed.
fn entry(over: &[(&str, &[u8])], drop: &[&str]) -> Input {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = [
        ("type", "incoming"),
        ("to", "hostile-nobody"),
        ("call_sid", "CA-auto"),
    ]
    .iter()
    .filter(|(k, _)| !drop.contains(k) && !over.iter().any(|(o, _)| o == k))
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    fields.extend(
        over.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())),
    );
    Input::Stream(None, fields)
}

fn field(name: &str, value: &str) -> Input {
    entry(&[(name, value.as_bytes())], &[])
}

// ----- configuration -----

fn config(toml: &str) -> Input {
    Input::Config(toml.to_string(), Vec::new())
}

const APNS_CREDENTIAL: &str = "[[credentials]]\nsid = \"CR1\"\nplatform = \"apns\"\nbundle_id = \"com.example.app\"\nteam_id = \"ABCDE12345\"\nkey_id = \"KEY1234567\"\nkey_file = \"/k.p8\"\n";

fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

pub type Driver = fn(&Env) -> Input;

/// Every row's driver, by id.
pub fn drivers() -> Vec<(&'static str, Driver)> {
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
        // Twilio's webhook.
        ("W01", |_| {
            let fields = twilio::notification("CA-w01", "MM-w01", "alice");
            let form = twilio::form_encode(&twilio::pairs(&fields));
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("text/plain"),
                form,
            ))
        }),
        ("W02", |_| {
            let fields = twilio::notification("CA-w02", "MM-w02", "alice");
            Input::Public(twilio::request(&twilio::pairs(&fields), None))
        }),
        ("W03", |_| {
            let fields = twilio::notification("CA-w03", "MM-w03", "alice");
            let other = twilio::notification("CA-other", "MM-w03", "alice");
            let sig = twilio::signature(
                twilio::AUTH_TOKEN,
                twilio::WEBHOOK_URL,
                &twilio::pairs(&other),
            );
            Input::Public(twilio::request(&twilio::pairs(&fields), Some(&sig)))
        }),
        ("W04", |_| {
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("application/x-www-form-urlencoded"),
                "twi_to=client%3Aal%FFice",
            ))
        }),
        ("W05", |_| {
            let fields: Vec<(String, String)> = twilio::notification("CA-w05", "MM-w05", "alice")
                .into_iter()
                .filter(|(k, _)| k != "twi_call_sid")
                .collect();
            Input::Public(twilio::signed(&twilio::pairs(&fields)))
        }),
        ("W06", |_| {
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("application/x-www-form-urlencoded"),
                format!("twi_params={}", "a".repeat(17 * 1024)),
            ))
        }),
        ("W07", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w07", "MM-w07", "alice"));
            Input::Public(twilio::json_request(&body, None, &[]))
        }),
        ("W08", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w08", "MM-w08", "alice"));
            let sig = twilio::json_signature(twilio::AUTH_TOKEN, twilio::WEBHOOK_URL, &body);
            let (parts, _) = twilio::json_request(&body, Some(&sig), &[]).into_parts();
            let tampered = body.replace("alice", "mallory");
            Input::Public(Request::from_parts(parts, Body::from(tampered)))
        }),
        ("W09", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w09", "MM-w09", "alice"));
            Input::Public(twilio::signed_json(&format!("[{body}]")))
        }),
        ("W10", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w10", "MM-w10", "alice"));
            let body = body.replacen('{', r#"{"twi_answer_timeout": 30, "#, 1);
            Input::Public(twilio::signed_json(&body))
        }),
        ("W11", |_| {
            json_with_settings("CA-w11", "key=KS1,algorithm=HMAC_MD5")
        }),
        ("W12", |_| {
            json_with_settings("CA-w12", "key=KS1,algorithm=HMAC_SHA1")
        }),
        // Routes and methods.
        ("R01", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/registrations",
                Some(&token("alice")),
                None,
                Body::empty(),
            ))
        }),
        ("R02", |_| {
            Input::Public(request(
                Method::PUT,
                "/v1/registrations",
                Some(&token("alice")),
                Some(JSON),
                "{}",
            ))
        }),
        ("R03", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/nothing",
                None,
                None,
                Body::empty(),
            ))
        }),
        ("R04", |_| {
            Input::Public(request(
                Method::POST,
                "/v1/calls",
                Some(ADMIN_TOKEN),
                Some(JSON),
                "{}",
            ))
        }),
        ("R05", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/registrations/../../metrics",
                None,
                None,
                Body::empty(),
            ))
        }),
        ("R06", |_| {
            Input::Admin(request(Method::POST, "/metrics", None, None, Body::empty()))
        }),
        ("R07", |_| admin(Method::GET, "/v1/nothing", None)),
        // Admin API.
        ("A01", |_| {
            Input::Admin(request(Method::POST, "/v1/calls", None, Some(JSON), "{}"))
        }),
        ("A02", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some("wrong-admin-token"),
                Some(JSON),
                "{}",
            ))
        }),
        ("A03", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some(&format!("{ADMIN_TOKEN}x")),
                Some(JSON),
                "{}",
            ))
        }),
        ("A04", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some(&token("alice")),
                Some(JSON),
                "{}",
            ))
        }),
        ("A05", |_| {
            call_with("params", json!({"a": "x".repeat(17 * 1024)}))
        }),
        ("A06", |_| {
            enqueue(format!(
                r#"{{"type":"incoming","to":"x","call_sid":"CA1","params":{}}}"#,
                nested(5_000)
            ))
        }),
        ("A07", |_| call_with("to", json!(5))),
        ("A08", |_| {
            enqueue(r#"{"type":"incoming","to":"hostile-nobody","to":"alice","call_sid":"CA-a08"}"#)
        }),
        ("A09", |_| call_with("ttl_ms", json!(-1))),
        ("A10", |_| call_with("ttl_ms", json!(0))),
        ("A11", |_| call_with("ttl_ms", json!(86_400_001u64))),
        ("A12", |_| call_with("ttl_ms", json!("soon"))),
        ("A13", |_| call_with("ttl_ms", json!(1e300))),
        ("A14", |_| {
            call_with("call_sid", json!("C".repeat(10 * 1024)))
        }),
        ("A15", |_| call_with("call_sid", json!("{CA1}"))),
        ("A16", |_| call_with("params", json!(["a", "b"]))),
        ("A17", |_| {
            call_with("params", json!({"a": "x".repeat(3 * 1024)}))
        }),
        ("A18", |_| call_with("params", json!({"a": {"b": "c"}}))),
        ("A19", |_| {
            enqueue(
                r#"{"type":"incoming","to":"hostile-nobody","call_sid":"CA-a19","params":{"a":"1","a":"2"}}"#,
            )
        }),
        ("A20", |_| call_with("to", json!("al\u{0}ice"))),
        ("A21", |_| call_with("type", json!("ring"))),
        ("A22", |_| {
            get(&format!("/v1/identities/{}/bindings", "x".repeat(122)))
        }),
        ("A23", |_| get("/v1/identities/a%00b/bindings")),
        ("A24", |_| get("/v1/identities/%FF/bindings")),
        ("A25", |_| get("/v1/identities/*/bindings")),
        ("A26", |_| get("/v1/dead-letters?limit=many")),
        ("A27", |_| get("/v1/dead-letters?limit=100000")),
        ("A28", |_| get("/v1/dead-letters/not-an-id")),
        ("A29", |_| replay(r#"{"ids":"x"}"#)),
        ("A30", |_| replay("{}")),
        ("A31", |_| replay(r#"{"all":true,"ttl_ms":-5}"#)),
        ("A32", |_| get("/v1/dead-letters?since=yesterday")),
        // Stream entries.
        ("S01", |_| entry(&[], &["type"])),
        ("S02", |_| field("type", "INCOMING")),
        ("S03", |_| entry(&[], &["to"])),
        ("S04", |_| field("to", &"x".repeat(122))),
        ("S05", |_| field("to", "al\u{0}ice")),
        ("S06", |_| entry(&[("to", b"al\xffice")], &[])),
        ("S07", |_| field("call_sid", &"C".repeat(10 * 1024))),
        ("S08", |_| field("call_sid", "")),
        ("S09", |_| entry(&[("call_sid", b"CA\xc3\x28")], &[])),
        ("S10", |_| field("ttl_ms", "-1")),
        ("S11", |_| field("ttl_ms", "0")),
        ("S12", |_| field("ttl_ms", &"9".repeat(25))),
        ("S13", |_| field("ttl_ms", "1e3")),
        ("S14", |_| field("params", "[1]")),
        ("S15", |_| {
            field("params", &json!({"a": "x".repeat(3 * 1024)}).to_string())
        }),
        ("S16", |_| field("params", r#"{"a":{"b":"c"}}"#)),
        ("S17", |_| field("params", &nested(1_000))),
        ("S18", |_| field("params", r#"{"a":"1","a":"2"}"#)),
        ("S27", |_| {
            field("twilio", r#"[{"twi_to": "client:alice"}]"#)
        }),
        ("S28", |_| field("twilio", r#"{"twi_answer_timeout": 30}"#)),
        ("S19", |_| field("from", "+1555\u{1b}[2J")),
        ("S20", |_| field("from", &"1".repeat(300))),
        ("S21", |_| {
            entry(&[("to", b"hostile-nobody"), ("to", b"alice")], &[])
        }),
        ("S22", |_| {
            let Input::Stream(_, fields) = entry(&[], &[]) else {
                unreachable!()
            };
            Input::Stream(Some("1-1"), fields)
        }),
        ("S23", |_| field("to", "}x{")),
        ("S24", |_| {
            let extra: Vec<(String, String)> = (0..500)
                .map(|i| (format!("x{i}"), "y".to_string()))
                .collect();
            let over: Vec<(&str, &[u8])> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            entry(&over, &[])
        }),
        ("S26", |_| {
            entry(
                &[("to", b"hostile-good"), ("call_sid", b"}{CA-s26}:*")],
                &[],
            )
        }),
        ("S25", |_| {
            let Input::Stream(id, mut fields) = entry(&[], &[]) else {
                unreachable!()
            };
            fields.push((b"x\xff".to_vec(), b"y".to_vec()));
            Input::Stream(id, fields)
        }),
        // Configuration.
        ("C01", |_| config("[redis]\nkey_prefix = \"cp:{x}:\"\n")),
        ("C02", |_| {
            config("[redis]\nurll = \"redis://127.0.0.1:1\"\n")
        }),
        ("C03", |_| config("[workers]\nmax_in_flight = \"many\"\n")),
        ("C04", |_| config("[retry]\nmax_attempts = -1\n")),
        ("C05", |_| {
            config("[redis]\nurl = \"redis://a:1\"\nurl = \"redis://b:1\"\n")
        }),
        ("C06", |_| {
            config("[redis]\nurl = \"http://127.0.0.1:6379\"\n")
        }),
        ("C07", |_| {
            config(&format!("[workers]\nmax_in_flight = {}\n", "9".repeat(25)))
        }),
        ("C08", |_| {
            Input::Config(
                String::new(),
                vec![("CALLPUSH_WORKERS__MAX_IN_FLIGHT".into(), "lots".into())],
            )
        }),
        ("C09", |_| {
            config(&APNS_CREDENTIAL.replace("bundle_id = \"com.example.app\"\n", ""))
        }),
        ("C10", |_| {
            config("[[credentials]]\nsid = \"CR1\"\nplatform = \"webpush\"\n")
        }),
        ("C11", |_| {
            config(&format!("{APNS_CREDENTIAL}{APNS_CREDENTIAL}"))
        }),
        ("C12", |env| {
            config(&format!("[auth]\naccount_sid = \"AC1\"\n[[auth.api_keys]]\nsid = \"SK1\"\nsecret_file = \"{}\"\n", env.dir.join("missing.secret").display()))
        }),
        ("C13", |env| {
            config(&format!(
                "[admin]\ntoken_file = \"{}\"\n",
                file(&env.dir, "empty-admin-token", "\n")
            ))
        }),
        ("C14", |_| config("[stream]\nclaim_idle_ms = 0\n")),
        ("C15", |_| {
            config(
                &APNS_CREDENTIAL.replace("key_file", "endpoint = \"ftp://apns.example\"\nkey_file"),
            )
        }),
    ]
}
