//! One typed configuration, layered: built-in defaults, then the TOML file (`--config`), then
//! `CALLPUSH_` environment variables (`__` separates levels: `CALLPUSH_REDIS__URL`,
//! `CALLPUSH_CREDENTIALS__0__ENDPOINT`). It is validated once at start; every error names the
//! key. Secrets are never in this struct as text: only the paths of the files that hold them,
//! or the name of an environment variable.

mod credentials;
mod env;
mod listeners;
mod load;
mod pipeline;
#[cfg(test)]
mod tests;
mod twilio;
mod validate;

use std::path::PathBuf;

use serde::Deserialize;

pub use credentials::{ApnsCredential, ApnsEnvironment, CredentialSettings, FcmCredential};
pub use listeners::{AdminSettings, ApiKeySettings, ApiSettings, AuthSettings, ListenerLimits};
pub use pipeline::{
    BindingSettings, DeadLetterSettings, FeedSettings, LimitScope, LimitSettings, ResultsSettings,
    RetrySettings, ShutdownSettings, StreamSettings, WorkerSettings,
};
pub use twilio::{PayloadFormat, TwilioSettings};
pub use validate::{ConfigError, MIN_CLAIM_IDLE_MS, SUGGESTED_MIN_CLAIM_IDLE_MS};

/// The whole configuration of the daemon and the CLI.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where Redis is and how callpush names its keys.
    #[serde(default)]
    pub redis: RedisSettings,
    /// The public listener that mobile apps reach.
    #[serde(default)]
    pub api: ApiSettings,
    /// The admin listener for operators, metrics and call servers.
    #[serde(default)]
    pub admin: AdminSettings,
    /// Access-token verification.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Push credentials: one per app and platform.
    #[serde(default)]
    pub credentials: Vec<CredentialSettings>,
    /// Consuming the calls stream.
    #[serde(default)]
    pub stream: StreamSettings,
    /// The worker pool.
    #[serde(default)]
    pub workers: WorkerSettings,
    /// Retries of transient provider failures.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Rate limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Device bindings.
    #[serde(default)]
    pub bindings: BindingSettings,
    /// The results stream.
    #[serde(default)]
    pub results: ResultsSettings,
    /// The dead-letter stream.
    #[serde(default)]
    pub dead_letters: DeadLetterSettings,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownSettings,
    /// Twilio's call-notification webhook.
    #[serde(default)]
    pub twilio: TwilioSettings,
    /// The file these settings were loaded from (`--config`), which a reload reads again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// Redis URL (`redis://host:port[/db]`, `rediss://` for TLS). A password may be written in
    /// it, but `password_file` or `CALLPUSH_REDIS_PASSWORD` keeps it out of the config.
    pub url: String,
    /// Prefix of every key callpush owns (streams, bindings, markers).
    pub key_prefix: String,
    /// ACL user name (Redis 6+), when not the `default` user.
    pub username: Option<String>,
    /// File holding the password (its first line), or set `CALLPUSH_REDIS_PASSWORD`.
    pub password_file: Option<PathBuf>,
    /// An extra root certificate (PEM) to verify a `rediss://` server by, for a private CA;
    /// without it the system's roots are used.
    pub ca_file: Option<PathBuf>,
    /// Talk to a Redis Cluster: `urls` are seed nodes, commands follow `MOVED`/`ASK`
    /// (docs/operations.md). Default false.
    pub cluster: bool,
    /// Seed nodes of the cluster (with `cluster = true`); empty means `[url]`. The user,
    /// password and TLS settings apply to every node.
    pub urls: Vec<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "callpush:".into(),
            username: None,
            password_file: None,
            ca_file: None,
            cluster: false,
            urls: Vec::new(),
        }
    }
}

impl Settings {
    /// The APNs environments of each APNs credential, by SID.
    pub fn apns_environments(
        &self,
    ) -> std::collections::HashMap<String, crate::domain::ApnsEnvironments> {
        self.credentials
            .iter()
            .filter_map(|c| match c {
                CredentialSettings::Apns(a) => Some((a.sid.clone(), a.environments())),
                CredentialSettings::Fcm(_) => None,
            })
            .collect()
    }

    /// Every file a secret is read from, with its config key: the admin token, API key
    /// secrets, the Twilio auth tokens and SharedKeys, the Redis password, push credentials' keys and the
    /// public listener's TLS key.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        let mut add = |key: String, path: &Option<PathBuf>| {
            if let Some(path) = path {
                files.push((key, path.clone()));
            }
        };
        add("admin.token_file".into(), &self.admin.token_file);
        add("redis.password_file".into(), &self.redis.password_file);
        add(
            "twilio.auth_token_file".into(),
            &self.twilio.auth_token_file,
        );
        add(
            "twilio.shared_key_file".into(),
            &self.twilio.shared_key_file,
        );
        add("api.tls_key_file".into(), &self.api.tls_key_file);
        add(
            "bindings.feed.secret_file".into(),
            &self.bindings.feed.secret_file,
        );
        for (i, k) in self.auth.api_keys.iter().enumerate() {
            add(format!("auth.api_keys[{i}].secret_file"), &k.secret_file);
        }
        for (i, c) in self.credentials.iter().enumerate() {
            match c {
                CredentialSettings::Apns(a) => add(
                    format!("credentials[{i}].key_file"),
                    &Some(a.key_file.clone()),
                ),
                CredentialSettings::Fcm(f) => add(
                    format!("credentials[{i}].service_account_file"),
                    &Some(f.service_account_file.clone()),
                ),
            }
        }
        files
    }
}
