//! `oauth2.googleapis.com/token`: the JWT-bearer grant, checked like Google does (the RS256
//! signature, `iss`, `aud`, lifetime, scope), traded for an access token it then accepts.

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http::StatusCode;
use http_body_util::Full;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Issued, State};
use crate::server::json;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const SHORT_LIVED: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

pub(super) async fn token(state: &State, parts: &Parts, body: &Bytes) -> Response<Full<Bytes>> {
    state.count_token_request();
    tokio::time::sleep(state.token_delay).await;
    let scripted = state.token_script.lock().expect("sim lock").pop_front();
    if let Some(answer) = scripted {
        tokio::time::sleep(answer.delay).await;
        let body = answer.body.clone().unwrap_or(Value::Null);
        return json(status_code(answer.status), &body, answer.retry_after);
    }
    if parts.method != http::Method::POST {
        return oauth_error(405, "invalid_request", "Method not allowed.");
    }
    let form = parse_form(body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => return oauth_error(400, "unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    if let Err(description) = check_assertion(state, assertion) {
        return oauth_error(400, "invalid_grant", &description);
    }
    let access_token = format!(
        "ya29.double-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let expires_in = state.expires_in();
    let now = Instant::now();
    state.issued.lock().expect("sim lock").insert(
        access_token.clone(),
        Issued {
            at: now,
            expires: now + Duration::from_secs(expires_in),
        },
    );
    let answer =
        json!({"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"});
    json(StatusCode::OK, &answer, None)
}

/// Google's checks on the assertion; the error is its `error_description`.
fn check_assertion(state: &State, assertion: &str) -> Result<(), String> {
    let token_uri = state.token_uri();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&[state.client_email.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &state.key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                "Invalid JWT Signature.".to_string()
            }
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => SHORT_LIVED.to_string(),
            ErrorKind::InvalidAudience => format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                token_uri
            ),
            ErrorKind::InvalidIssuer => "Invalid grant: account not found".to_string(),
            _ => format!("Invalid JWT: {e}"),
        })?
        .claims;
    let iat = claims["iat"].as_i64().unwrap_or(0);
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp - iat > 3600 || exp <= iat {
        return Err(SHORT_LIVED.to_string());
    }
    let scope = claims["scope"].as_str().unwrap_or("");
    if !scope
        .split(' ')
        .any(|s| s == "https://www.googleapis.com/auth/firebase.messaging")
    {
        return Err("Invalid OAuth scope or ID token audience provided.".to_string());
    }
    Ok(())
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response<Full<Bytes>> {
    json(
        status_code(status),
        &json!({"error": error, "error_description": description}),
        None,
    )
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
