//! JSON parsing that refuses duplicate object keys, at any depth.
//!
//! `serde_json` keeps the last of two equal keys without a word. Where two parsers may read the
//! same text — an access token minted by the customer's backend and verified here, `params`
//! passed through to the app, a request body a proxy may have inspected — "which one wins" is an
//! ambiguity an attacker can use (`{"sub": "AC-mine", "sub": "AC-yours"}`), so callpush refuses
//! the text instead of picking one. [`string_object`] reads the flat objects of string values
//! that travel through callpush unchanged (Twilio's call notifications), in the order written.
//! Imports nothing of callpush's.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A [`Value`] whose objects had no key twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Strict(Value::Object(object)))
    }
}

/// Parse `bytes` as one JSON value, refusing an object with a key twice (and anything
/// `serde_json` refuses: bad syntax, trailing characters, nesting deeper than 128).
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|Strict(v)| v)
}

/// Why a text is not a flat JSON object of string values ([`string_object`]).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not JSON at all (bad syntax, trailing characters, too deep).
    #[error("is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// JSON, but an array, a string, a number, `true`/`false` or `null`.
    #[error("is not a JSON object")]
    NotObject,
    /// A key twice.
    #[error("has the key {0:?} twice")]
    Repeated(String),
    /// A value that is not a string.
    #[error("has a non-string value for the key {0:?}")]
    NotString(String),
}

/// The members of a JSON object, in the order written (values of any type, keys maybe twice).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            members.push((key, map.next_value::<Value>()?));
        }
        Ok(Members(members))
    }
}

/// Parse `bytes` as one JSON object whose values are all strings, keeping its members in the
/// order written; a key twice, a value of another type, or another kind of text is refused with
/// the key it concerns.
pub fn string_object(bytes: &[u8]) -> Result<Vec<(String, String)>, ObjectError> {
    let Members(members) = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        // Well-formed so far, but not an object where one was expected.
        serde_json::error::Category::Data => ObjectError::NotObject,
        _ => ObjectError::Syntax(e),
    })?;
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    let mut out = Vec::with_capacity(members.len());
    for (key, value) in members {
        if !seen.insert(key.clone()) {
            return Err(ObjectError::Repeated(key));
        }
        match value {
            Value::String(s) => out.push((key, s)),
            _ => return Err(ObjectError::NotString(key)),
        }
    }
    Ok(out)
}

/// Write `fields` as the members of a JSON object (`"name":"value",…`, no braces), in order:
/// what [`string_object`] reads back.
pub fn write_members(out: &mut Vec<u8>, fields: &[(String, String)]) {
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name).expect("writing a string to a Vec cannot fail");
        out.push(b':');
        serde_json::to_writer(&mut *out, value).expect("writing a string to a Vec cannot fail");
    }
}

/// The JSON text of an object of string values, members in the given order: the inverse of
/// [`string_object`].
pub fn object_text(fields: &[(String, String)]) -> String {
    let mut out = Vec::with_capacity(
        2 + fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push(b'{');
    write_members(&mut out, fields);
    out.push(b'}');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"a": 1, "a": 1}"#,
            r#"{"x": {"b": "1", "b": "2"}}"#,
            r#"[{"c": null, "c": null}]"#,
        ] {
            let err = from_slice(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("appears twice"), "{text}: {err}");
        }
    }

    #[test]
    fn anything_else_parses_as_serde_json_does() {
        for text in [
            r#"{"a": [1, -2, 3.5, "x", true, null], "b": {"a": 1}}"#,
            "[]",
            "\"s\"",
            "0",
        ] {
            let strict = from_slice(text.as_bytes()).unwrap();
            let loose: Value = serde_json::from_str(text).unwrap();
            assert_eq!(strict, loose, "{text}");
        }
        assert!(from_slice(b"{\"a\": 1} x").is_err());
        assert!(from_slice("[".repeat(200).as_bytes()).is_err());
    }

    #[test]
    fn string_objects_keep_their_order_and_name_what_is_wrong() {
        let fields = string_object(br#"{"z": "1", "a": "", "m": "x\"y"}"#).unwrap();
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(fields[2].1, "x\"y");
        assert!(matches!(string_object(b"{"), Err(ObjectError::Syntax(_))));
        assert!(matches!(
            string_object(b"{} x"),
            Err(ObjectError::Syntax(_))
        ));
        for text in ["[]", "\"s\"", "1", "null", "true", r#"[{"a": "b"}]"#] {
            let err = string_object(text.as_bytes()).unwrap_err();
            assert!(matches!(err, ObjectError::NotObject), "{text}: {err}");
        }
        assert!(
            matches!(string_object(br#"{"a": "1", "a": "1"}"#), Err(ObjectError::Repeated(k)) if k == "a")
        );
        let fields = vec![
            ("b".to_string(), "\"\n\u{1}é".to_string()),
            ("a".to_string(), String::new()),
        ];
        assert_eq!(
            string_object(object_text(&fields).as_bytes()).unwrap(),
            fields
        );
        assert_eq!(object_text(&[]), "{}");
        for text in [
            r#"{"n": 1}"#,
            r#"{"n": null}"#,
            r#"{"n": {"x": "y"}}"#,
            r#"{"n": ["x"]}"#,
        ] {
            let err = string_object(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ObjectError::NotString(k) if k == "n"),
                "{text}: {err}"
            );
        }
    }
}
