//! The FCM HTTP v1 message for one push (SPEC §6).
//!
//! Everything goes in `data` (not `notification`) so the app's messaging service runs even in
//! the background and can show its own incoming-call UI. FCM rejects the data keys `from`,
//! `message_type`, `google…` and `gcm…`, hence `caller`/`callee` — and a Twilio notification
//! with such a field cannot be sent unchanged, so it is refused here ([`Unsendable`]); FCM
//! counts data keys and values together against a 4096-byte limit, checked here too so an
//! oversized push is rejected without a request.

use serde_json::{json, Map, Value};

use crate::config::PayloadFormat;
use crate::domain::Push;

/// FCM's limit on the data payload: keys and values together, in bytes.
pub const MAX_DATA_BYTES: usize = 4096;

/// Why a push cannot be built: FCM would refuse it, so it is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsendable {
    /// The data payload is larger than FCM accepts: keys and values together, in bytes.
    TooBig(usize),
    /// A Twilio notification field whose name FCM forbids as a data key ([`is_reserved`]):
    /// dropping it would change the notification, renaming it would too.
    ReservedKey(String),
}

/// Whether FCM refuses `key` as a data key ("Invalid data payload key"): `from`,
/// `message_type`, and anything starting with `google` or `gcm`.
pub fn is_reserved(key: &str) -> bool {
    key == "from" || key == "message_type" || key.starts_with("google") || key.starts_with("gcm")
}

/// The `messages:send` request body for `push` in `format`, with `ttl` counted from `now_ms`
/// to the deadline.
pub fn message(push: &Push, format: PayloadFormat, now_ms: u64) -> Result<Vec<u8>, Unsendable> {
    let data = match format {
        PayloadFormat::Callpush => callpush_data(push),
        // The Twilio Voice SDK's `Voice.handleMessage` reads data keys that are exactly the
        // notification's fields, every one of them unchanged.
        PayloadFormat::Twilio => {
            let fields = push.call.twilio_fields();
            if let Some((key, _)) = fields.iter().find(|(k, _)| is_reserved(k)) {
                return Err(Unsendable::ReservedKey(key.clone()));
            }
            fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect()
        }
    };
    envelope(push, data, now_ms)
}

fn callpush_data(push: &Push) -> Map<String, Value> {
    let call = &push.call;
    let mut data = Map::new();
    data.insert("type".into(), call.kind.as_str().into());
    data.insert("call_sid".into(), call.call_sid.as_ref().into());
    if let Some(caller) = &call.caller {
        data.insert("caller".into(), caller.as_ref().into());
    }
    data.insert("callee".into(), call.callee.as_ref().into());
    if let Some(params) = &call.params {
        // FCM data values are strings only: the params object travels as its JSON text.
        data.insert("params".into(), params.as_ref().into());
    }
    data
}

fn envelope(push: &Push, data: Map<String, Value>, now_ms: u64) -> Result<Vec<u8>, Unsendable> {
    let call = &push.call;
    let bytes: usize = data
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if bytes > MAX_DATA_BYTES {
        return Err(Unsendable::TooBig(bytes));
    }
    // `fid` replaces `token` for a device registered by its Firebase Installation ID: the
    // message names exactly one target.
    let mut message = Map::new();
    message.insert(
        push.target.as_str().into(),
        push.device_token.as_ref().into(),
    );
    message.insert("data".into(), Value::Object(data));
    message.insert(
        "android".into(),
        json!({"priority": "HIGH", "ttl": ttl(call.deadline_ms, now_ms)}),
    );
    let body = json!({ "message": Value::Object(message) });
    Ok(serde_json::to_vec(&body).expect("a JSON value always serialises"))
}

/// Whole seconds left until the deadline, as FCM's duration string; at least `1s`, since `0s`
/// would mean "deliver now or never" and the dispatcher never sends past the deadline anyway.
fn ttl(deadline_ms: u64, now_ms: u64) -> String {
    let secs = deadline_ms.saturating_sub(now_ms) / 1000;
    format!("{}s", secs.max(1))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{CallContent, PushKind};

    fn push(caller: Option<&str>, params: Option<&str>, deadline_ms: u64) -> Push {
        let call = Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA123".into(),
            caller: caller.map(Into::into),
            callee: "alice".into(),
            params: params.map(Into::into),
            deadline_ms,
            twilio: Vec::new(),
        });
        Push::new(call, "tok:abc")
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn full_message_matches_the_spec() {
        let body = parse(
            &message(
                &push(Some("+15551234567"), Some(r#"{"k":"v"}"#), 31_500),
                PayloadFormat::Callpush,
                1_000,
            )
            .unwrap(),
        );
        assert_eq!(
            body,
            json!({"message": {
                "token": "tok:abc",
                "data": {"type": "incoming", "call_sid": "CA123", "caller": "+15551234567",
                         "callee": "alice", "params": "{\"k\":\"v\"}"},
                "android": {"priority": "HIGH", "ttl": "30s"},
            }})
        );
    }

    #[test]
    fn an_fid_is_sent_as_fid_in_place_of_token() {
        let mut p = push(None, None, 31_000);
        p.target = crate::domain::Target::Fid;
        p.device_token = "cF3kq9zYRv2XhB8mN1pQ4w".into();
        let body = parse(&message(&p, PayloadFormat::Callpush, 1_000).unwrap());
        let message = body["message"].as_object().unwrap();
        assert_eq!(message["fid"], "cF3kq9zYRv2XhB8mN1pQ4w");
        assert!(!message.contains_key("token"), "{body}");
    }

    #[test]
    fn absent_caller_and_params_are_omitted() {
        let body = parse(&message(&push(None, None, 10_000), PayloadFormat::Callpush, 0).unwrap());
        let data = body["message"]["data"].as_object().unwrap();
        assert!(!data.contains_key("caller"));
        assert!(!data.contains_key("params"));
    }

    #[test]
    fn ttl_is_at_least_one_second() {
        let body =
            parse(&message(&push(None, None, 1_000), PayloadFormat::Callpush, 5_000).unwrap());
        assert_eq!(body["message"]["android"]["ttl"], "1s");
    }

    #[test]
    fn twilio_data_keys_are_exactly_the_notifications_fields() {
        let mut p = push(Some("client:alice"), Some(r#"{"k":"v"}"#), 31_000);
        let twi = vec![
            ("twi_account_sid".to_string(), "AC1".to_string()),
            ("twi_call_sid".to_string(), "CA123".to_string()),
            (
                "twi_message_type".to_string(),
                "twilio.voice.call".to_string(),
            ),
            ("brand_new".to_string(), "x".to_string()),
        ];
        Arc::get_mut(&mut p.call).unwrap().twilio = twi.clone();
        let body = parse(&message(&p, PayloadFormat::Twilio, 1_000).unwrap());
        let data = body["message"]["data"].as_object().unwrap();
        let got: Vec<(String, String)> = data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let mut want = twi;
        want.sort();
        assert_eq!(got, want);
        assert_eq!(
            body["message"]["android"],
            json!({"priority": "HIGH", "ttl": "30s"})
        );
    }

    #[test]
    fn a_reserved_data_key_is_refused_by_name() {
        for key in ["from", "message_type", "google.c.a", "gcm.n.e", "googlefoo"] {
            let mut p = push(None, None, 31_000);
            Arc::get_mut(&mut p.call).unwrap().twilio = vec![
                ("twi_call_sid".to_string(), "CA123".to_string()),
                (key.to_string(), "x".to_string()),
            ];
            assert_eq!(
                message(&p, PayloadFormat::Twilio, 1_000),
                Err(Unsendable::ReservedKey(key.to_string()))
            );
        }
        for key in ["From", "twi_from", "message", "fromage", "my_google"] {
            assert!(!is_reserved(key), "{key}");
        }
    }

    #[test]
    fn data_over_the_limit_is_refused() {
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(4096));
        let err = message(&push(None, Some(&big), 10_000), PayloadFormat::Callpush, 0).unwrap_err();
        assert!(matches!(err, Unsendable::TooBig(bytes) if bytes > MAX_DATA_BYTES));
    }
}
