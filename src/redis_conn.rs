//! Redis connections and key names.
//!
//! Two kinds of connection: [`connect`] gives the shared [`ConnectionManager`] every short
//! command goes through (multiplexed, reconnecting with backoff, short response timeout), and
//! [`connect_blocking`] gives the [`BlockingConnection`] that `XREADGROUP … BLOCK` reads use.
//! Blocking reads need their own connection twice over: a BLOCK read holds a multiplexed
//! connection's pipeline, so every other command would queue behind it, and its response
//! timeout must outlast the BLOCK or the client gives up on a read the server is still serving.
//!
//! [`Keys`] is the only place that formats key names; the stores document what each key holds.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};

use crate::config::RedisSettings;

/// How long establishing a TCP (and TLS) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a short command may take before the connection is considered broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// First reconnect backoff; doubles per attempt, with jitter.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest reconnect backoff.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);
/// Reconnect attempts per outage before pending commands fail (the next command starts over).
const RECONNECT_ATTEMPTS: usize = 6;

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_number_of_retries(RECONNECT_ATTEMPTS)
}

/// The environment variable that may hold the Redis password instead of `redis.password_file`.
pub const PASSWORD_ENV: &str = "CALLPUSH_REDIS_PASSWORD";

/// A client for the settings: the URL, the ACL user and the password (`redis.password_file`,
/// else `CALLPUSH_REDIS_PASSWORD`, else the URL's), and for `rediss://` the extra root of
/// `redis.ca_file`. Secret files are read here, once per client: the connection manager
/// reconnects with what it was built with, so a rotated password takes a daemon restart.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, RedisError> {
    let info = settings.url.as_str().into_connection_info()?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(user) = &settings.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = password(settings)? {
        redis_info = redis_info.set_password(password);
    }
    let info = info.set_redis_settings(redis_info);
    match &settings.ca_file {
        Some(path) => {
            let root = std::fs::read(path).map_err(|e| {
                config_error(
                    "cannot read redis.ca_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            redis::Client::build_with_tls(info, certs)
        }
        None => redis::Client::open(info),
    }
}

fn password(settings: &RedisSettings) -> Result<Option<String>, RedisError> {
    if let Some(path) = &settings.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                "cannot read redis.password_file",
                format!("{}: {e}", path.display()),
            )
        })?;
        let first = text.lines().next().unwrap_or_default().trim().to_string();
        return Ok(Some(first));
    }
    Ok(std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
}

fn config_error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, what, detail))
}

/// Connect the shared connection for short commands (scripts, XADD, XACK, XRANGE, …).
///
/// Fails when Redis cannot be reached now; once connected, the manager reconnects by itself.
pub async fn connect(settings: &RedisSettings) -> Result<ConnectionManager, RedisError> {
    let client = client(settings)?;
    ConnectionManager::new_with_config(client, manager_config(RESPONSE_TIMEOUT)).await
}

/// A connection reserved for blocking stream reads.
#[derive(Clone)]
pub struct BlockingConnection {
    conn: ConnectionManager,
    max_block: Duration,
}

impl BlockingConnection {
    /// The connection, to send one blocking read on.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The longest BLOCK a read on this connection may ask for: longer ones are shortened, so
    /// the client-side response timeout never cuts a read short.
    pub fn max_block(&self) -> Duration {
        self.max_block
    }
}

impl std::fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingConnection")
            .field("max_block", &self.max_block)
            .finish_non_exhaustive()
    }
}

/// Connect the connection for blocking reads of up to `max_block` (use `stream.block_ms`).
///
/// Its response timeout is `max_block` plus the short-command timeout, so a BLOCK read that
/// returns empty-handed is never mistaken for a dead connection, while a really dead one is
/// still noticed (and reconnected) within a few seconds of the BLOCK ending.
pub async fn connect_blocking(
    settings: &RedisSettings,
    max_block: Duration,
) -> Result<BlockingConnection, RedisError> {
    let client = client(settings)?;
    let conn =
        ConnectionManager::new_with_config(client, manager_config(max_block + RESPONSE_TIMEOUT))
            .await?;
    Ok(BlockingConnection { conn, max_block })
}

/// Why a key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Braces in the prefix would move the cluster hash tag away from the identity or device.
    #[error("redis.key_prefix must not contain `{{` or `}}`")]
    BraceInPrefix,
}

/// The names of every key callpush owns, derived from `redis.key_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    /// `<p>calls`: the calls stream call servers add events to.
    pub calls: String,
    /// `<p>results`: one entry per finished event.
    pub results: String,
    /// `<p>dead`: dead letters.
    pub dead: String,
}

impl Keys {
    /// Derive the key names from the prefix (`callpush:` by default).
    pub fn new(prefix: &str) -> Result<Keys, KeyError> {
        if prefix.contains(['{', '}']) {
            return Err(KeyError::BraceInPrefix);
        }
        Ok(Keys {
            prefix: prefix.to_string(),
            calls: format!("{prefix}calls"),
            results: format!("{prefix}results"),
            dead: format!("{prefix}dead"),
        })
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>once:<key>`: the idempotency marker of an event added once
    /// (`CallQueue::enqueue_once`).
    pub fn once(&self, key: &str) -> String {
        format!("{}once:{key}", self.prefix)
    }

    /// `<p>id:{<identity>}:b`: hash binding_id → JSON binding of one identity.
    pub fn identity_bindings(&self, identity: &str) -> String {
        format!("{}id:{{{identity}}}:b", self.prefix)
    }

    /// `<p>id:{<identity>}:u`: sorted set binding_id scored by `updated_at_ms`, same slot as the
    /// hash.
    pub fn identity_updated(&self, identity: &str) -> String {
        format!("{}id:{{{identity}}}:u", self.prefix)
    }

    /// `<p>dev:{<credential>:<device_token>}`: which identity (and binding) owns the device token
    /// under the credential.
    pub fn device(&self, credential: &str, device_token: &str) -> String {
        format!("{}dev:{{{credential}:{device_token}}}", self.prefix)
    }

    /// `<p>sent:{<call_sid>}`: hash device → push state of one call (the no-double-ring ledger,
    /// `dispatch::ledger`).
    pub fn sent(&self, call_sid: &str) -> String {
        format!("{}sent:{{{call_sid}}}", self.prefix)
    }

    /// `<p><name>`: any other key callpush owns, so its prefix is applied in one place.
    pub fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_hash_tags() {
        let k = Keys::new("cp:").unwrap();
        assert_eq!(k.calls, "cp:calls");
        assert_eq!(k.results, "cp:results");
        assert_eq!(k.dead, "cp:dead");
        assert_eq!(k.identity_bindings("alice"), "cp:id:{alice}:b");
        assert_eq!(k.identity_updated("alice"), "cp:id:{alice}:u");
        assert_eq!(k.device("CR1", "ab:cd"), "cp:dev:{CR1:ab:cd}");
        assert_eq!(k.named("x"), "cp:x");
        assert_eq!(k.sent("CA1"), "cp:sent:{CA1}");
    }

    #[test]
    fn braces_in_the_prefix_are_refused() {
        assert_eq!(Keys::new("a{b}:"), Err(KeyError::BraceInPrefix));
    }
}
