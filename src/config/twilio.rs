//! `[twilio]`: Twilio's call-notification webhook (SPEC §10). The webhook is off until a signing
//! secret is configured: an auth token (`auth_token_file`, or `CALLPUSH_TWILIO_AUTH_TOKEN`)
//! and/or a Webhooks SharedKey (`shared_key_file`, or `CALLPUSH_TWILIO_SHARED_KEY`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[twilio]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    /// The webhook's URL as Twilio is configured to call it (scheme, host, port and path): the
    /// signature covers it, and a proxy in front of callpush changes what callpush itself sees.
    /// The query of each request as received is added to it (Twilio puts `bodySHA256` there);
    /// a query given here counts only for requests that arrive without one.
    pub webhook_url: Option<String>,
    /// File holding the account's auth token(s), one per line; several allow rotation (or set
    /// `CALLPUSH_TWILIO_AUTH_TOKEN`, several separated by commas). Checks requests that come
    /// without `X-Twilio-Webhooks-Signature-Settings` (HMAC-SHA1).
    pub auth_token_file: Option<PathBuf>,
    /// File holding Webhooks SharedKey secret(s), one per line; several allow rotation (or set
    /// `CALLPUSH_TWILIO_SHARED_KEY`, several separated by commas). Checks requests that come
    /// with `X-Twilio-Webhooks-Signature-Settings`, in the algorithm that header names.
    pub shared_key_file: Option<PathBuf>,
    /// How long a webhook's push stays useful, in milliseconds (the call event's `ttl_ms`),
    /// when the notification has no sane `twi_answer_timeout` of its own.
    pub ring_ttl_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        TwilioSettings {
            webhook_url: None,
            auth_token_file: None,
            shared_key_file: None,
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
    /// SPEC §10: the Twilio Voice SDK's own format, every field of Twilio's notification.
    Twilio,
}
