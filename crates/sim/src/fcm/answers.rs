//! How the FCM simulator answers: Google's statuses and `google.rpc.Status` bodies, with an
//! `FcmError` detail carrying FCM's `errorCode` where FCM sends one.

use std::time::Duration;

use serde_json::{json, Value};

const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
const QUOTA_FAILURE: &str = "type.googleapis.com/google.rpc.QuotaFailure";

/// How the simulator answers one push.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body; `None` on a 200 means FCM's `{"name": "projects/<p>/messages/<id>"}`.
    pub body: Option<Value>,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// How long to wait before answering, on top of the simulator's latency.
    pub delay: Duration,
}

impl Answer {
    /// 200 with a message name.
    pub fn ok() -> Answer {
        Answer {
            status: 200,
            body: None,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// Google's error body; `error_code` goes in an FcmError detail when given.
    pub fn error(
        status: u16,
        google_status: &str,
        error_code: Option<&str>,
        message: &str,
    ) -> Answer {
        let mut error = json!({"code": status, "message": message, "status": google_status});
        if let Some(code) = error_code {
            error["details"] = json!([{"@type": FCM_ERROR, "errorCode": code}]);
        }
        Answer {
            status,
            body: Some(json!({ "error": error })),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// 404 UNREGISTERED: the app was uninstalled or the token expired.
    pub fn unregistered() -> Answer {
        Answer::error(
            404,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        )
    }

    /// 400 INVALID_ARGUMENT about the registration token.
    pub fn invalid_token() -> Answer {
        Answer::error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        )
    }

    /// 400 INVALID_ARGUMENT about something else in the message.
    pub fn invalid_argument(message: &str) -> Answer {
        Answer::error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), message)
    }

    /// 403 SENDER_ID_MISMATCH: the token belongs to another Firebase project.
    pub fn sender_id_mismatch() -> Answer {
        Answer::error(
            403,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        )
    }

    /// 429 QUOTA_EXCEEDED.
    pub fn quota_exceeded() -> Answer {
        Answer::error(
            429,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded for quota metric 'Send requests'.",
        )
    }

    /// 429 for a project over its "Send requests per minute", as FCM sends it: no FcmError
    /// detail, Google's service infrastructure's `ErrorInfo` (firebase-admin-go#719 quotes one),
    /// and a `QuotaFailure` naming the project.
    pub fn project_quota_exceeded(project_id: &str) -> Answer {
        let message = format!("Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service 'fcm.googleapis.com' for consumer 'project:{project_id}'.");
        let body = json!({"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": ERROR_INFO, "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
             "metadata": {"quota_metric": "fcm.googleapis.com/send_requests",
                          "quota_limit": "SendsPerMinutePerProject",
                          "quota_unit": "1/min/{project}", "service": "fcm.googleapis.com",
                          "consumer": format!("projects/{project_id}")}},
            {"@type": QUOTA_FAILURE, "violations": [
                {"subject": format!("project:{project_id}"), "description": "Send requests per minute"}
            ]}
        ]}});
        Answer {
            status: 429,
            body: Some(body),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// 500 INTERNAL.
    pub fn internal() -> Answer {
        Answer::error(
            500,
            "INTERNAL",
            Some("INTERNAL"),
            "Internal error encountered.",
        )
    }

    /// 503 UNAVAILABLE.
    pub fn unavailable() -> Answer {
        Answer::error(
            503,
            "UNAVAILABLE",
            Some("UNAVAILABLE"),
            "The service is currently unavailable.",
        )
    }

    /// With a `Retry-After` of `secs`.
    pub fn retry_after(mut self, secs: u64) -> Answer {
        self.retry_after = Some(secs);
        self
    }

    /// Answered after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    /// 400 INVALID_ARGUMENT about one field, with a `BadRequest` field violation.
    pub fn bad_field(field: &str, message: &str) -> Answer {
        let body = json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT", "details": [
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}
        ]}});
        Answer {
            status: 400,
            body: Some(body),
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// What the log line shows: FCM's `errorCode`, else Google's status (empty for 200).
    pub(super) fn reason(&self) -> &str {
        let Some(error) = self.body.as_ref().map(|b| &b["error"]) else {
            return "";
        };
        error["details"]
            .as_array()
            .and_then(|d| d.iter().find_map(|d| d["errorCode"].as_str()))
            .or_else(|| error["status"].as_str())
            .unwrap_or("")
    }
}
