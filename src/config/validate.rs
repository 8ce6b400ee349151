//! Checks that serde cannot express, run once at start. Every message names the key.

use std::collections::HashSet;

use super::{CredentialSettings, Settings};

/// A configuration that cannot be used, with the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The path given with `--config`.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("config file is not valid TOML: {0}")]
    Parse(String),
    /// A `CALLPUSH_` variable could not be applied.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key has a wrong type or value.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `credentials[0].bundle_id`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The shortest `stream.claim_idle_ms`. A consumer touches the entries it works on every
/// `claim_idle_ms / 3`; the touch is a Redis round trip from a runtime that may be busy with a
/// burst, so a third of a second is the least slack that keeps XAUTOCLAIM from taking entries
/// live consumers are working on (and pushing their devices a second time).
pub const MIN_CLAIM_IDLE_MS: u64 = 1_000;

/// The least `stream.claim_idle_ms` suggested for daemons under load. A burst can delay a touch
/// (the Redis round trip waits behind the server's backlog, and the daemon's runtime is busy)
/// by seconds; with less slack than this another daemon of the group reclaims entries still
/// being worked on and pushes their devices again. Shorter values are accepted (tests use them
/// to see reclaims quickly) with a warning at start-up.
pub const SUGGESTED_MIN_CLAIM_IDLE_MS: u64 = 5_000;

/// The most calls streams (`stream.shards`): every daemon reads every shard, with one
/// blocking connection each.
pub const MAX_SHARDS: u32 = 64;

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Settings {
    /// Check the values serde accepted but callpush cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://")) {
            return Err(invalid(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        if self.redis.ca_file.is_some() && !self.redis.url.starts_with("rediss://") {
            return Err(invalid(
                "redis.ca_file",
                "only verifies TLS connections: use a rediss:// URL with it",
            ));
        }
        if self.redis.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "redis.key_prefix",
                "must not contain `{` or `}` (callpush adds its own cluster hash tags)",
            ));
        }
        for (i, url) in self.redis.urls.iter().enumerate() {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    format!("redis.urls[{i}]"),
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if !self.redis.urls.is_empty() && !self.redis.cluster {
            return Err(invalid(
                "redis.urls",
                "lists cluster seed nodes: set redis.cluster = true, or use redis.url alone",
            ));
        }
        if !(1..=MAX_SHARDS).contains(&self.stream.shards) {
            return Err(invalid(
                "stream.shards",
                format!("must be between 1 and {MAX_SHARDS}"),
            ));
        }
        if self.workers.max_in_flight == 0 {
            return Err(invalid("workers.max_in_flight", "must be at least 1"));
        }
        if self.stream.batch_size == 0 {
            return Err(invalid("stream.batch_size", "must be at least 1"));
        }
        if self.stream.claim_idle_ms < MIN_CLAIM_IDLE_MS {
            return Err(invalid(
                "stream.claim_idle_ms",
                format!(
                    "{} is below the minimum of {MIN_CLAIM_IDLE_MS}: entries live consumers are \
                     working on would be reclaimed and their devices pushed twice",
                    self.stream.claim_idle_ms
                ),
            ));
        }
        if let Some(idle) = self
            .stream
            .consumer_idle_delete_ms
            .filter(|idle| *idle < self.stream.claim_idle_ms)
        {
            return Err(invalid(
                "stream.consumer_idle_delete_ms",
                format!(
                    "{idle} is below stream.claim_idle_ms ({}): a consumer is deleted only once \
                     idle for longer than its entries take to be reclaimed",
                    self.stream.claim_idle_ms
                ),
            ));
        }
        if self.stream.group.is_empty() {
            return Err(invalid("stream.group", "must not be empty"));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        if self.retry.base_ms == 0 || self.retry.max_ms < self.retry.base_ms {
            return Err(invalid(
                "retry.max_ms",
                "retry.base_ms must be at least 1 and retry.max_ms at least retry.base_ms",
            ));
        }
        if self.bindings.max_per_identity == 0 {
            return Err(invalid("bindings.max_per_identity", "must be at least 1"));
        }
        if self.bindings.feed.webhook_url.is_some() && self.bindings.feed.secret_file.is_none() {
            return Err(invalid(
                "bindings.feed.secret_file",
                "is required with bindings.feed.webhook_url: every POST is signed",
            ));
        }
        if self.bindings.ttl_days == 0 {
            return Err(invalid("bindings.ttl_days", "must be at least 1"));
        }
        if self.twilio.ring_ttl_ms == 0 || self.twilio.ring_ttl_ms > crate::event::MAX_TTL_MS {
            return Err(invalid(
                "twilio.ring_ttl_ms",
                format!("must be within 1..={}", crate::event::MAX_TTL_MS),
            ));
        }
        check_url("twilio.webhook_url", self.twilio.webhook_url.as_deref())?;
        check_listener("api.limits", &self.api.limits)?;
        check_listener("admin.limits", &self.admin.limits)?;
        match (&self.api.tls_cert_file, &self.api.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "api.tls_key_file",
                    "is needed with api.tls_cert_file",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "api.tls_cert_file",
                    "is needed with api.tls_key_file",
                ))
            }
            _ => {}
        }
        let mut sids = HashSet::new();
        for (i, cred) in self.credentials.iter().enumerate() {
            let key = |field: &str| format!("credentials[{i}].{field}");
            if cred.sid().is_empty() {
                return Err(invalid(key("sid"), "must not be empty"));
            }
            if !sids.insert(cred.sid()) {
                return Err(invalid(
                    key("sid"),
                    format!("{:?} is used by another credential", cred.sid()),
                ));
            }
            match cred {
                CredentialSettings::Apns(c) => {
                    for (field, value) in [
                        ("bundle_id", &c.bundle_id),
                        ("team_id", &c.team_id),
                        ("key_id", &c.key_id),
                    ] {
                        if value.is_empty() {
                            return Err(invalid(key(field), "must not be empty"));
                        }
                    }
                    if c.bundle_id.ends_with(".voip") {
                        return Err(invalid(
                            key("bundle_id"),
                            "give the app's bundle id without `.voip`; callpush adds it",
                        ));
                    }
                    check_url(&key("endpoint"), c.endpoint.as_deref())?;
                    check_url(&key("sandbox_endpoint"), c.sandbox_endpoint.as_deref())?;
                    if let Some(list) = &c.environments {
                        check_environments(&key("environments"), list, c.environment)?;
                    }
                    if c.connections == 0 {
                        return Err(invalid(key("connections"), "must be at least 1"));
                    }
                }
                CredentialSettings::Fcm(c) => {
                    check_url(&key("base_url"), c.base_url.as_deref())?;
                    check_url(&key("token_uri"), c.token_uri.as_deref())?;
                    if c.connections == 0 {
                        return Err(invalid(key("connections"), "must be at least 1"));
                    }
                }
            }
        }
        if self.auth.max_token_ttl_secs == 0 {
            return Err(invalid("auth.max_token_ttl_secs", "must be at least 1"));
        }
        for (i, k) in self.auth.api_keys.iter().enumerate() {
            if k.secret_file.is_none() && k.secret_env.is_none() {
                return Err(invalid(
                    format!("auth.api_keys[{i}]"),
                    "needs secret_file or secret_env",
                ));
            }
        }
        Ok(())
    }

    /// Whether `stream.claim_idle_ms` is below [`SUGGESTED_MIN_CLAIM_IDLE_MS`]: accepted, but
    /// the daemon warns at start-up.
    pub fn claim_idle_is_short(&self) -> bool {
        self.stream.claim_idle_ms < SUGGESTED_MIN_CLAIM_IDLE_MS
    }
}

/// `environments`: one or both environments, each once, holding the credential's
/// `environment` (where bindings that registered none are pushed).
fn check_environments(
    key: &str,
    list: &[crate::domain::ApnsEnvironment],
    default: crate::domain::ApnsEnvironment,
) -> Result<(), ConfigError> {
    if list.is_empty() {
        return Err(invalid(key, "must name at least one environment"));
    }
    for (i, environment) in list.iter().enumerate() {
        if list[..i].contains(environment) {
            return Err(invalid(key, format!("names {environment} twice")));
        }
    }
    if !list.contains(&default) {
        return Err(invalid(
            key,
            format!(
                "does not hold the credential's environment ({default}); a key scoped to {} \
                 needs environment = \"{}\"",
                list[0], list[0]
            ),
        ));
    }
    Ok(())
}

/// The fewest and most header bytes `max_header_bytes` may allow.
pub const HEADER_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;

fn check_listener(table: &str, limits: &super::ListenerLimits) -> Result<(), ConfigError> {
    let at_least_one = [
        ("max_connections", limits.max_connections as u64),
        (
            "max_concurrent_requests",
            limits.max_concurrent_requests as u64,
        ),
        (
            "max_requests_per_connection",
            u64::from(limits.max_requests_per_connection),
        ),
        ("header_read_timeout_ms", limits.header_read_timeout_ms),
        ("body_read_timeout_ms", limits.body_read_timeout_ms),
        ("request_timeout_ms", limits.request_timeout_ms),
    ];
    for (field, value) in at_least_one {
        if value == 0 {
            return Err(invalid(format!("{table}.{field}"), "must be at least 1"));
        }
    }
    if !HEADER_BYTES_RANGE.contains(&limits.max_header_bytes) {
        return Err(invalid(
            format!("{table}.max_header_bytes"),
            format!(
                "{} is outside {}..={}",
                limits.max_header_bytes,
                HEADER_BYTES_RANGE.start(),
                HEADER_BYTES_RANGE.end()
            ),
        ));
    }
    Ok(())
}

fn check_url(key: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => Err(invalid(
            key,
            format!("{u:?} must start with https:// (or http:// for h2c)"),
        )),
        _ => Ok(()),
    }
}
