//! JSON parsing that refuses duplicate object keys, at any depth.
//!
//! `serde_json` keeps the last of two equal keys without a word. Where two parsers may read the
//! same text — an access token minted by the customer's backend and verified here, `params`
//! passed through to the app, a request body a proxy may have inspected — "which one wins" is an
//! ambiguity an attacker can use (`{"sub": "AC-mine", "sub": "AC-yours"}`), so callpush refuses
//! the text instead of picking one. Imports nothing of callpush's.

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
}
