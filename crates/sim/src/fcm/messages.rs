//! `fcm.googleapis.com/v1/projects/{p}/messages:send`: FCM's checks in FCM's order
//! (authentication, project, message: recipient — one `token` or one `fid` —, data values and
//! keys, the 4096-byte data limit, Android priority and TTL), then the project's quota, then
//! the answer for the device.

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::{Answer, State};
use crate::base::Pushed;
use crate::record::{bearer, Recorded};
use crate::server::json;
use crate::Behaviour;

const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

pub(super) async fn send(state: &State, parts: &Parts, body: &Bytes) -> Response<Full<Bytes>> {
    state.core.recorder.arrive();
    let received_at = Instant::now();
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = &parsed["message"];
    let token = message["token"]
        .as_str()
        .or_else(|| message["fid"].as_str())
        .unwrap_or_default();
    let answer = judge(state, parts, &parsed, token);
    let (kind, call_sid) = about(&parsed);
    let pushed = Pushed {
        token,
        kind,
        call_sid,
        status: answer.status,
        reason: answer.reason(),
    };
    state.core.answered("FCM", pushed);
    state.core.hold(answer.delay).await;
    let path = parts.uri.path();
    state.core.record(Recorded::new(
        token.to_string(),
        path,
        &parts.headers,
        body.clone(),
        received_at,
        answer.status,
    ));
    let body = answer.body.unwrap_or_else(|| {
        let id = state.core.next_id();
        json!({"name": format!("projects/{}/messages/0:{id}", state.project_id)})
    });
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &body, answer.retry_after)
}

/// FCM's checks in FCM's order: authentication, project, message; then the script, the
/// unregistered set, the default answer and the token prefix's behaviour.
fn judge(state: &State, parts: &Parts, body: &Value, token: &str) -> Answer {
    let authorized = bearer(&parts.headers).is_some_and(|b| state.authorized(b));
    if !authorized {
        return Answer::error(401, "UNAUTHENTICATED", None, UNAUTHENTICATED);
    }
    let project = parts
        .uri
        .path()
        .trim_start_matches("/v1/projects/")
        .trim_end_matches("/messages:send");
    if project != state.project_id {
        let message = format!("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).");
        return Answer::error(403, "PERMISSION_DENIED", None, &message);
    }
    if let Err(answer) = check_message(body) {
        return answer;
    }
    // A dry run (`callpush check`): checked like a push, delivered to nobody. FCM answers it
    // with a made-up message name.
    if body["validate_only"] == Value::Bool(true) {
        let name = format!("projects/{}/messages/fake_message_id", state.project_id);
        return Answer {
            body: Some(json!({ "name": name })),
            ..Answer::ok()
        };
    }
    if let Some(answer) = state.over_quota() {
        return answer;
    }
    if let Some(answer) = state.core.script.next(token) {
        return answer;
    }
    let (kind, call_sid) = about(body);
    match state.core.flakes.answer(token, kind, call_sid) {
        Behaviour::Accept => Answer::ok(),
        Behaviour::Gone => Answer::unregistered(),
        Behaviour::Reject => Answer::error(
            403,
            "PERMISSION_DENIED",
            None,
            "The caller does not have permission",
        ),
        Behaviour::Flaky => Answer::unavailable(),
    }
}

/// The push type and call of a callpush message, for the log line (`?` when absent).
fn about(body: &Value) -> (&str, &str) {
    let of = |key: &str| body["message"]["data"][key].as_str().unwrap_or("?");
    (of("type"), of("call_sid"))
}

fn check_message(body: &Value) -> Result<(), Answer> {
    let message = body
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| {
            Answer::bad_field(
                "message",
                "Invalid JSON payload received. Unknown name or missing \"message\".",
            )
        })?;
    match (message.get("token"), message.get("fid")) {
        (Some(_), Some(_)) => {
            return Err(Answer::bad_field(
                "message.fid",
                "Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set 'fid'",
            ))
        }
        (None, Some(fid)) => {
            // 22 characters of URL-safe base64, as the Firebase SDKs make them.
            let fid = fid.as_str().unwrap_or_default();
            if fid.len() != 22
                || !fid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            {
                return Err(Answer::bad_field(
                    "message.fid",
                    "The installation ID is not a valid Firebase Installation ID",
                ));
            }
        }
        _ => {
            let token = message["token"].as_str().unwrap_or_default();
            if token.is_empty() {
                return Err(Answer::bad_field(
                    "message",
                    "Recipient of the message is not set.",
                ));
            }
            if token.len() > 4096
                || !token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))
            {
                return Err(Answer::invalid_token());
            }
        }
    }
    if let Some(data) = message.get("data") {
        let data = data
            .as_object()
            .ok_or_else(|| Answer::bad_field("message.data", "Invalid value at 'message.data'"))?;
        let mut bytes = 0;
        for (i, (key, value)) in data.iter().enumerate() {
            let Some(value) = value.as_str() else {
                let field = format!("message.data[{i}].value");
                return Err(Answer::bad_field(
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
                return Err(Answer::bad_field("message.android.priority", &text));
            }
        }
        if let Some(ttl) = android.get("ttl") {
            if !ttl.as_str().is_some_and(valid_duration) {
                let text = format!("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}");
                return Err(Answer::bad_field("message.android.ttl", &text));
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
