//! `[twilio]`: Twilio's call-notification webhook (SPEC §10). The webhook is off until an auth
//! token is configured (`auth_token_file`, or `CALLPUSH_TWILIO_AUTH_TOKEN`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[twilio]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    /// The webhook's URL exactly as Twilio calls it (scheme, host, port, path and query): the
    /// signature covers it, and a proxy in front of callpush changes what callpush itself sees.
    pub webhook_url: Option<String>,
    /// File holding the account's auth token(s), one per line; several allow rotation (or set
    /// `CALLPUSH_TWILIO_AUTH_TOKEN`, several separated by commas).
    pub auth_token_file: Option<PathBuf>,
    /// How long a webhook's push stays useful, in milliseconds (the call event's `ttl_ms`).
    pub ring_ttl_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        TwilioSettings {
            webhook_url: None,
            auth_token_file: None,
            ring_ttl_ms: 30_000,
        }
    }
}

/// What a credential sends to its devices (`payload`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// SPEC §6: the `callpush` object (APNs) or data keys (FCM).
    #[default]
    Callpush,
    /// SPEC §10: the Twilio Voice SDK's own `twi_*` fields.
    Twilio,
}
