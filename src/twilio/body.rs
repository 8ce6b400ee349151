//! The webhook's body, decoded into the notification's fields in the order received: a JSON
//! object of string values (how Twilio sends it, SPEC §10) or an
//! `application/x-www-form-urlencoded` form with the same fields. Decoding is strict — bad
//! UTF-8, bad JSON, a value that is not a string is an error naming the field, never a silent
//! replacement — and only decodes: which fields a call notification needs is [`super::call`]'s.

use percent_encoding::percent_decode;

use crate::strict_json::{self, ObjectError};

/// Why a body does not decode. Every message names the field, or says the body is not one.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A form name or value is not valid percent-encoded UTF-8.
    #[error("field `{0}` is not valid percent-encoded UTF-8")]
    Encoding(String),
    /// A JSON body that is not one object of string values.
    #[error("the JSON body {0}")]
    Json(#[source] ObjectError),
}

fn decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Decode a form body into its fields, in order (a field given twice stays twice).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::Encoding("(body)".into()))?;
    let mut fields = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).ok_or_else(|| BodyError::Encoding(raw_name.into()))?;
        let value = decode(raw_value).ok_or_else(|| BodyError::Encoding(name.clone()))?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// Decode a JSON body: one object whose values are all strings, no key twice; its members in
/// the order written.
pub fn parse_json(body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    strict_json::string_object(body).map_err(BodyError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        let f = parse_form(b"twi_from=%2B1555+123&twi_params=a%3Db%26c%3Dd&x").unwrap();
        assert_eq!(f[0], ("twi_from".into(), "+1555 123".into()));
        assert_eq!(f[1], ("twi_params".into(), "a=b&c=d".into()));
        assert_eq!(f[2], ("x".into(), "".into()));
        let err = parse_form(b"twi_to=%FF").unwrap_err();
        assert!(
            matches!(&err, BodyError::Encoding(f) if f == "twi_to"),
            "{err}"
        );
    }

    #[test]
    fn json_bodies_keep_their_order_and_errors_name_the_key() {
        let f = parse_json(br#"{"twi_to": "client:bob", "new_field": "x", "aps": "y"}"#).unwrap();
        let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["twi_to", "new_field", "aps"]);
        let err = parse_json(br#"{"twi_answer_timeout": 30}"#).unwrap_err();
        assert!(err.to_string().contains("twi_answer_timeout"), "{err}");
        let err = parse_json(br#"["twi_to"]"#).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        let err = parse_json(br#"{"twi_to": "a", "twi_to": "b"}"#).unwrap_err();
        assert!(err.to_string().contains("twi_to"), "{err}");
        let err = parse_json(b"{\"twi_to\": ").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }
}
