//! Twilio's side of the webhook, written from Twilio's published description and independent
//! of callpush: SHA-1 (FIPS 180-4) and HMAC (RFC 2104) by hand, the signature
//! `base64(HMAC-SHA1(auth token, URL + each POST name and value sorted by name))`, form
//! encoding; JSON bodies as Twilio sends them (the URL's query carries `bodySHA256`, the hex
//! SHA-256 of the body, and the signature covers the URL alone); and settings that turn the
//! webhook on. `tests/fixtures/twilio-webhook-vectors.json` checks all of it against requests
//! the real `twilio` library signed.

use std::path::Path;

use axum::body::Body;
use base64::Engine;
use callpush::config::Settings;
use http::Request;
use serde_json::Value;

use super::api::ACCOUNT_SID;

/// The auth token the tests' Twilio account signs with.
pub const AUTH_TOKEN: &str = "test-twilio-auth-token-0123456789";
/// The URL Twilio is configured to call (a proxy in front of callpush: not what it sees).
pub const WEBHOOK_URL: &str = "https://push.example.com/v1/twilio/call-notifications";
/// The route on callpush's public listener.
pub const ROUTE: &str = "/v1/twilio/call-notifications";

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104, block size 64).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(sha1(&inner).iter().copied())
        .collect();
    sha1(&outer)
}

/// What Twilio signs: the URL, then each parameter's name and value, sorted by name.
pub fn data_to_sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut s = url.to_string();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The `X-Twilio-Signature` Twilio would send.
pub fn signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mac = hmac_sha1(token.as_bytes(), data_to_sign(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The hex SHA-256 of a body: Twilio's `bodySHA256`.
pub fn body_sha256(body: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body.as_bytes()))
}

/// The query Twilio adds to the URL for a JSON body.
pub fn json_query(body: &str) -> String {
    format!("bodySHA256={}", body_sha256(body))
}

/// The `X-Twilio-Signature` of a JSON body: the URL with its `bodySHA256`, no parameters.
pub fn json_signature(token: &str, url: &str, body: &str) -> String {
    signature(token, &format!("{url}?{}", json_query(body)), &[])
}

/// A JSON object of string fields, in order, as Twilio posts a notification.
pub fn json_body(fields: &[(String, String)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A JSON webhook request for the body text `body`, its `bodySHA256` in the query, with
/// `signature` (if any) and the extra `headers`.
pub fn json_request(
    body: &str,
    signature: Option<&str>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut req = Request::post(format!("{ROUTE}?{}", json_query(body)))
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-twilio-signature", sig);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

/// A JSON webhook request for `body`, signed as Twilio signs it with the configured URL and
/// auth token.
pub fn signed_json(body: &str) -> Request<Body> {
    json_request(
        body,
        Some(&json_signature(AUTH_TOKEN, WEBHOOK_URL, body)),
        &[],
    )
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, the rest `%XX`.
pub fn form_encode(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Turn the webhook on: the URL, and `tokens` in an auth token file (one per line).
pub fn add_twilio(settings: &mut Settings, dir: &Path, tokens: &[&str]) {
    let file = dir.join("twilio-auth-token");
    std::fs::write(&file, tokens.join("\n") + "\n").unwrap();
    settings.twilio.webhook_url = Some(WEBHOOK_URL.into());
    settings.twilio.auth_token_file = Some(file);
}

/// Accept Webhooks SharedKey secrets too (`keys` in a shared key file, one per line).
pub fn add_shared_keys(settings: &mut Settings, dir: &Path, keys: &[&str]) {
    let file = dir.join("twilio-shared-key");
    std::fs::write(&file, keys.join("\n") + "\n").unwrap();
    settings.twilio.shared_key_file = Some(file);
}

/// The fields of a call notification from `client:alice` to `to` (`client:` added).
pub fn notification(call_sid: &str, message_id: &str, to: &str) -> Vec<(String, String)> {
    [
        ("twi_account_sid", ACCOUNT_SID.to_string()),
        ("twi_bridge_token", "eyJ.bridge.token".to_string()),
        ("twi_call_sid", call_sid.to_string()),
        ("twi_from", "client:alice".to_string()),
        ("twi_message_id", message_id.to_string()),
        ("twi_message_type", "twilio.voice.call".to_string()),
        ("twi_params", "name=Alice+Smith&room=5%26six".to_string()),
        ("twi_to", format!("client:{to}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Borrowed pairs of `fields`.
pub fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A webhook request with `params` as the body and `signature` (if any) in the header.
pub fn request(params: &[(&str, &str)], signature: Option<&str>) -> Request<Body> {
    let mut req = Request::post(ROUTE).header("content-type", "application/x-www-form-urlencoded");
    if let Some(sig) = signature {
        req = req.header("x-twilio-signature", sig);
    }
    req.body(Body::from(form_encode(params))).unwrap()
}

/// A webhook request signed as Twilio signs it, with the configured URL and token.
pub fn signed(params: &[(&str, &str)]) -> Request<Body> {
    request(params, Some(&signature(AUTH_TOKEN, WEBHOOK_URL, params)))
}

/// POST a signed form notification to the daemon's public listener through a real socket.
pub async fn post_signed(base: &str, params: &[(&str, &str)]) -> super::api::Reply {
    let sig = signature(AUTH_TOKEN, WEBHOOK_URL, params);
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-twilio-signature", sig.as_str()),
    ];
    post(base, ROUTE, &headers, form_encode(params)).await
}

/// POST `fields` as a signed JSON notification, as Twilio sends it, to the daemon's public
/// listener through a real socket, with the extra `headers`.
pub async fn post_signed_json(
    base: &str,
    fields: &[(String, String)],
    headers: &[(&str, &str)],
) -> super::api::Reply {
    let body = json_body(fields);
    let sig = json_signature(AUTH_TOKEN, WEBHOOK_URL, &body);
    let mut all = vec![
        ("content-type", "application/json"),
        ("x-twilio-signature", sig.as_str()),
    ];
    all.extend_from_slice(headers);
    post(base, &format!("{ROUTE}?{}", json_query(&body)), &all, body).await
}

async fn post(base: &str, path: &str, headers: &[(&str, &str)], body: String) -> super::api::Reply {
    use http_body_util::BodyExt;
    let (authority, mut sender) = super::api::connect_http1(base).await;
    let mut req = Request::post(path).header("host", &authority);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    super::api::Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// Add a copy of credential `from` named `sid` that sends the Twilio SDK's format.
pub fn add_twilio_credential(settings: &mut Settings, from: &str, sid: &str) {
    use callpush::config::{CredentialSettings, PayloadFormat};
    let mut copy = settings
        .credentials
        .iter()
        .find(|c| c.sid() == from)
        .cloned()
        .expect("the credential to copy");
    match &mut copy {
        CredentialSettings::Apns(c) => {
            c.sid = sid.into();
            c.payload = PayloadFormat::Twilio;
        }
        CredentialSettings::Fcm(c) => {
            c.sid = sid.into();
            c.payload = PayloadFormat::Twilio;
        }
    }
    settings.credentials.push(copy);
}
