//! The listeners' sections: `[api]` (the public listener apps reach), `[admin]` (operators,
//! metrics and call servers), the limits each listener enforces, and `[auth]`.

use std::path::PathBuf;

use serde::Deserialize;

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
