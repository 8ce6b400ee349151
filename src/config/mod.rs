//! One typed configuration, layered: built-in defaults, then the TOML file (`--config`), then
//! `CALLPUSH_` environment variables (`__` separates levels: `CALLPUSH_REDIS__URL`,
//! `CALLPUSH_CREDENTIALS__0__ENDPOINT`). It is validated once at start; every error names the
//! key. Secrets are never in this struct as text: only the paths of the files that hold them,
//! or the name of an environment variable.

mod credentials;
mod env;
mod twilio;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use credentials::{ApnsCredential, ApnsEnvironment, CredentialSettings, FcmCredential};
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

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Address of the public listener.
    pub listen: String,
    /// Certificate chain (PEM) to serve HTTPS with, for deployments without a terminating
    /// proxy; needs `tls_key_file`. Without both, the listener speaks plain HTTP (and h2c).
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    /// Connection and request limits of the public listener.
    pub limits: ListenerLimits,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "0.0.0.0:8080".into(),
            tls_cert_file: None,
            tls_key_file: None,
            limits: ListenerLimits::default(),
        }
    }
}

/// `[api.limits]` and `[admin.limits]`: what one listener accepts before it refuses, so that
/// idle, slow or oversized clients cannot exhaust the daemon (docs/security.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// Open connections at once; one more is answered 503 (plain HTTP) and closed.
    pub max_connections: usize,
    /// Requests being handled at once over all connections; one more is answered 503.
    pub max_concurrent_requests: usize,
    /// Requests in flight at once on one HTTP/2 connection (its `MAX_CONCURRENT_STREAMS`);
    /// HTTP/1.1 handles one at a time anyway.
    pub max_requests_per_connection: u32,
    /// Bytes of request headers (names and values); more is answered 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's headers (and a TLS handshake), in
    /// milliseconds; a connection idle that long between requests is closed too.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body, in milliseconds; past it, 408.
    pub body_read_timeout_ms: u64,
    /// How long handling a request may take once its body arrived, in milliseconds; past it,
    /// 503.
    pub request_timeout_ms: u64,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 10_000,
            max_concurrent_requests: 4_096,
            max_requests_per_connection: 100,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address of the admin listener (keep it private).
    pub listen: String,
    /// File holding the admin bearer token (or set `CALLPUSH_ADMIN_TOKEN`). Required when
    /// `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// Connection and request limits of the admin listener.
    pub limits: ListenerLimits,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: "127.0.0.1:9090".into(),
            token_file: None,
            limits: ListenerLimits::default(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The account SID (`AC…`) every access token's `sub` must name.
    pub account_sid: Option<String>,
    /// The longest lifetime an access token may have, in seconds.
    pub max_token_ttl_secs: u64,
    /// API keys that sign access tokens; several at once allow rotation.
    pub api_keys: Vec<ApiKeySettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            account_sid: None,
            max_token_ttl_secs: 86_400,
            api_keys: Vec::new(),
        }
    }
}

/// One `[[auth.api_keys]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// The API key SID (`SK…`), the token's `iss`.
    pub sid: String,
    /// File holding the key's secret.
    pub secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the key's secret (instead of a file).
    pub secret_env: Option<String>,
}

/// `[stream]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Consumer group name.
    pub group: String,
    /// This consumer's name (default: host name and process id).
    pub consumer: Option<String>,
    /// Entries read per XREADGROUP.
    pub batch_size: usize,
    /// How long one XREADGROUP blocks waiting for entries, in milliseconds.
    pub block_ms: u64,
    /// Reclaim entries another consumer left pending this long, in milliseconds (at least
    /// [`MIN_CLAIM_IDLE_MS`]; below [`SUGGESTED_MIN_CLAIM_IDLE_MS`] the daemon warns at start-up).
    pub claim_idle_ms: u64,
    /// Approximate cap of the calls stream's length (XADD MAXLEN ~) for entries callpush adds.
    pub max_len: u64,
    /// How many calls streams events are spread over (1..=`MAX_SHARDS`); an event's shard is
    /// CRC-32 of its `to` mod `shards` (docs/operations.md). 1 keeps the unsharded key names.
    pub shards: u32,
    /// A consumer of the group that holds no pending entry and has been idle this long, in
    /// milliseconds, is deleted by whichever daemon notices (docs/runbook.md, "Consumers of the
    /// group"). At least `claim_idle_ms`; by default the larger of one hour and ten times
    /// `claim_idle_ms` ([`StreamSettings::consumer_idle_delete`]).
    pub consumer_idle_delete_ms: Option<u64>,
}

impl StreamSettings {
    /// `consumer_idle_delete_ms`, or its default: the larger of one hour and ten times
    /// `claim_idle_ms`. An hour after a daemon stopped, its entries have long been reclaimed
    /// (after `claim_idle_ms`) and its name has stayed in `XINFO CONSUMERS` for whoever looks
    /// into why it stopped; the group keeps at most one consumer per restart per hour.
    pub fn consumer_idle_delete(&self) -> std::time::Duration {
        let default = 3_600_000u64.max(self.claim_idle_ms.saturating_mul(10));
        std::time::Duration::from_millis(self.consumer_idle_delete_ms.unwrap_or(default))
    }
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            group: "callpush".into(),
            consumer: None,
            batch_size: 256,
            block_ms: 2_000,
            claim_idle_ms: 10_000,
            max_len: 1_000_000,
            shards: 1,
            consumer_idle_delete_ms: None,
        }
    }
}

/// `[workers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Pushes in flight at once; reading the stream pauses while all are taken.
    pub max_in_flight: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_in_flight: 4096,
        }
    }
}

/// `[retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// First backoff, in milliseconds (full jitter: a random wait up to this).
    pub base_ms: u64,
    /// Longest backoff, in milliseconds.
    pub max_ms: u64,
    /// Attempts per device, the first included.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts: 6,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Where the callee limit and the credentials' `rate_limit_per_sec` are counted: `daemon`
    /// (each daemon counts its own share) or `cluster` (in Redis, shared by every daemon).
    pub scope: LimitScope,
    /// Call events per callee per minute; the excess is dead-lettered as `rate_limited`.
    pub calls_per_identity_per_min: u32,
    /// Registrations per identity per minute.
    pub registrations_per_identity_per_min: u32,
    /// Registrations per client address per minute.
    pub registrations_per_address_per_min: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            scope: LimitScope::Daemon,
            calls_per_identity_per_min: 60,
            registrations_per_identity_per_min: 30,
            registrations_per_address_per_min: 600,
        }
    }
}

/// `limits.scope`: who counts the dispatch limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Each daemon counts on its own: N daemons let N times the limit through.
    #[default]
    Daemon,
    /// Counted in Redis and shared by every daemon of the group (in-memory `dev`: the daemon).
    Cluster,
}

/// `[bindings]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BindingSettings {
    /// A binding nobody refreshed for this many days is gone.
    pub ttl_days: u32,
    /// Bindings per identity; registering one more evicts the least recently updated.
    pub max_per_identity: usize,
    /// `[bindings.feed]`: the binding feed's webhook (SPEC §11).
    pub feed: FeedSettings,
}

impl Default for BindingSettings {
    fn default() -> Self {
        BindingSettings {
            ttl_days: 365,
            max_per_identity: 20,
            feed: FeedSettings::default(),
        }
    }
}

/// `[bindings.feed]`: POST every binding event to the app backend (docs/closing-the-loop.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    /// Where to POST each event (`http://` or `https://`); off when unset.
    pub webhook_url: Option<String>,
    /// The signing secret (HMAC-SHA256 of `<timestamp>.<body>`); required with `webhook_url`.
    pub secret_file: Option<PathBuf>,
    /// Longest wait between two attempts at one event, ms (the wait doubles from 500 ms).
    pub max_backoff_ms: u64,
    /// An extra root certificate (PEM) for an `https://` webhook behind a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            webhook_url: None,
            secret_file: None,
            max_backoff_ms: 60_000,
            ca_file: None,
        }
    }
}

/// `[results]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultsSettings {
    /// Write one entry per event to `<prefix>results`.
    pub enabled: bool,
    /// Approximate cap of the results stream's length.
    pub max_len: u64,
}

impl Default for ResultsSettings {
    fn default() -> Self {
        ResultsSettings {
            enabled: true,
            max_len: 100_000,
        }
    }
}

/// `[dead_letters]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterSettings {
    /// Approximate cap of the dead-letter stream's length.
    pub max_len: u64,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings { max_len: 1_000_000 }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long in-flight work may take to finish after SIGTERM, in milliseconds.
    pub grace_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { grace_ms: 10_000 }
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
