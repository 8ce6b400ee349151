//! A call notification: the decoded fields checked into a [`WebhookCall`], and what the
//! webhook makes of it — the calls-stream entry, its ttl and its idempotency keys.
//!
//! Every field travels to the device as it came (SPEC §10: Twilio adds fields without notice
//! and asks for the body "without modification"), so only the fields callpush itself reads are
//! checked: the [`REQUIRED`] ones, `twi_to` as an identity, and `twi_answer_timeout` when it
//! makes sense. Any other field, whatever its name, is carried and never judged.

use crate::event::{check_identity, MAX_CALL_SID_BYTES, MAX_FROM_BYTES, MAX_TTL_MS};
use crate::strict_json;

/// Fields every call notification must carry, non-empty.
pub const REQUIRED: [&str; 6] = [
    "twi_account_sid",
    "twi_call_sid",
    "twi_from",
    "twi_message_id",
    "twi_message_type",
    "twi_to",
];

/// Longest `twi_message_id` accepted, in bytes (it becomes part of a Redis key).
pub const MAX_MESSAGE_ID_BYTES: usize = 256;

/// The longest ring `twi_answer_timeout` may ask for, in seconds: 600, the most Twilio lets a
/// `<Dial>` ring (its `timeout` attribute), and far below the event ttl's own maximum.
pub const MAX_ANSWER_TIMEOUT_SECS: u64 = 600;

/// The calls-stream field that carries the whole notification (a JSON object of its fields, in
/// the order received), read back by [`crate::event`].
pub const STREAM_FIELD: &str = "twilio";

/// Why decoded fields are not a call notification. Every message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// A field name that no push can carry.
    #[error("field name {0:?} must be non-empty and without control characters")]
    Name(String),
    /// The same field twice.
    #[error("field `{0}` appears more than once")]
    Repeated(String),
    /// A required field is absent or empty.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field callpush reads holds control characters (a line break smuggled into a log line
    /// or a Redis key).
    #[error("field `{0}` must not contain control characters")]
    Control(&'static str),
    /// A field's value is unusable.
    #[error("field `{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A checked call notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    /// Every field as Twilio sent it, in the order received.
    pub fields: Vec<(String, String)>,
    /// The callee: `twi_to` without `client:`.
    pub callee: String,
}

impl WebhookCall {
    /// The value of `name`, or `""` when absent (never for a [`REQUIRED`] field).
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Check decoded fields: names non-empty without control characters, none twice, the
    /// required ones present without control characters, `twi_to` an identity (with or without
    /// `client:`), the ids within their lengths.
    pub fn from_fields(fields: Vec<(String, String)>) -> Result<WebhookCall, NotificationError> {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        for (name, _) in &fields {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(NotificationError::Name(name.clone()));
            }
            if !seen.insert(name.as_str()) {
                return Err(NotificationError::Repeated(name.clone()));
            }
        }
        let call = WebhookCall {
            fields,
            callee: String::new(),
        };
        for name in REQUIRED {
            let value = call.field(name);
            if value.is_empty() {
                return Err(NotificationError::Missing(name));
            }
            if value.chars().any(char::is_control) {
                return Err(NotificationError::Control(name));
            }
        }
        let to = call.field("twi_to");
        let callee = to.strip_prefix("client:").unwrap_or(to).to_string();
        check_identity(&callee).map_err(|p| NotificationError::Invalid {
            field: "twi_to",
            problem: format!("is not `client:<identity>`: the identity {p}"),
        })?;
        for (field, max) in [
            ("twi_call_sid", MAX_CALL_SID_BYTES),
            ("twi_from", MAX_FROM_BYTES),
            ("twi_message_id", MAX_MESSAGE_ID_BYTES),
        ] {
            if call.field(field).len() > max {
                return Err(NotificationError::Invalid {
                    field,
                    problem: format!("is longer than {max} bytes"),
                });
            }
        }
        Ok(WebhookCall { callee, ..call })
    }

    /// How long Twilio rings the client, from `twi_answer_timeout` (whole seconds), in ms:
    /// `None` when absent or not a positive whole number, at most [`MAX_ANSWER_TIMEOUT_SECS`].
    /// A value that makes no sense falls back to the configured ring ttl rather than refusing
    /// the call: the field is Twilio's to change.
    pub fn answer_timeout_ms(&self) -> Option<u64> {
        let raw = self.field("twi_answer_timeout");
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs = raw
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(MAX_ANSWER_TIMEOUT_SECS);
        (secs > 0).then_some(secs * 1000)
    }

    /// The event's `ttl_ms`: Twilio's answer timeout when it gives a sane one, else
    /// `ring_ttl_ms` (`twilio.ring_ttl_ms`).
    pub fn ttl_ms(&self, ring_ttl_ms: u64) -> u64 {
        self.answer_timeout_ms()
            .unwrap_or(ring_ttl_ms)
            .min(MAX_TTL_MS)
    }

    /// The calls-stream fields (SPEC §10): `type=incoming`, `to`, `call_sid`, `from`, `ttl_ms`,
    /// and the whole notification in [`STREAM_FIELD`], so any field name travels and none
    /// collides with a stream field.
    pub fn stream_fields(&self, ttl_ms: u64) -> Vec<(String, String)> {
        [
            ("type", "incoming".to_string()),
            ("to", self.callee.clone()),
            ("call_sid", self.field("twi_call_sid").to_string()),
            ("from", self.field("twi_from").to_string()),
            ("ttl_ms", ttl_ms.to_string()),
            (STREAM_FIELD, strict_json::object_text(&self.fields)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The idempotency keys of this notification (SPEC §10): `twilio:<twi_message_id>`, and
    /// `twilio-token:<token>` for Twilio's `I-Twilio-Idempotency-Token` header when it came.
    pub fn once_keys(&self, idempotency_token: Option<&str>) -> Vec<String> {
        let mut keys = vec![format!("twilio:{}", self.field("twi_message_id"))];
        if let Some(token) = idempotency_token {
            keys.push(format!("twilio-token:{token}"));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<(String, String)> {
        [
            ("twi_account_sid", "AC1"),
            ("twi_call_sid", "CA1"),
            ("twi_from", "client:alice"),
            ("twi_message_id", "RM1"),
            ("twi_message_type", "twilio.voice.call"),
            ("twi_to", "client:bob"),
            ("twi_bridge_token", "jwt"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(name: &str, value: &str) -> Vec<(String, String)> {
        let mut f: Vec<_> = good().into_iter().filter(|(k, _)| k != name).collect();
        f.push((name.to_string(), value.to_string()));
        f
    }

    #[test]
    fn a_good_call_and_its_stream_fields() {
        let mut fields = good();
        fields.push(("Caller".into(), "x\ny".into()));
        let call = WebhookCall::from_fields(fields.clone()).unwrap();
        assert_eq!(call.callee, "bob");
        assert_eq!(call.fields, fields, "every field kept, in order");
        let s = call.stream_fields(30_000);
        let names: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["type", "to", "call_sid", "from", "ttl_ms", "twilio"]
        );
        assert_eq!(s[1].1, "bob");
        assert_eq!(s[4].1, "30000");
        assert_eq!(
            strict_json::string_object(s[5].1.as_bytes()).unwrap(),
            fields
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut missing = good();
        missing.retain(|(k, _)| k != "twi_call_sid");
        let e = WebhookCall::from_fields(missing).unwrap_err();
        assert_eq!(e, NotificationError::Missing("twi_call_sid"));
        assert!(e.to_string().contains("twi_call_sid"));

        let mut twice = good();
        twice.push(("twi_to".into(), "client:eve".into()));
        assert_eq!(
            WebhookCall::from_fields(twice).unwrap_err(),
            NotificationError::Repeated("twi_to".into())
        );
        assert_eq!(
            WebhookCall::from_fields(with("twi_call_sid", "CA\r\n")).unwrap_err(),
            NotificationError::Control("twi_call_sid")
        );
        assert_eq!(
            WebhookCall::from_fields(with("", "x")).unwrap_err(),
            NotificationError::Name(String::new())
        );
        let e = WebhookCall::from_fields(with("twi_to", &"x".repeat(200))).unwrap_err();
        assert!(
            matches!(
                e,
                NotificationError::Invalid {
                    field: "twi_to",
                    ..
                }
            ),
            "{e}"
        );
        let e = WebhookCall::from_fields(with("twi_message_id", &"m".repeat(257))).unwrap_err();
        assert!(e.to_string().contains("twi_message_id"), "{e}");
    }

    #[test]
    fn a_bare_identity_is_accepted_as_twi_to() {
        let call = WebhookCall::from_fields(with("twi_to", "bob")).unwrap();
        assert_eq!(call.callee, "bob");
    }

    #[test]
    fn the_answer_timeout_sets_the_ttl_when_it_makes_sense() {
        let ttl = |raw: &str| {
            WebhookCall::from_fields(with("twi_answer_timeout", raw))
                .unwrap()
                .ttl_ms(30_000)
        };
        assert_eq!(ttl("12"), 12_000);
        assert_eq!(ttl("600"), 600_000);
        assert_eq!(ttl("601"), 600_000);
        assert_eq!(ttl("99999999999999999999999"), 600_000);
        for nonsense in ["0", "", "-5", "12.5", " 12", "+12", "twelve"] {
            assert_eq!(ttl(nonsense), 30_000, "{nonsense:?}");
        }
        assert_eq!(
            WebhookCall::from_fields(good()).unwrap().ttl_ms(45_000),
            45_000
        );
    }

    #[test]
    fn once_keys_are_the_message_id_and_the_idempotency_token() {
        let call = WebhookCall::from_fields(good()).unwrap();
        assert_eq!(call.once_keys(None), ["twilio:RM1"]);
        assert_eq!(
            call.once_keys(Some("tok-1")),
            ["twilio:RM1", "twilio-token:tok-1"]
        );
    }
}
