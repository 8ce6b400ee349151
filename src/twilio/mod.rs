//! Twilio Voice drop-in (SPEC §10): callpush as the account's Client Call Notification Webhook.
//!
//! Twilio posts each incoming-call notification for its mobile SDKs to
//! `POST /v1/twilio/call-notifications` (the handler is in `api::twilio`), as a JSON object of
//! string fields (or, as older callers do, a form of the same fields). This module holds what
//! that needs besides HTTP: decoding the body ([`body`]), the signature check as Twilio's
//! libraries do it ([`signature`]), the checks and the stream entry of a notification
//! ([`call`]), and the settings loaded once at start ([`Webhook`]).
//!
//! How the notification travels: the webhook adds a calls-stream entry with the usual fields
//! (`type=incoming`, `to`, `call_sid`, `from`, `ttl_ms`) **plus the whole notification as one
//! stream field, `twilio`**: a JSON object of every field in the order received, so any field
//! name — Twilio adds new ones without notice — reaches the device and none collides with a
//! stream field. The event parser reads it into the call's content
//! ([`crate::domain::CallContent::twilio`]); a credential with `payload = "twilio"` sends
//! exactly those fields, a `callpush` credential ignores them. Entries without a `twilio` field
//! (added by an earlier callpush, or by a call server) still carry `twi_*` stream fields, which
//! are read as before.
//!
//! Imports point one way: `auth` holds the loaded [`Webhook`] beside the other secrets (so a
//! reload replaces them together) and so imports this module; this module takes its secret type
//! from the bottom module `secret` and imports nothing of `auth`.
//!
//! Redis keys (`<p>` is `redis.key_prefix`): `<p>once:twilio:<twi_message_id>` and, when
//! Twilio sent `I-Twilio-Idempotency-Token`, `<p>once:twilio-token:<token>`, set with the stream
//! entry by one script and expiring with the call's ttl, so a webhook Twilio retries adds no
//! second entry (the `call_sid` ledger would still keep devices from ringing twice).

pub(crate) mod body;
pub(crate) mod call;
pub(crate) mod signature;

use crate::config::Settings;
use crate::log_throttle::LogThrottle;
use crate::secret::{Secret, SecretError};
use signature::Secrets;

/// The environment variable that may hold the auth token(s) instead of
/// `twilio.auth_token_file` (several separated by commas).
pub const AUTH_TOKEN_ENV: &str = "CALLPUSH_TWILIO_AUTH_TOKEN";

/// The environment variable that may hold the Webhooks SharedKey secret(s) instead of
/// `twilio.shared_key_file` (several separated by commas).
pub const SHARED_KEY_ENV: &str = "CALLPUSH_TWILIO_SHARED_KEY";

/// The webhook's settings and secrets, loaded once at start.
#[derive(Debug)]
pub struct Webhook {
    /// `twilio.webhook_url`: the URL Twilio signs (the request's query is added to it).
    pub url: String,
    /// Every accepted auth token and SharedKey secret (several of each during a rotation).
    pub secrets: Secrets,
    /// `auth.account_sid`: the only `twi_account_sid` accepted.
    pub account_sid: String,
    /// `twilio.ring_ttl_ms`: the call event's `ttl_ms` when Twilio gives no answer timeout.
    pub ring_ttl_ms: u64,
    /// Signature failures logged recently, by source address.
    pub failures: FailureLog,
}

/// Why the webhook's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// The auth token could not be read.
    #[error("twilio.auth_token_file: {0}")]
    Token(#[source] SecretError),
    /// The SharedKey secret could not be read.
    #[error("twilio.shared_key_file: {0}")]
    SharedKey(#[source] SecretError),
    /// Secrets are configured but not the URL they sign.
    #[error("twilio.webhook_url must be set when a twilio auth token or shared key is configured")]
    NoUrl,
    /// Secrets are configured but not the account whose notifications to accept.
    #[error("auth.account_sid must be set when a twilio auth token or shared key is configured")]
    NoAccount,
}

fn split(text: &str, separator: char) -> Vec<Secret> {
    text.split(separator)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect()
}

/// The secrets in `file` (one per line), else in the environment variable `env` (separated by
/// commas), else none.
fn load(
    file: Option<&std::path::Path>,
    env: &str,
    error: fn(SecretError) -> WebhookConfigError,
) -> Result<Vec<Secret>, WebhookConfigError> {
    Ok(match file {
        Some(path) => {
            let text = Secret::from_file(path).map_err(error)?;
            split(&String::from_utf8_lossy(text.expose()), '\n')
        }
        None => match std::env::var(env) {
            Ok(text) => split(&text, ','),
            Err(_) => Vec::new(),
        },
    })
}

impl Webhook {
    /// The webhook, or `None` (off: the route answers 404) when neither an auth token nor a
    /// SharedKey is configured.
    pub fn from_settings(settings: &Settings) -> Result<Option<Webhook>, WebhookConfigError> {
        let t = &settings.twilio;
        let secrets = Secrets {
            auth_tokens: load(
                t.auth_token_file.as_deref(),
                AUTH_TOKEN_ENV,
                WebhookConfigError::Token,
            )?,
            shared_keys: load(
                t.shared_key_file.as_deref(),
                SHARED_KEY_ENV,
                WebhookConfigError::SharedKey,
            )?,
        };
        if secrets.is_empty() {
            return Ok(None);
        }
        let url = t.webhook_url.clone().ok_or(WebhookConfigError::NoUrl)?;
        let account_sid = (settings.auth.account_sid.clone())
            .filter(|sid| !sid.is_empty())
            .ok_or(WebhookConfigError::NoAccount)?;
        Ok(Some(Webhook {
            url,
            secrets,
            account_sid,
            ring_ttl_ms: t.ring_ttl_ms,
            failures: FailureLog::default(),
        }))
    }
}

/// Remembers when a signature failure was last logged per source address, so a prober or a
/// misconfigured account logs one line a minute, not one per request.
#[derive(Debug)]
pub struct FailureLog(LogThrottle<std::net::IpAddr>);

impl Default for FailureLog {
    fn default() -> FailureLog {
        FailureLog(LogThrottle::new(FAILURE_LOG_EVERY))
    }
}

/// How often one source address's signature failures are logged at most.
pub const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl FailureLog {
    /// Whether a failure from `addr` at `now` should be logged (and, if so, note it).
    pub fn should_log(&self, addr: std::net::IpAddr, now: std::time::Instant) -> bool {
        self.0.should_log(addr, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn settings(dir: &std::path::Path, tokens: &str, url: Option<&str>) -> Settings {
        let file = dir.join("tokens");
        std::fs::write(&file, tokens).unwrap();
        let mut s = Settings::default();
        s.twilio.auth_token_file = Some(file);
        s.twilio.webhook_url = url.map(Into::into);
        s.auth.account_sid = Some("AC1".into());
        s
    }

    #[test]
    fn tokens_one_per_line_and_the_url_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let w = Webhook::from_settings(&settings(
            dir.path(),
            "new\n\n  old  \n",
            Some("https://h/p"),
        ))
        .unwrap()
        .expect("on with tokens");
        assert_eq!(w.secrets.auth_tokens.len(), 2);
        assert!(w.secrets.auth_tokens[1].matches("old"));
        assert!(w.secrets.shared_keys.is_empty());
        assert_eq!(w.account_sid, "AC1");
        let mut no_account = settings(dir.path(), "tok\n", Some("https://h/p"));
        no_account.auth.account_sid = None;
        let err = Webhook::from_settings(&no_account).unwrap_err();
        assert!(matches!(err, WebhookConfigError::NoAccount), "{err}");
        let err = Webhook::from_settings(&settings(dir.path(), "tok\n", None)).unwrap_err();
        assert!(matches!(err, WebhookConfigError::NoUrl), "{err}");
        let err = Webhook::from_settings(&settings(dir.path(), "  \n", None)).unwrap_err();
        assert!(matches!(err, WebhookConfigError::Token(_)), "{err}");
    }

    #[test]
    fn shared_keys_alone_turn_the_webhook_on() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "new-key\nold-key\n").unwrap();
        let mut s = Settings::default();
        s.twilio.shared_key_file = Some(keys);
        s.twilio.webhook_url = Some("https://h/p".into());
        s.auth.account_sid = Some("AC1".into());
        let w = Webhook::from_settings(&s)
            .unwrap()
            .expect("on with shared keys");
        assert_eq!(w.secrets.shared_keys.len(), 2);
        assert!(w.secrets.auth_tokens.is_empty());
        s.twilio.webhook_url = None;
        let err = Webhook::from_settings(&s).unwrap_err();
        assert!(matches!(err, WebhookConfigError::NoUrl), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        s.twilio.shared_key_file = Some(empty);
        let err = Webhook::from_settings(&s).unwrap_err();
        assert!(matches!(err, WebhookConfigError::SharedKey(_)), "{err}");
        assert!(err.to_string().contains("twilio.shared_key_file"), "{err}");
    }

    #[test]
    fn one_log_line_per_address_and_minute() {
        let log = FailureLog::default();
        let a = "192.0.2.1".parse().unwrap();
        let b = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(log.should_log(a, t0));
        assert!(!log.should_log(a, t0 + Duration::from_secs(59)));
        assert!(log.should_log(b, t0 + Duration::from_secs(1)));
        assert!(log.should_log(a, t0 + FAILURE_LOG_EVERY));
    }
}
