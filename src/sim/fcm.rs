//! The FCM simulator, with Google's token endpoint beside it:
//! - `POST /token`: the JWT-bearer grant; the RS256 assertion is checked (signature, `iss`,
//!   `aud`, lifetime, scope) and traded for an access token, as `oauth2.googleapis.com` does;
//! - `POST /v1/projects/<project>/messages:send`: the bearer must be one it issued and
//!   unexpired, the project its own, the message a data message to a token; answered with
//!   FCM's statuses and `google.rpc.Status` bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::server::{json as json_response, Handler};
use super::{
    log_push, Behaviour, Flakes, SimOptions, DEV_CLIENT_EMAIL, DEV_FCM_PUBLIC_KEY, DEV_PROJECT_ID,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long an access token lives (Google's is an hour).
const ACCESS_TOKEN_SECS: u64 = 3600;

pub(super) struct FcmSim {
    key: DecodingKey,
    token_uri: String,
    issued: Mutex<HashMap<String, Instant>>,
    flakes: Arc<Flakes>,
    options: SimOptions,
}

impl FcmSim {
    pub(super) fn new(token_uri: String, flakes: Arc<Flakes>, options: SimOptions) -> FcmSim {
        FcmSim {
            key: DecodingKey::from_rsa_pem(DEV_FCM_PUBLIC_KEY.as_bytes())
                .expect("the compiled-in FCM public key is RSA PEM"),
            token_uri,
            issued: Mutex::new(HashMap::new()),
            flakes,
            options,
        }
    }

    fn token(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let form: HashMap<String, String> = form_urlencoded(body);
        if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
            return oauth_error("unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = form.get("assertion") else {
            return oauth_error("invalid_request", "Missing required parameter: assertion");
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[self.token_uri.as_str()]);
        validation.set_issuer(&[DEV_CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = match jsonwebtoken::decode::<Value>(assertion, &self.key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return oauth_error("invalid_grant", &format!("Invalid JWT: {e}")),
        };
        let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
        if !(1..=3600).contains(&lifetime) {
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
        }
        if !claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == FCM_SCOPE)
        {
            return oauth_error(
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            );
        }
        let access_token = format!("ya29.sim-{:032x}", rand::random::<u128>());
        self.issued.lock().expect("sim lock").insert(
            access_token.clone(),
            Instant::now() + Duration::from_secs(ACCESS_TOKEN_SECS),
        );
        json_response(
            StatusCode::OK,
            &json!({"access_token": access_token, "expires_in": ACCESS_TOKEN_SECS, "token_type": "Bearer"}),
        )
    }

    fn send(&self, parts: &Parts, body: &[u8]) -> Response<Full<Bytes>> {
        let message: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = &message["message"];
        let token = message["token"].as_str().unwrap_or("");
        let kind = message["data"]["type"].as_str().unwrap_or("?");
        let call_sid = message["data"]["call_sid"].as_str().unwrap_or("?");
        let (status, code, text) = self.judge(parts, message, token, kind, call_sid);
        let reason = match (status, code) {
            (StatusCode::OK, _) => "",
            (_, Some(code)) => code,
            (_, None) => google_status(status),
        };
        log_push("FCM", token, kind, call_sid, status.as_u16(), reason);
        self.options.observe("FCM", call_sid, status.as_u16());
        if status == StatusCode::OK {
            let id = rand::random::<u64>();
            return json_response(
                status,
                &json!({"name": format!("projects/{DEV_PROJECT_ID}/messages/0:{id}")}),
            );
        }
        let mut error = json!({
            "code": status.as_u16(),
            "message": text,
            "status": google_status(status),
        });
        if let Some(code) = code {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }]);
        }
        json_response(status, &json!({"error": error}))
    }

    /// FCM's checks in FCM's order — authentication, project, message — then the token's
    /// behaviour: the status, FCM's `errorCode` and the message.
    fn judge(
        &self,
        parts: &Parts,
        message: &Value,
        token: &str,
        kind: &str,
        call_sid: &str,
    ) -> (StatusCode, Option<&'static str>, &'static str) {
        let bearer = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let live = bearer.is_some_and(|b| {
            self.issued
                .lock()
                .expect("sim lock")
                .get(b)
                .is_some_and(|until| *until > Instant::now())
        });
        if !live {
            return (
                StatusCode::UNAUTHORIZED,
                None,
                "Request had invalid authentication credentials.",
            );
        }
        if parts.uri.path() != format!("/v1/projects/{DEV_PROJECT_ID}/messages:send") {
            return (
                StatusCode::FORBIDDEN,
                None,
                "Permission 'cloudmessaging.messages.create' denied on resource.",
            );
        }
        if token.is_empty() || !message["data"].is_object() {
            return (
                StatusCode::BAD_REQUEST,
                Some("INVALID_ARGUMENT"),
                "Recipient of the message is not set.",
            );
        }
        if message["data"]
            .as_object()
            .is_some_and(|d| d.values().any(|v| !v.is_string()))
        {
            return (
                StatusCode::BAD_REQUEST,
                Some("INVALID_ARGUMENT"),
                "Invalid value at 'message.data' (TYPE_STRING)",
            );
        }
        match self.flakes.answer(token, kind, call_sid) {
            Behaviour::Accept => (StatusCode::OK, None, ""),
            Behaviour::Gone => (
                StatusCode::NOT_FOUND,
                Some("UNREGISTERED"),
                "Requested entity was not found.",
            ),
            Behaviour::Reject => (
                StatusCode::FORBIDDEN,
                None,
                "The caller does not have permission",
            ),
            Behaviour::Flaky => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("UNAVAILABLE"),
                "The service is currently unavailable.",
            ),
        }
    }
}

fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

fn form_urlencoded(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

#[async_trait::async_trait]
impl Handler for FcmSim {
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
        if parts.method != Method::POST {
            return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({}));
        }
        match parts.uri.path() {
            "/token" => self.token(&body),
            path if path.ends_with("/messages:send") => self.send(&parts, &body),
            _ => json_response(StatusCode::NOT_FOUND, &json!({})),
        }
    }
}
