//! The one place that reads FCM's answers and turns them into [`Outcome`]s (SPEC §6).
//!
//! FCM's error body is Google's standard `{"error": {"code", "message", "status", "details"}}`.
//! The FCM-specific code (`UNREGISTERED`, `SENDER_ID_MISMATCH`, `QUOTA_EXCEEDED`, …) sits in the
//! `details` entry typed `google.firebase.fcm.v1.FcmError`; without one, the canonical `status`
//! (`INVALID_ARGUMENT`, `PERMISSION_DENIED`, …) is the code. Token pruning is irreversible, so a
//! token is judged dead only on answers that name it: a 404 `NOT_FOUND` without `UNREGISTERED`
//! (a wrong project id) is a rejected push, not a dead device.

use http::StatusCode;
use serde::Deserialize;

use crate::providers::answer::{label, retry_after, Verdict};
use crate::providers::{Failure, Outcome};
use crate::transport::Response;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
/// How much of Google's error message goes into a dead letter's detail.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: GoogleError,
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    #[serde(rename = "fieldViolations", default)]
    field_violations: Vec<FieldViolation>,
}

#[derive(Deserialize)]
struct FieldViolation {
    #[serde(default)]
    field: String,
}

/// Classify FCM's answer to a push sent at `sent_at_ms` (ms since the epoch). A verdict's
/// `renew_auth` means FCM refused the access token (401): the cached token must be dropped.
pub(crate) fn classify(response: &Response, sent_at_ms: u64) -> Verdict {
    let status = response.status;
    let verdict = Verdict::of;
    if status.is_success() {
        return verdict(Outcome::Delivered);
    }
    // A proxy's HTML page or an empty body still gets classified, by status alone.
    let error = serde_json::from_slice::<ErrorBody>(&response.body)
        .unwrap_or_default()
        .error;
    let fcm_code = error
        .details
        .iter()
        .find(|d| d.kind == FCM_ERROR_TYPE)
        .and_then(|d| d.error_code.clone());
    let code = fcm_code.clone().or_else(|| error.status.clone());
    let failure = failure(status, code.as_deref(), &error.message);
    let invalid_token = || Outcome::InvalidToken {
        failure: failure.clone(),
        judged_at_ms: sent_at_ms,
    };
    match (status, fcm_code.as_deref(), code.as_deref()) {
        // Google refused the credentials of the app's APNs or web-push setup, not our token:
        // a fresh access token would not help.
        (StatusCode::UNAUTHORIZED, Some("THIRD_PARTY_AUTH_ERROR"), _) => {
            verdict(Outcome::Rejected(failure))
        }
        (StatusCode::UNAUTHORIZED, _, _) => Verdict::renew_and_retry(failure),
        (_, Some("UNREGISTERED" | "SENDER_ID_MISMATCH"), _) => verdict(invalid_token()),
        (StatusCode::BAD_REQUEST, _, Some("INVALID_ARGUMENT")) if names_token(&error) => {
            verdict(invalid_token())
        }
        (s, _, _) if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            verdict(Outcome::Retry {
                failure,
                retry_after: retry_after(&response.headers),
            })
        }
        _ => verdict(Outcome::Rejected(failure)),
    }
}

/// Whether a 400 `INVALID_ARGUMENT` blames the registration token rather than the message.
fn names_token(error: &GoogleError) -> bool {
    let field_blamed = error
        .details
        .iter()
        .filter(|d| d.kind == BAD_REQUEST_TYPE)
        .flat_map(|d| &d.field_violations)
        .any(|v| v.field == "message.token");
    let message = error.message.to_ascii_lowercase();
    field_blamed
        || (message.contains("registration token")
            && (message.contains("not a valid") || message.contains("invalid")))
}

fn failure(status: StatusCode, code: Option<&str>, message: &str) -> Failure {
    let reason = label(code, status);
    let mut detail = format!("FCM {} {reason}", status.as_u16());
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if !message.is_empty() {
        detail.push_str(": ");
        detail.push_str(&message);
    }
    Failure::new(reason, detail)
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
