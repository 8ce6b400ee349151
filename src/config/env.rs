//! `CALLPUSH_` environment overrides, applied to the parsed TOML tree before it is typed.
//!
//! `CALLPUSH_REDIS__URL=redis://r:6379` sets `redis.url`; a numeric level indexes an array
//! (`CALLPUSH_CREDENTIALS__0__ENDPOINT`). Values that read as TOML integers, floats or booleans
//! take that type; anything else is a string. Variables of the CLI and the secrets
//! (`CALLPUSH_ADMIN_TOKEN`, `CALLPUSH_TWILIO_AUTH_TOKEN`, `CALLPUSH_TWILIO_SHARED_KEY`,
//! `CALLPUSH_REDIS_PASSWORD`, `CALLPUSH_CONFIG`, `CALLPUSH_LOG…`) are not configuration keys and
//! are skipped.

use toml::Value;

use super::ConfigError;

const PREFIX: &str = "CALLPUSH_";
/// Variables with the prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &[
    "CALLPUSH_ADMIN_TOKEN",
    "CALLPUSH_TWILIO_AUTH_TOKEN",
    "CALLPUSH_TWILIO_SHARED_KEY",
    "CALLPUSH_CONFIG",
    "CALLPUSH_LOG",
    "CALLPUSH_LOG_FORMAT",
    "CALLPUSH_REDIS_PASSWORD",
];

/// Apply every `CALLPUSH_…` variable of `vars` to `root`.
pub(super) fn apply(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && !NOT_KEYS.contains(&k.as_str()))
        .collect();
    // Sorted, so array elements are created in index order whatever the environment's order.
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Env {
                var: name,
                reason: "empty key level (use `__` between levels)".into(),
            });
        }
        set(root, &path, scalar(&raw)).map_err(|reason| ConfigError::Env {
            var: name.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn scalar(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return Value::Boolean(b);
    }
    if raw.contains('.') && !raw.contains(|c: char| c.is_ascii_alphabetic()) {
        if let Ok(f) = raw.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(raw.to_string())
}

fn set(node: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("path is never empty");
    if let Ok(index) = head.parse::<usize>() {
        let Value::Array(items) = node else {
            return Err(format!("`{head}` indexes a key that is not an array"));
        };
        if index > items.len() {
            return Err(format!(
                "array index {index} skips elements (the array has {})",
                items.len()
            ));
        }
        if index == items.len() {
            items.push(Value::Table(Default::default()));
        }
        return if rest.is_empty() {
            items[index] = value;
            Ok(())
        } else {
            set(&mut items[index], rest, value)
        };
    }
    let Value::Table(table) = node else {
        return Err(format!("`{head}` is below a key that is not a table"));
    };
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let next_is_index = rest[0].parse::<usize>().is_ok();
    let child = table.entry(head.clone()).or_insert_with(|| {
        if next_is_index {
            Value::Array(Vec::new())
        } else {
            Value::Table(Default::default())
        }
    });
    set(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(toml_text: &str, vars: &[(&str, &str)]) -> Result<Value, ConfigError> {
        let mut v: Value = toml::from_str(toml_text).unwrap();
        apply(
            &mut v,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Ok(v)
    }

    #[test]
    fn nested_keys_and_types() {
        let v = applied(
            "[redis]\nurl = \"redis://a\"\n",
            &[
                ("CALLPUSH_REDIS__URL", "redis://b:1"),
                ("CALLPUSH_WORKERS__MAX_IN_FLIGHT", "12"),
                ("CALLPUSH_RESULTS__ENABLED", "false"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(v["redis"]["url"].as_str(), Some("redis://b:1"));
        assert_eq!(v["workers"]["max_in_flight"].as_integer(), Some(12));
        assert_eq!(v["results"]["enabled"].as_bool(), Some(false));
    }

    #[test]
    fn array_elements_by_index() {
        let v = applied(
            "[[credentials]]\nsid = \"CR1\"\nplatform = \"fcm\"\n",
            &[("CALLPUSH_CREDENTIALS__0__BASE_URL", "http://127.0.0.1:1")],
        )
        .unwrap();
        assert_eq!(
            v["credentials"][0]["base_url"].as_str(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(v["credentials"][0]["sid"].as_str(), Some("CR1"));
    }

    #[test]
    fn skipping_an_index_is_an_error_naming_the_variable() {
        let err = applied("", &[("CALLPUSH_CREDENTIALS__3__SID", "CR1")]).unwrap_err();
        assert!(
            err.to_string().contains("CALLPUSH_CREDENTIALS__3__SID"),
            "{err}"
        );
    }
}
