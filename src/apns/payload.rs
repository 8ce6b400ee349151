//! What a VoIP push carries: its JSON body and its collapse id.
//!
//! The body is `{"aps":{},"callpush":{"type","call_sid","caller","callee","params"}}`; the app's
//! PushKit handler reads `callpush` to report the call to CallKit. It is written straight into
//! one buffer (strings escaped by serde_json), and `params` — already validated by the event
//! parser as a compact JSON object — is copied in as it is, not parsed again per device.
//! A `payload = "twilio"` credential sends [`twilio_body`] instead.

use sha2::{Digest, Sha256};

use crate::domain::CallContent;

/// Apple's limit for a VoIP push payload, in bytes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;

/// Apple's limit for `apns-collapse-id`, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;

/// The JSON body of the push for `call`.
pub fn body(call: &CallContent) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        96 + call.call_sid.len()
            + call.callee.len()
            + call.caller.as_deref().map_or(0, str::len)
            + call.params.as_deref().map_or(0, str::len),
    );
    out.extend_from_slice(br#"{"aps":{},"callpush":{"type":"#);
    string(&mut out, call.kind.as_str());
    out.extend_from_slice(br#","call_sid":"#);
    string(&mut out, &call.call_sid);
    if let Some(caller) = &call.caller {
        out.extend_from_slice(br#","caller":"#);
        string(&mut out, caller);
    }
    out.extend_from_slice(br#","callee":"#);
    string(&mut out, &call.callee);
    if let Some(params) = &call.params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params.as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

/// A Twilio notification field named `aps`: it would collide with APNs' own key, so the push
/// cannot carry the notification unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApsCollision;

/// The JSON body in the Twilio Voice SDK's format (SPEC §10, `payload = "twilio"`): `"aps"`
/// and every field of the notification at the top level, unchanged and in the order Twilio
/// sent them, as `TwilioVoiceSDK.handleNotification` reads it.
pub fn twilio_body(call: &CallContent) -> Result<Vec<u8>, ApsCollision> {
    let fields = call.twilio_fields();
    if fields.iter().any(|(name, _)| name == "aps") {
        return Err(ApsCollision);
    }
    let mut out = Vec::with_capacity(
        16 + fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.extend_from_slice(br#"{"aps":{}"#);
    if !fields.is_empty() {
        out.push(b',');
    }
    crate::strict_json::write_members(&mut out, &fields);
    out.push(b'}');
    Ok(out)
}

fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

/// The `apns-collapse-id` for a call: its sid, or, when that is longer than Apple allows, the
/// hex SHA-256 of it (exactly 64 hex digits), so every push of one call still collapses.
pub fn collapse_id(call_sid: &str) -> String {
    if call_sid.len() <= MAX_COLLAPSE_ID {
        call_sid.to_string()
    } else {
        hex::encode(Sha256::digest(call_sid.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PushKind;
    use serde_json::json;

    fn call(caller: Option<&str>, params: Option<&str>) -> CallContent {
        CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA123".into(),
            caller: caller.map(Into::into),
            callee: "alice \"the\" caller\n".into(),
            params: params.map(Into::into),
            deadline_ms: 0,
            twilio: Vec::new(),
        }
    }

    #[test]
    fn body_has_every_field_escaped() {
        let b = body(&call(Some("+15551234567"), Some(r#"{"a":"1","b":"x\"y"}"#)));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            json!({"aps": {}, "callpush": {"type": "incoming", "call_sid": "CA123",
                "caller": "+15551234567", "callee": "alice \"the\" caller\n",
                "params": {"a": "1", "b": "x\"y"}}})
        );
    }

    #[test]
    fn body_omits_absent_caller_and_params() {
        let mut c = call(None, None);
        c.kind = PushKind::Cancel;
        let v: serde_json::Value = serde_json::from_slice(&body(&c)).unwrap();
        assert_eq!(
            v,
            json!({"aps": {}, "callpush": {"type": "cancel", "call_sid": "CA123",
                "callee": "alice \"the\" caller\n"}})
        );
    }

    #[test]
    fn twilio_body_has_every_field_at_the_top_level() {
        let mut c = call(Some("client:alice"), None);
        c.twilio = vec![
            ("twi_message_type".into(), "twilio.voice.call".into()),
            ("twi_call_sid".into(), "CA123".into()),
            ("twi_params".into(), "a=\"b\"&c=d".into()),
            ("from".into(), "never heard of".into()),
        ];
        let body = twilio_body(&c).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"aps": {}, "twi_message_type": "twilio.voice.call", "twi_call_sid": "CA123",
                "twi_params": "a=\"b\"&c=d", "from": "never heard of"})
        );
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.find("twi_message_type") < text.find("twi_call_sid"),
            "{text}"
        );
        c.twilio.push(("aps".into(), "x".into()));
        assert_eq!(twilio_body(&c), Err(ApsCollision));
    }

    #[test]
    fn twilio_body_without_twi_fields_gets_the_minimal_set() {
        let mut c = call(Some("+15551234567"), None);
        c.callee = "bob".into();
        let v: serde_json::Value = serde_json::from_slice(&twilio_body(&c).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"aps": {}, "twi_message_type": "twilio.voice.call", "twi_call_sid": "CA123",
                "twi_from": "+15551234567", "twi_to": "client:bob"})
        );
    }

    #[test]
    fn collapse_id_is_hashed_only_past_64_bytes() {
        let sid64 = "C".repeat(64);
        assert_eq!(collapse_id(&sid64), sid64);
        let long = "C".repeat(65);
        let id = collapse_id(&long);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, hex::encode(Sha256::digest(long.as_bytes())));
    }
}
