//! The provider boundary: what the dispatcher hands a push provider and what it gets back.
//!
//! Providers (`crate::apns`, `crate::fcm`) speak HTTP to Apple and Google; nothing outside them
//! sees a status code. Each provider has exactly one function that turns a provider answer into an
//! [`Outcome`], so the retry, prune and dead-letter decisions live in one place per provider.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The two push services callpush speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Apple Push Notification service, VoIP (PushKit) pushes over HTTP/2.
    Apns,
    /// Firebase Cloud Messaging, HTTP v1 API.
    Fcm,
}

impl Platform {
    /// The lower-case name used in config, bindings, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::Fcm => "fcm",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "apns" => Ok(Platform::Apns),
            "fcm" => Ok(Platform::Fcm),
            other => Err(format!(
                "unknown platform {other:?} (expected \"apns\" or \"fcm\")"
            )),
        }
    }
}

/// What a call event asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushKind {
    /// Wake the device and ring.
    Incoming,
    /// The call was answered elsewhere or hung up: dismiss the ringing UI.
    Cancel,
}

impl PushKind {
    /// The wire name (`incoming` / `cancel`), as in the stream and the push payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Incoming => "incoming",
            PushKind::Cancel => "cancel",
        }
    }
}

/// The call-level content of a push, shared by every device of one event.
#[derive(Debug, Clone)]
pub struct CallContent {
    /// `incoming` or `cancel`.
    pub kind: PushKind,
    /// The call's id (also the APNs collapse id, hashed when longer than 64 bytes).
    pub call_sid: Arc<str>,
    /// The event's `from`: who is calling, shown to the callee.
    pub caller: Option<Arc<str>>,
    /// The event's `to`: the identity being called.
    pub callee: Arc<str>,
    /// The event's `params`, already validated as a JSON object of string → string and kept as
    /// its compact JSON text.
    pub params: Option<Arc<str>>,
    /// When the push stops being useful, in milliseconds since the Unix epoch.
    pub deadline_ms: u64,
}

/// One push to one device.
#[derive(Debug, Clone)]
pub struct Push {
    /// What to say (shared by all devices of the event).
    pub call: Arc<CallContent>,
    /// The device token (APNs: lower-case hex; FCM: registration token).
    pub device_token: Arc<str>,
}

/// Why a push did not go through, for dead letters, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A short code with few possible values, fit for a metric label: the provider's reason
    /// (`BadTopic`, `UNREGISTERED`, …), or `timeout`, `connect`, `http_503`, ….
    pub reason: String,
    /// A human sentence for the dead letter's `detail`: provider, status and reason,
    /// e.g. `APNs 400 BadTopic`.
    pub detail: String,
}

impl Failure {
    /// A failure with a reason code and a human detail.
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What the provider's answer means for the dispatcher. Providers return this, never HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the push.
    Delivered,
    /// The provider says the device token is dead: prune the binding unless it was re-registered
    /// after `judged_at_ms` (APNs' 410 timestamp; FCM: when the push was sent). Not retried.
    InvalidToken {
        /// Why the token is dead (`Unregistered`, `BadDeviceToken`, `UNREGISTERED`, …).
        failure: Failure,
        /// When the provider judged the token dead, in ms since the Unix epoch.
        judged_at_ms: u64,
    },
    /// A transient failure: try again after the backoff (or at least `retry_after`), within the
    /// event's deadline.
    Retry {
        /// What went wrong.
        failure: Failure,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A permanent failure (bad topic, bad credentials, payload too large, …): not retried,
    /// dead-lettered with the provider's reason.
    Rejected(Failure),
}

/// A push service for one credential (one app).
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Which service this is.
    fn platform(&self) -> Platform;
    /// The credential SID this provider pushes for.
    fn credential(&self) -> &str;
    /// Whether `cancel` events are sent to this credential's devices (always for FCM; for APNs
    /// only with `send_cancel = true`).
    fn sends_cancel(&self) -> bool;
    /// Send one push and classify the answer. Never panics, never returns HTTP details.
    async fn send(&self, push: &Push) -> Outcome;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A time in ms since the Unix epoch as RFC 3339 with milliseconds, in UTC (bindings, dead
/// letters).
pub fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
