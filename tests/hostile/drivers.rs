//! The drivers of the hostile-input table (docs/security.md): one per row id, each building
//! the request, stream entry, identity or configuration its row describes.

use std::path::{Path, PathBuf};

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Method, Request};
use ring::hmac;
use serde_json::{json, Value};

use crate::support::api::{claims, token, ADMIN_TOKEN, KEY_SECRET};
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
pub(super) fn register(body: impl Into<Body>) -> Input {
    Input::Public(request(
        Method::POST,
        "/v1/registrations",
        Some(&token("alice")),
        Some(JSON),
        body,
    ))
}

pub(super) fn device(platform: &str, device_token: &str) -> Input {
    register(json!({"platform": platform, "device_token": device_token}).to_string())
}

/// `POST /v1/registrations` of a good FCM device with this bearer token.
pub(super) fn with_token(bearer: &str) -> Input {
    Input::Public(request(
        Method::POST,
        "/v1/registrations",
        Some(bearer),
        Some(JSON),
        json!({"platform": "fcm", "device_token": "hostile-token-device"}).to_string(),
    ))
}

/// `POST /v1/calls` with the admin token and this body.
pub(super) fn enqueue(body: impl Into<Body>) -> Input {
    Input::Admin(request(
        Method::POST,
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(JSON),
        body,
    ))
}

/// A good call event with `field` set to `value` (JSON).
pub(super) fn call_with(field: &str, value: Value) -> Input {
    let mut body = json!({"type": "incoming", "to": "hostile-nobody", "call_sid": "CA-admin"});
    body[field] = value;
    enqueue(body.to_string())
}

pub(super) fn admin(method: Method, uri: &str, body: Option<&str>) -> Input {
    let (ct, body) = match body {
        Some(b) => (Some(JSON), Body::from(b.to_string())),
        None => (None, Body::empty()),
    };
    Input::Admin(request(method, uri, Some(ADMIN_TOKEN), ct, body))
}

/// `GET uri` on the admin listener with the admin token.
pub(super) fn get(uri: &str) -> Input {
    admin(Method::GET, uri, None)
}

/// `POST /v1/dead-letters/replay` with this body.
pub(super) fn replay(body: &str) -> Input {
    admin(Method::POST, "/v1/dead-letters/replay", Some(body))
}

/// A JSON notification to alice signed with the auth token (HMAC-SHA1), sent with this
/// `X-Twilio-Webhooks-Signature-Settings` header.
pub(super) fn json_with_settings(call_sid: &str, settings: &str) -> Input {
    let body = twilio::json_body(&twilio::notification(call_sid, call_sid, "alice"));
    let sig = twilio::json_signature(twilio::AUTH_TOKEN, twilio::WEBHOOK_URL, &body);
    let header = ("X-Twilio-Webhooks-Signature-Settings", settings);
    Input::Public(twilio::json_request(&body, Some(&sig), &[header]))
}

pub(super) fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

// ----- access tokens -----

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT of this header and claims text, signed with `alg` and `secret`.
pub(super) fn jwt_text(header: &str, claims: &str, alg: hmac::Algorithm, secret: &str) -> String {
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
pub(super) fn claims_with(claim: &str, value: Value) -> Value {
    let mut c = claims("alice");
    c[claim] = value;
    c
}

/// A header with an extra parameter, signed with the attacker's own secret.
pub(super) fn attacker_header(param: &str, value: Value) -> Input {
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
pub(super) fn resigned(signature: &str) -> String {
    let good = token("alice");
    let (input, _) = good.rsplit_once('.').unwrap();
    format!("{input}.{signature}")
}

// ----- stream entries -----

/// A good entry (to an identity without bindings) with `over` set and `drop` removed.
pub(super) fn entry(over: &[(&str, &[u8])], drop: &[&str]) -> Input {
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

pub(super) fn field(name: &str, value: &str) -> Input {
    entry(&[(name, value.as_bytes())], &[])
}

// ----- configuration -----

pub(super) fn config(toml: &str) -> Input {
    Input::Config(toml.to_string(), Vec::new())
}

pub(super) const APNS_CREDENTIAL: &str = "[[credentials]]\nsid = \"CR1\"\nplatform = \"apns\"\nbundle_id = \"com.example.app\"\nteam_id = \"ABCDE12345\"\nkey_id = \"KEY1234567\"\nkey_file = \"/k.p8\"\n";

pub(super) fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

pub type Driver = fn(&Env) -> Input;

/// Every row's driver, by id, in the table's order.
pub fn drivers() -> Vec<(&'static str, Driver)> {
    let mut rows = super::app_rows::rows();
    rows.extend(super::server_rows::rows());
    rows
}
