//! The shared vocabulary at the bottom of the crate: the platforms, what a push says and to
//! whom, time helpers and device-token masking. Every stage imports from here; this module
//! imports nothing of callpush's, so it can never be the reason for a cycle.

use std::fmt;
use std::sync::Arc;

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
    /// The fields of the Twilio call notification the event carries (name, value), in the
    /// order Twilio sent them: what a `payload = "twilio"` credential sends, unchanged
    /// (SPEC §10). Empty for events without one.
    pub twilio: Vec<(String, String)>,
}

impl CallContent {
    /// The fields a `payload = "twilio"` credential sends: the notification's, or — for an
    /// event a call server added without one (SPEC §10 leaves it open) — the least the
    /// Twilio Voice SDK reads: `twi_message_type` (`twilio.voice.call`, or
    /// `twilio.voice.cancel` for a cancel), `twi_call_sid`, `twi_from` (when there is a
    /// caller) and `twi_to` (`client:<callee>`).
    pub fn twilio_fields(&self) -> std::borrow::Cow<'_, [(String, String)]> {
        if !self.twilio.is_empty() {
            return std::borrow::Cow::Borrowed(&self.twilio);
        }
        let message_type = match self.kind {
            PushKind::Incoming => "twilio.voice.call",
            PushKind::Cancel => "twilio.voice.cancel",
        };
        let mut fields = vec![
            ("twi_message_type".to_string(), message_type.to_string()),
            ("twi_call_sid".to_string(), self.call_sid.to_string()),
        ];
        if let Some(caller) = &self.caller {
            fields.push(("twi_from".to_string(), caller.to_string()));
        }
        fields.push(("twi_to".to_string(), format!("client:{}", self.callee)));
        std::borrow::Cow::Owned(fields)
    }
}

/// One push to one device.
#[derive(Debug, Clone)]
pub struct Push {
    /// What to say (shared by all devices of the event).
    pub call: Arc<CallContent>,
    /// The device token (APNs: lower-case hex; FCM: registration token).
    pub device_token: Arc<str>,
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

/// A device token as shown in responses and logs: the first 8 characters and an ellipsis.
pub fn mask_device_token(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    format!("{head}…")
}
