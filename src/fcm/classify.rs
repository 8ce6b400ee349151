//! The one place that reads FCM's answers and turns them into [`Outcome`]s (SPEC §6).
//!
//! FCM's error body is Google's standard `{"error": {"code", "message", "status", "details"}}`.
//! The FCM-specific code (`UNREGISTERED`, `SENDER_ID_MISMATCH`, `QUOTA_EXCEEDED`, …) sits in the
//! `details` entry typed `google.firebase.fcm.v1.FcmError`; without one, the canonical `status`
//! (`INVALID_ARGUMENT`, `PERMISSION_DENIED`, …) is the code. Token pruning is irreversible, so a
//! token is judged dead only on answers that name it: a 404 `NOT_FOUND` without `UNREGISTERED`
//! (a wrong project id) is a rejected push, not a dead device. A device registered by its
//! Firebase Installation ID is named `message.fid` where a token is `message.token`.
//!
//! A `429` is about one device unless Google's details say the project is over its quota:
//! then the whole credential pauses ([`Outcome::OverQuota`]) instead of every push retrying on
//! its own. FCM's `QUOTA_EXCEEDED` covers three limits — the project's messages per minute, one
//! device's message rate, one topic's — and "an extension of type `google.rpc.QuotaFailure` is
//! returned to specify which quota was exceeded" (FCM's `ErrorCode` reference). The project's
//! is recognised by either:
//! - an `ErrorInfo` detail with reason `RATE_LIMIT_EXCEEDED`: Google's service infrastructure
//!   counting the consumer project's "Send requests per minute" (metadata `quota_limit`
//!   `SendsPerMinutePerProject`, `quota_unit` `1/min/{project}`; firebase-admin-go#719 shows
//!   FCM's answer, which carries no `FcmError` detail at all), or
//! - a `QuotaFailure` violation whose `subject` is a project (`project:<id>`, the subject form
//!   `google.rpc.QuotaFailure` documents).
//!
//! The pause is the answer's `Retry-After`, else its `RetryInfo` delay, else a minute (Google:
//! retry a project over quota "with a minimum initial delay of 1 minute"), and never more than
//! a minute: the quota is per minute and refills within one.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

use crate::providers::answer::{label, retry_after, Verdict};
use crate::providers::{Failure, Outcome};
use crate::transport::Response;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
const QUOTA_FAILURE_TYPE: &str = "type.googleapis.com/google.rpc.QuotaFailure";
const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// The longest a project quota pauses the credential: FCM's quota is per minute.
pub(crate) const MAX_QUOTA_PAUSE: Duration = Duration::from_secs(60);
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
    /// `ErrorInfo.reason`.
    #[serde(default)]
    reason: Option<String>,
    /// `QuotaFailure.violations`.
    #[serde(default)]
    violations: Vec<QuotaViolation>,
    /// `RetryInfo.retryDelay`, a protobuf duration (`"42s"`).
    #[serde(rename = "retryDelay", default)]
    retry_delay: Option<String>,
}

#[derive(Deserialize)]
struct QuotaViolation {
    #[serde(default)]
    subject: String,
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
        (StatusCode::TOO_MANY_REQUESTS, _, _) if project_over_quota(&error) => {
            let pause = retry_after(&response.headers)
                .or_else(|| retry_delay(&error))
                .unwrap_or(MAX_QUOTA_PAUSE)
                .min(MAX_QUOTA_PAUSE);
            verdict(Outcome::OverQuota { failure, pause })
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

/// Whether a 400 `INVALID_ARGUMENT` blames the device's address (the registration token or the
/// installation id) rather than the message.
fn names_token(error: &GoogleError) -> bool {
    let field_blamed = error
        .details
        .iter()
        .filter(|d| d.kind == BAD_REQUEST_TYPE)
        .flat_map(|d| &d.field_violations)
        .any(|v| v.field == "message.token" || v.field == "message.fid");
    let message = error.message.to_ascii_lowercase();
    field_blamed
        || (message.contains("registration token")
            && (message.contains("not a valid") || message.contains("invalid")))
}

/// Whether a 429 says the project is over its quota, not one device (see the module docs).
fn project_over_quota(error: &GoogleError) -> bool {
    error.details.iter().any(|d| {
        (d.kind == ERROR_INFO_TYPE && d.reason.as_deref() == Some("RATE_LIMIT_EXCEEDED"))
            || (d.kind == QUOTA_FAILURE_TYPE
                && d.violations
                    .iter()
                    .any(|v| v.subject.starts_with("project:")))
    })
}

/// `RetryInfo.retryDelay` (`"42s"`, `"1.5s"`), when Google sent one.
fn retry_delay(error: &GoogleError) -> Option<Duration> {
    let delay = error
        .details
        .iter()
        .filter(|d| d.kind == RETRY_INFO_TYPE)
        .find_map(|d| d.retry_delay.as_deref())?;
    let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
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
