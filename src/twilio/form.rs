//! The webhook's body: `application/x-www-form-urlencoded` decoded strictly (bad UTF-8 or a
//! repeated field is an error naming the field, never a silent replacement character), then
//! checked into a [`WebhookCall`].

use percent_encoding::percent_decode;

use crate::event::{check_identity, MAX_CALL_SID_BYTES, MAX_FROM_BYTES};

/// Fields every call notification must carry.
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

/// Why a webhook body is not a call notification. Every message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A name or value is not valid percent-encoded UTF-8.
    #[error("field `{0}` is not valid percent-encoded UTF-8")]
    Encoding(String),
    /// A value holds control characters (a line break smuggled into a log line or a header).
    #[error("field `{0}` must not contain control characters")]
    Control(String),
    /// A field that is not one of Twilio's `twi_*` fields.
    #[error("unknown field `{0}` (only twi_* fields are accepted)")]
    Unknown(String),
    /// The same field twice.
    #[error("field `{0}` appears more than once")]
    Repeated(String),
    /// A required field is absent or empty.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field's value is unusable.
    #[error("field `{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

fn decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Decode a form body into its fields, in order.
pub fn parse(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let text = std::str::from_utf8(body).map_err(|_| FormError::Encoding("(body)".into()))?;
    let mut fields = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).ok_or_else(|| FormError::Encoding(raw_name.into()))?;
        let value = decode(raw_value).ok_or_else(|| FormError::Encoding(name.clone()))?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// A checked call notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    /// Every `twi_*` field as Twilio sent it, sorted by name.
    pub fields: Vec<(String, String)>,
    /// The callee: `twi_to` without `client:`.
    pub callee: String,
}

impl WebhookCall {
    /// The value of `name` (present for every [`REQUIRED`] field).
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Check decoded fields: only `twi_*`, none twice, none with control characters, the
    /// required ones present, `twi_to` an identity (with or without `client:`).
    pub fn from_fields(mut fields: Vec<(String, String)>) -> Result<WebhookCall, FormError> {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (name, value)) in fields.iter().enumerate() {
            if !name.starts_with("twi_") || name.len() == 4 || name.chars().any(char::is_control) {
                return Err(FormError::Unknown(name.clone()));
            }
            if i > 0 && fields[i - 1].0 == *name {
                return Err(FormError::Repeated(name.clone()));
            }
            if value.chars().any(char::is_control) {
                return Err(FormError::Control(name.clone()));
            }
        }
        let call = WebhookCall {
            fields,
            callee: String::new(),
        };
        for name in REQUIRED {
            if call.field(name).is_empty() {
                return Err(FormError::Missing(name));
            }
        }
        let to = call.field("twi_to");
        let callee = to.strip_prefix("client:").unwrap_or(to).to_string();
        check_identity(&callee).map_err(|p| FormError::Invalid {
            field: "twi_to",
            problem: format!("is not `client:<identity>`: the identity {p}"),
        })?;
        for (field, max) in [
            ("twi_call_sid", MAX_CALL_SID_BYTES),
            ("twi_from", MAX_FROM_BYTES),
            ("twi_message_id", MAX_MESSAGE_ID_BYTES),
        ] {
            if call.field(field).len() > max {
                return Err(FormError::Invalid {
                    field,
                    problem: format!("is longer than {max} bytes"),
                });
            }
        }
        Ok(WebhookCall { callee, ..call })
    }

    /// The calls-stream fields (SPEC §10): `type=incoming`, `to`, `call_sid`, `from`, `ttl_ms`,
    /// then every `twi_*` field unchanged.
    pub fn stream_fields(&self, ttl_ms: u64) -> Vec<(String, String)> {
        let mut out = vec![
            ("type".to_string(), "incoming".to_string()),
            ("to".to_string(), self.callee.clone()),
            (
                "call_sid".to_string(),
                self.field("twi_call_sid").to_string(),
            ),
            ("from".to_string(), self.field("twi_from").to_string()),
            ("ttl_ms".to_string(), ttl_ms.to_string()),
        ];
        out.extend(self.fields.iter().cloned());
        out
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

    #[test]
    fn parse_decodes_plus_and_percent() {
        let f = parse(b"twi_from=%2B1555+123&twi_params=a%3Db%26c%3Dd&x").unwrap();
        assert_eq!(f[0], ("twi_from".into(), "+1555 123".into()));
        assert_eq!(f[1], ("twi_params".into(), "a=b&c=d".into()));
        assert_eq!(f[2], ("x".into(), "".into()));
        assert_eq!(
            parse(b"twi_to=%FF"),
            Err(FormError::Encoding("twi_to".into()))
        );
    }

    #[test]
    fn a_good_call_and_its_stream_fields() {
        let call = WebhookCall::from_fields(good()).unwrap();
        assert_eq!(call.callee, "bob");
        let s = call.stream_fields(30_000);
        assert_eq!(s[0], ("type".into(), "incoming".into()));
        assert_eq!(s[1], ("to".into(), "bob".into()));
        assert_eq!(s[4], ("ttl_ms".into(), "30000".into()));
        assert_eq!(s.len(), 5 + 7);
        assert!(s[5..].iter().all(|(k, _)| k.starts_with("twi_")));
    }

    #[test]
    fn errors_name_the_field() {
        let mut missing = good();
        missing.retain(|(k, _)| k != "twi_call_sid");
        let e = WebhookCall::from_fields(missing).unwrap_err();
        assert_eq!(e, FormError::Missing("twi_call_sid"));
        assert!(e.to_string().contains("twi_call_sid"));

        let mut unknown = good();
        unknown.push(("Caller".into(), "x".into()));
        assert_eq!(
            WebhookCall::from_fields(unknown).unwrap_err(),
            FormError::Unknown("Caller".into())
        );

        let mut twice = good();
        twice.push(("twi_to".into(), "client:eve".into()));
        assert_eq!(
            WebhookCall::from_fields(twice).unwrap_err(),
            FormError::Repeated("twi_to".into())
        );

        let mut bad_to = good();
        bad_to.retain(|(k, _)| k != "twi_to");
        bad_to.push(("twi_to".into(), "x".repeat(200)));
        let e = WebhookCall::from_fields(bad_to).unwrap_err();
        assert!(
            matches!(
                e,
                FormError::Invalid {
                    field: "twi_to",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_bare_identity_is_accepted_as_twi_to() {
        let mut bare = good();
        bare.retain(|(k, _)| k != "twi_to");
        bare.push(("twi_to".into(), "bob".into()));
        assert_eq!(WebhookCall::from_fields(bare).unwrap().callee, "bob");
    }
}
