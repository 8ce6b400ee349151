//! The request checks `api.push.apple.com` makes before it looks at the device, in Apple's
//! order, each failing with Apple's status and reason: method, path, device token, duplicate
//! headers, the ES256 provider token (signature, `kid`, `iss`, age), topic, push type,
//! priority, expiration, collapse id, payload size and shape.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderMap, Method};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::ApnsOptions;
use crate::record::bearer;
use crate::SimError;

/// Apple's VoIP payload limit.
pub(super) const MAX_VOIP_PAYLOAD: usize = 5120;

/// A failed check: Apple's status and reason.
pub(super) type Refusal = (u16, &'static str);

/// A provider token that passed signature, `kid` and `iss` checks (Apple caches those too).
#[derive(Clone, Copy)]
struct Verified {
    iat: u64,
}

/// Checks requests against one team, key and topic.
pub(super) struct Checker {
    team_id: String,
    key_id: String,
    topic: String,
    key: DecodingKey,
    verified: Mutex<HashMap<String, Verified>>,
}

impl Checker {
    pub(super) fn new(opts: &ApnsOptions) -> Result<Self, SimError> {
        let key = DecodingKey::from_ec_pem(opts.public_key_pem.as_bytes())
            .map_err(|e| SimError::Key(format!("the APNs public key: {e}")))?;
        Ok(Checker {
            team_id: opts.team_id.clone(),
            key_id: opts.key_id.clone(),
            topic: opts.topic.clone(),
            key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Apple's refusal of a malformed or unauthorised request, if any. `expire_before` is the
    /// scripted "provider tokens issued before this second are expired" (0: none).
    pub(super) fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: u64,
        expire_before: u64,
    ) -> Result<(), Refusal> {
        if method != Method::POST {
            return Err((405, "MethodNotAllowed"));
        }
        let token = device_token(path)?;
        if token.is_empty() {
            return Err((400, "MissingDeviceToken"));
        }
        if !(64..=200).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken"));
        }
        if [
            "apns-topic",
            "apns-push-type",
            "apns-priority",
            "apns-expiration",
            "apns-collapse-id",
        ]
        .iter()
        .any(|h| headers.get_all(*h).iter().count() > 1)
        {
            return Err((400, "DuplicateHeaders"));
        }
        self.check_provider_token(headers, now_secs, expire_before)?;
        let topic = header(headers, "apns-topic").ok_or((400, "MissingTopic"))?;
        if topic != self.topic {
            return Err((400, "TopicDisallowed"));
        }
        match header(headers, "apns-push-type") {
            Some("voip") if topic.ends_with(".voip") => {}
            Some("alert" | "background") if !topic.ends_with(".voip") => {}
            _ => return Err((400, "InvalidPushType")),
        }
        if !matches!(header(headers, "apns-priority"), None | Some("5" | "10")) {
            return Err((400, "BadPriority"));
        }
        if let Some(exp) = header(headers, "apns-expiration") {
            if exp.parse::<u64>().is_err() {
                return Err((400, "BadExpirationDate"));
            }
        }
        if header(headers, "apns-collapse-id").is_some_and(|c| c.len() > 64) {
            return Err((400, "BadCollapseId"));
        }
        if body.len() > MAX_VOIP_PAYLOAD {
            return Err((413, "PayloadTooLarge"));
        }
        // Apple documents one reason for a payload it cannot use: an empty body, a body that is
        // not a JSON object, or one without `aps` all come back as PayloadEmpty.
        let parsed: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(body).ok();
        if !parsed.is_some_and(|o| o.get("aps").is_some_and(|a| a.is_object())) {
            return Err((400, "PayloadEmpty"));
        }
        Ok(())
    }

    fn check_provider_token(
        &self,
        headers: &HeaderMap,
        now_secs: u64,
        expire_before: u64,
    ) -> Result<(), Refusal> {
        let jwt = bearer(headers).ok_or((403, "MissingProviderToken"))?;
        let cached = self.verified.lock().expect("sim lock").get(jwt).copied();
        let verified = match cached {
            Some(v) => v,
            None => {
                let v = self.verify(jwt).ok_or((403, "InvalidProviderToken"))?;
                self.verified
                    .lock()
                    .expect("sim lock")
                    .insert(jwt.to_string(), v);
                v
            }
        };
        if verified.iat < expire_before || now_secs.saturating_sub(verified.iat) > 3600 {
            return Err((403, "ExpiredProviderToken"));
        }
        Ok(())
    }

    fn verify(&self, jwt: &str) -> Option<Verified> {
        #[derive(serde::Deserialize)]
        struct Claims {
            iss: String,
            iat: u64,
        }
        let header = jsonwebtoken::decode_header(jwt).ok()?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(&self.key_id) {
            return None;
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(jwt, &self.key, &validation).ok()?;
        (data.claims.iss == self.team_id).then_some(Verified {
            iat: data.claims.iat,
        })
    }
}

/// The device token of `/3/device/<token>`.
pub(super) fn device_token(path: &str) -> Result<&str, Refusal> {
    path.strip_prefix("/3/device/")
        .or_else(|| (path == "/3/device").then_some(""))
        .ok_or((404, "BadPath"))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
