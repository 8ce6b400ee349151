//! Loading: the TOML file, then `CALLPUSH_` variables over it, then validation; and the
//! syntax-error message that names the key.

use std::path::Path;

use super::{env, ConfigError, Settings};

impl Settings {
    /// Load the file (when given), apply `CALLPUSH_` variables from the process environment, and
    /// validate.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?,
            None => String::new(),
        };
        let mut settings = Self::from_toml_with_env(&text, vars)?;
        settings.source = path.map(Path::to_path_buf);
        Ok(settings)
    }

    /// Parse TOML text, apply `CALLPUSH_` variables, and validate.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| ConfigError::Parse(parse_problem(text, &e)))?;
        env::apply(&mut value, vars)?;
        let settings: Settings =
            serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Invalid {
                key: e.path().to_string(),
                reason: e.inner().message().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }
}

/// A TOML syntax error with its line and the key on that line, so the message names the key
/// even when the parser's own does not (`number too large to fit in target type`). Only the text
/// before `=` is shown: the value may be a secret (a password in `redis.url`).
fn parse_problem(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let number = before[..start].matches('\n').count() + 1;
    let line = text[start..].lines().next().unwrap_or_default();
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => {
            format!("line {number}, key `{}`: {}", key.trim(), e.message())
        }
        _ => format!("line {number}: {}", e.message()),
    }
}
