//! Every row of SPEC §6 for FCM, with bodies as Google sends them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;

const SENT_AT: u64 = 1_700_000_000_000;

fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Verdict {
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after {
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = Response {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body.to_string()),
    };
    classify(&response, SENT_AT)
}

fn fcm_error(code: u16, status: &str, error_code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message, "status": status, "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]}})
    .to_string()
}

fn invalid_token(verdict: Verdict) -> Failure {
    match verdict.outcome {
        Outcome::InvalidToken {
            failure,
            judged_at_ms,
        } => {
            assert_eq!(judged_at_ms, SENT_AT, "judged when the push was sent");
            failure
        }
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

fn rejected(verdict: Verdict) -> Failure {
    match verdict.outcome {
        Outcome::Rejected(failure) => failure,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn retry(verdict: Verdict) -> (Failure, Option<Duration>) {
    match verdict.outcome {
        Outcome::Retry {
            failure,
            retry_after,
        } => (failure, retry_after),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[test]
fn ok_is_delivered() {
    let v = answer(
        200,
        r#"{"name":"projects/demo/messages/0:1500415314455276%31bd1c9"}"#,
        None,
    );
    assert_eq!(v.outcome, Outcome::Delivered);
    assert!(!v.renew_auth);
}

#[test]
fn unregistered_prunes_the_token() {
    let body = fcm_error(
        404,
        "NOT_FOUND",
        "UNREGISTERED",
        "Requested entity was not found.",
    );
    let f = invalid_token(answer(404, &body, None));
    assert_eq!(f.reason, "UNREGISTERED");
    assert_eq!(
        f.detail,
        "FCM 404 UNREGISTERED: Requested entity was not found."
    );
}

#[test]
fn not_found_without_unregistered_is_not_a_dead_token() {
    // What a wrong project id gets: nothing about the device.
    let body = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#;
    assert_eq!(rejected(answer(404, body, None)).reason, "NOT_FOUND");
}

#[test]
fn invalid_argument_naming_the_token_prunes_it() {
    let body = fcm_error(
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    );
    assert_eq!(
        invalid_token(answer(400, &body, None)).reason,
        "INVALID_ARGUMENT"
    );

    let body = r#"{"error":{"code":400,"message":"Invalid value at 'message.token' (TYPE_STRING)","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
    invalid_token(answer(400, body, None));
}

#[test]
fn other_invalid_argument_is_rejected_with_the_message() {
    let body = fcm_error(
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "Invalid data payload key: from",
    );
    let f = rejected(answer(400, &body, None));
    assert_eq!(f.reason, "INVALID_ARGUMENT");
    assert_eq!(
        f.detail,
        "FCM 400 INVALID_ARGUMENT: Invalid data payload key: from"
    );

    let body = r#"{"error":{"code":400,"message":"Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), \"abc\"","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.android.ttl","description":"Invalid value"}]}]}}"#;
    rejected(answer(400, body, None));
}

#[test]
fn sender_id_mismatch_prunes_the_token() {
    let body = fcm_error(
        403,
        "PERMISSION_DENIED",
        "SENDER_ID_MISMATCH",
        "SenderId mismatch",
    );
    assert_eq!(
        invalid_token(answer(403, &body, None)).reason,
        "SENDER_ID_MISMATCH"
    );
}

#[test]
fn permission_denied_is_rejected() {
    let body = r#"{"error":{"code":403,"message":"Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/demo' (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"cloudresourcemanager.googleapis.com"}]}}"#;
    assert_eq!(
        rejected(answer(403, body, None)).reason,
        "PERMISSION_DENIED"
    );
}

#[test]
fn unauthenticated_drops_the_token_and_retries_at_once() {
    let body = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.","status":"UNAUTHENTICATED"}}"#;
    let v = answer(401, body, None);
    assert!(v.renew_auth);
    let (f, after) = retry(v);
    assert_eq!(f.reason, "UNAUTHENTICATED");
    assert_eq!(after, Some(Duration::ZERO));
}

#[test]
fn third_party_auth_error_is_rejected() {
    let body = fcm_error(
        401,
        "UNAUTHENTICATED",
        "THIRD_PARTY_AUTH_ERROR",
        "Auth error from APNS or Web Push Service",
    );
    let v = answer(401, &body, None);
    assert!(!v.renew_auth);
    assert_eq!(rejected(v).reason, "THIRD_PARTY_AUTH_ERROR");
}

fn over_quota(verdict: Verdict) -> (Failure, Duration) {
    match verdict.outcome {
        Outcome::OverQuota { failure, pause } => (failure, pause),
        other => panic!("expected OverQuota, got {other:?}"),
    }
}

/// FCM's answer for a project over its "Send requests per minute", as firebase-admin-go#719
/// quotes it: no FcmError detail, an ErrorInfo from Google's service infrastructure.
fn project_quota_body() -> String {
    serde_json::json!({"error": {"code": 429,
        "message": "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service 'fcm.googleapis.com' for consumer 'project_number:123'.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
             "domain": "googleapis.com", "metadata": {"quota_limit": "SendsPerMinutePerProject",
             "quota_unit": "1/min/{project}", "service": "fcm.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": []}
        ]}})
    .to_string()
}

#[test]
fn a_project_over_its_quota_pauses_the_credential_for_retry_after() {
    let (f, pause) = over_quota(answer(429, &project_quota_body(), Some("2")));
    assert_eq!(f.reason, "RESOURCE_EXHAUSTED");
    assert_eq!(pause, Duration::from_secs(2));
}

#[test]
fn a_quota_failure_naming_the_project_pauses_the_credential() {
    let body = serde_json::json!({"error": {"code": 429, "message": "Sending limit exceeded",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"subject": "project:callpush-dev", "description": "Message rate exceeded"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        ]}})
    .to_string();
    let (f, pause) = over_quota(answer(429, &body, None));
    assert_eq!(f.reason, "QUOTA_EXCEEDED");
    assert_eq!(
        pause,
        Duration::from_secs(7),
        "RetryInfo without Retry-After"
    );
}

#[test]
fn a_project_pause_is_a_minute_without_a_hint_and_never_longer() {
    let (_, pause) = over_quota(answer(429, &project_quota_body(), None));
    assert_eq!(pause, Duration::from_secs(60));
    let (_, pause) = over_quota(answer(429, &project_quota_body(), Some("3600")));
    assert_eq!(pause, Duration::from_secs(60));
}

#[test]
fn a_device_or_topic_quota_stays_with_the_device() {
    let body = serde_json::json!({"error": {"code": 429, "message": "Sending limit exceeded",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"subject": "device:abc", "description": "Device message rate exceeded"}]}
        ]}})
    .to_string();
    let (f, after) = retry(answer(429, &body, Some("5")));
    assert_eq!(f.reason, "QUOTA_EXCEEDED");
    assert_eq!(after, Some(Duration::from_secs(5)));
}

#[test]
fn quota_exceeded_retries_after_the_header() {
    let body = fcm_error(
        429,
        "RESOURCE_EXHAUSTED",
        "QUOTA_EXCEEDED",
        "Quota exceeded for quota metric 'Send requests'",
    );
    let (f, after) = retry(answer(429, &body, Some("17")));
    assert_eq!(f.reason, "QUOTA_EXCEEDED");
    assert_eq!(after, Some(Duration::from_secs(17)));
}

#[test]
fn an_invalid_fid_is_a_dead_device() {
    let body = serde_json::json!({"error": {"code": 400, "message": "Invalid value at 'message.fid'",
        "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": "message.fid", "description": "Invalid installation id"}]}
        ]}})
    .to_string();
    assert_eq!(
        invalid_token(answer(400, &body, None)).reason,
        "INVALID_ARGUMENT"
    );
}

#[test]
fn server_errors_retry() {
    let body = fcm_error(500, "INTERNAL", "INTERNAL", "Internal error encountered.");
    let (f, after) = retry(answer(500, &body, None));
    assert_eq!(f.reason, "INTERNAL");
    assert_eq!(after, None);

    let body = fcm_error(
        503,
        "UNAVAILABLE",
        "UNAVAILABLE",
        "The service is currently unavailable.",
    );
    let (f, after) = retry(answer(503, &body, Some("3")));
    assert_eq!(f.reason, "UNAVAILABLE");
    assert_eq!(after, Some(Duration::from_secs(3)));

    // A load balancer's HTML page: classified by status alone.
    let (f, _) = retry(answer(502, "<html><body>Bad Gateway</body></html>", None));
    assert_eq!(f.reason, "http_502");
    assert_eq!(f.detail, "FCM 502 http_502");
}

#[test]
fn other_client_errors_are_rejected() {
    let f = rejected(answer(413, "", None));
    assert_eq!(f.reason, "http_413");
    let body = r#"{"error":{"code":409,"message":"odd","status":"ABORTED"}}"#;
    assert_eq!(rejected(answer(409, body, None)).reason, "ABORTED");
}

#[test]
fn free_text_never_becomes_a_reason() {
    let body = r#"{"error":{"code":400,"message":"x","status":"some free text"}}"#;
    assert_eq!(rejected(answer(400, body, None)).reason, "http_400");
}
