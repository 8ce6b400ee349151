//! The APNs simulator: `POST /3/device/<token>` checked as `api.push.apple.com` checks it (the
//! ES256 provider token's signature, `kid`, `iss` and age; the topic; the push type; the
//! payload), answered with Apple's statuses, `{"reason": …}` bodies and an `apns-id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::server::{json as json_response, Handler};
use super::{
    log_push, Behaviour, Flakes, SimOptions, DEV_APNS_PUBLIC_KEY, DEV_BUNDLE_ID, DEV_KEY_ID,
};

/// Apple's VoIP payload limit, in bytes.
const MAX_VOIP_PAYLOAD: usize = 5120;
/// Apple refuses provider tokens older than an hour.
const TOKEN_MAX_AGE_SECS: u64 = 3600;

pub(super) struct ApnsSim {
    key: DecodingKey,
    flakes: Arc<Flakes>,
    options: SimOptions,
    ids: AtomicU64,
    /// The last provider token that passed, with its `iat`: Apple's clients reuse one token for
    /// up to an hour, so checking its signature once keeps the simulator cheap under load.
    verified: Mutex<Option<(String, u64)>>,
}

impl ApnsSim {
    pub(super) fn new(flakes: Arc<Flakes>, options: SimOptions) -> ApnsSim {
        ApnsSim {
            key: DecodingKey::from_ec_pem(DEV_APNS_PUBLIC_KEY.as_bytes())
                .expect("the compiled-in APNs public key is P-256 PEM"),
            flakes,
            options,
            ids: AtomicU64::new(1),
            verified: Mutex::new(None),
        }
    }

    /// Apple's checks before it looks at the device, in Apple's order.
    fn check(&self, parts: &Parts, token: &str, body: &Value, len: usize) -> Result<(), Refusal> {
        if parts.method != Method::POST {
            return Err((405, "MethodNotAllowed"));
        }
        if token.is_empty() {
            return Err((400, "MissingDeviceToken"));
        }
        if !(64..=200).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken"));
        }
        self.check_provider_token(&parts.headers)?;
        let topic = header(&parts.headers, "apns-topic").ok_or((400, "MissingTopic"))?;
        if topic != format!("{DEV_BUNDLE_ID}.voip") {
            return Err((400, "TopicDisallowed"));
        }
        if header(&parts.headers, "apns-push-type") != Some("voip") {
            return Err((400, "InvalidPushType"));
        }
        if len > MAX_VOIP_PAYLOAD {
            return Err((413, "PayloadTooLarge"));
        }
        if !body.get("aps").is_some_and(Value::is_object) {
            return Err((400, "PayloadEmpty"));
        }
        Ok(())
    }

    fn check_provider_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let jwt = header(headers, "authorization")
            .and_then(|v| {
                v.strip_prefix("bearer ")
                    .or_else(|| v.strip_prefix("Bearer "))
            })
            .ok_or((403, "MissingProviderToken"))?;
        let known = match &*self.verified.lock().expect("sim lock") {
            Some((token, iat)) if token == jwt => Some(*iat),
            _ => None,
        };
        let iat = match known {
            Some(iat) => iat,
            None => self.verify(jwt)?,
        };
        if crate::domain::now_ms() / 1000 > iat + TOKEN_MAX_AGE_SECS {
            return Err((403, "ExpiredProviderToken"));
        }
        Ok(())
    }

    /// Check a provider token's signature, `kid` and `iss`; returns its `iat`.
    fn verify(&self, jwt: &str) -> Result<u64, Refusal> {
        #[derive(serde::Deserialize)]
        struct Claims {
            iss: String,
            iat: u64,
        }
        let invalid = (403, "InvalidProviderToken");
        let head = jsonwebtoken::decode_header(jwt).map_err(|_| invalid)?;
        if head.alg != Algorithm::ES256 || head.kid.as_deref() != Some(DEV_KEY_ID) {
            return Err(invalid);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(jwt, &self.key, &validation)
            .map_err(|_| invalid)?
            .claims;
        if claims.iss != super::DEV_TEAM_ID {
            return Err(invalid);
        }
        *self.verified.lock().expect("sim lock") = Some((jwt.to_string(), claims.iat));
        Ok(claims.iat)
    }
}

/// Apple's status and reason for a refused push.
type Refusal = (u16, &'static str);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[async_trait::async_trait]
impl Handler for ApnsSim {
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
        let token = parts
            .uri
            .path()
            .strip_prefix("/3/device/")
            .unwrap_or("")
            .to_string();
        let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let kind = payload["callpush"]["type"].as_str().unwrap_or("?");
        let call_sid = payload["callpush"]["call_sid"].as_str().unwrap_or("?");
        let refusal = match self.check(&parts, &token, &payload, body.len()) {
            Err(refusal) => Some(refusal),
            Ok(()) => match self.flakes.answer(&token, kind, call_sid) {
                Behaviour::Accept => None,
                Behaviour::Gone => Some((410, "Unregistered")),
                Behaviour::Reject => Some((400, "TopicDisallowed")),
                Behaviour::Flaky => Some((503, "ServiceUnavailable")),
            },
        };
        let (status, reason) = refusal.unwrap_or((200, ""));
        log_push("APNs", &token, kind, call_sid, status, reason);
        self.options.observe("APNs", call_sid, status);
        let mut response = match refusal {
            None => Response::new(Full::new(Bytes::new())),
            Some((410, reason)) => json_response(
                StatusCode::GONE,
                &json!({"reason": reason, "timestamp": crate::domain::now_ms()}),
            ),
            Some((status, reason)) => json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &json!({"reason": reason}),
            ),
        };
        // Apple echoes the client's apns-id, or makes one up.
        let id = parts.headers.get("apns-id").cloned().unwrap_or_else(|| {
            let n = self.ids.fetch_add(1, Ordering::Relaxed);
            HeaderValue::try_from(format!("00000000-0000-4000-8000-{n:012X}"))
                .expect("an ASCII header value")
        });
        response.headers_mut().insert("apns-id", id);
        response
    }
}
