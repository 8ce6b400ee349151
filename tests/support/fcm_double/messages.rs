//! The double's `fcm.googleapis.com/v1/projects/{p}/messages:send`, and its scripted answers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{json_response, Recorded, State};

const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// How the double answers one push.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body; `None` on a 200 means FCM's `{"name": "projects/<p>/messages/<id>"}`.
    pub body: Option<Value>,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// How long to wait before answering.
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
}

pub(super) async fn send(state: &State, parts: &Parts, body: &Bytes) -> Response<Full<Bytes>> {
    state.arrivals.fetch_add(1, Ordering::SeqCst);
    let received_at = std::time::Instant::now();
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let token = parsed["message"]["token"].as_str().map(str::to_string);
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let answer = judge(state, parts, &parsed, token.as_deref(), bearer.as_deref());
    tokio::time::sleep(answer.delay).await;
    state.requests.lock().unwrap().push(Recorded::new(
        token.unwrap_or_default(),
        &parts.headers,
        body.clone(),
        received_at,
        answer.status,
    ));
    state.pushed.notify_waiters();
    let body = answer.body.unwrap_or_else(|| {
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        json!({"name": format!("projects/{}/messages/0:{id}", state.opts.project_id)})
    });
    json_response(answer.status, &body, answer.retry_after)
}

/// FCM's checks in FCM's order: authentication, project, message; then the script.
fn judge(
    state: &State,
    parts: &Parts,
    body: &Value,
    token: Option<&str>,
    bearer: Option<&str>,
) -> Answer {
    let authorized = bearer.is_some_and(|b| {
        state
            .issued
            .lock()
            .unwrap()
            .get(b)
            .is_some_and(|issued| issued.expires > Instant::now())
    });
    if !authorized {
        return Answer::error(401, "UNAUTHENTICATED", None, UNAUTHENTICATED);
    }
    let project = parts
        .uri
        .path()
        .trim_start_matches("/v1/projects/")
        .trim_end_matches("/messages:send");
    if project != state.opts.project_id {
        let message = format!("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).");
        return Answer::error(403, "PERMISSION_DENIED", None, &message);
    }
    if let Err(answer) = check_message(body) {
        return answer;
    }
    let token = token.unwrap_or_default();
    if let Some(answer) = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(token)
        .and_then(|q| q.pop_front())
    {
        return answer;
    }
    if state.unregistered.lock().unwrap().contains(token) {
        return Answer::unregistered();
    }
    state
        .default
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(Answer::ok)
}

fn check_message(body: &Value) -> Result<(), Answer> {
    let message = body
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| {
            bad_field(
                "message",
                "Invalid JSON payload received. Unknown name or missing \"message\".",
            )
        })?;
    let token = message["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        return Err(bad_field("message", "Recipient of the message is not set."));
    }
    if token.len() > 4096
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))
    {
        return Err(Answer::invalid_token());
    }
    if let Some(data) = message.get("data") {
        let data = data
            .as_object()
            .ok_or_else(|| bad_field("message.data", "Invalid value at 'message.data'"))?;
        let mut bytes = 0;
        for (i, (key, value)) in data.iter().enumerate() {
            let Some(value) = value.as_str() else {
                let field = format!("message.data[{i}].value");
                return Err(bad_field(
                    &field,
                    &format!("Invalid value at '{field}' (TYPE_STRING), {value}"),
                ));
            };
            let lower = key.to_ascii_lowercase();
            if key == "from"
                || key == "message_type"
                || lower.starts_with("google")
                || lower.starts_with("gcm")
            {
                return Err(Answer::invalid_argument(&format!(
                    "Invalid data payload key: {key}"
                )));
            }
            bytes += key.len() + value.len();
        }
        if bytes > 4096 {
            return Err(Answer::invalid_argument("Message is too big"));
        }
    }
    if let Some(android) = message.get("android") {
        if let Some(priority) = android.get("priority") {
            if !matches!(
                priority.as_str(),
                Some("HIGH" | "NORMAL" | "high" | "normal")
            ) {
                let text = format!("Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority}");
                return Err(bad_field("message.android.priority", &text));
            }
        }
        if let Some(ttl) = android.get("ttl") {
            if !ttl.as_str().is_some_and(valid_duration) {
                let text = format!("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}");
                return Err(bad_field("message.android.ttl", &text));
            }
        }
    }
    Ok(())
}

/// `^\d+(\.\d{1,9})?s$`, protobuf's JSON form of a Duration.
fn valid_duration(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    digits(whole) && digits(frac) && frac.len() <= 9
}

fn bad_field(field: &str, message: &str) -> Answer {
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
