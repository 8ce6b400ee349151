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

/// One of Apple's two push environments. A device token belongs to exactly one: a debug build
/// (run from Xcode, `aps-environment = development`) gets a sandbox token, a TestFlight, Ad Hoc
/// or App Store build a production one, and each host answers `400 BadDeviceToken` for a token
/// of the other.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com` (TestFlight, Ad Hoc and App Store builds).
    #[default]
    Production,
    /// `https://api.sandbox.push.apple.com` (development builds).
    Sandbox,
}

impl ApnsEnvironment {
    /// Both environments, production first.
    pub const ALL: [ApnsEnvironment; 2] = [ApnsEnvironment::Production, ApnsEnvironment::Sandbox];

    /// The lower-case name used in config, bindings, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ApnsEnvironment::Production => "production",
            ApnsEnvironment::Sandbox => "sandbox",
        }
    }

    /// The other environment.
    pub fn other(self) -> ApnsEnvironment {
        match self {
            ApnsEnvironment::Production => ApnsEnvironment::Sandbox,
            ApnsEnvironment::Sandbox => ApnsEnvironment::Production,
        }
    }
}

impl fmt::Display for ApnsEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApnsEnvironment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(ApnsEnvironment::Production),
            "sandbox" => Ok(ApnsEnvironment::Sandbox),
            other => Err(format!(
                "unknown APNs environment {other:?} (expected \"production\" or \"sandbox\")"
            )),
        }
    }
}

/// Where one APNs credential pushes: its default environment (for bindings that registered
/// none) and, when its key may serve both, the other one, where a token the default refuses as
/// another environment's is tried once (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApnsEnvironments {
    /// The credential's `environment`.
    pub default: ApnsEnvironment,
    /// The other environment, when the credential's `environments` allows it.
    pub other: Option<ApnsEnvironment>,
}

impl ApnsEnvironments {
    /// Whether the credential may push to `environment`.
    pub fn allows(&self, environment: ApnsEnvironment) -> bool {
        environment == self.default || Some(environment) == self.other
    }

    /// The environments the credential may push to, the default first.
    pub fn all(&self) -> impl Iterator<Item = ApnsEnvironment> {
        std::iter::once(self.default).chain(self.other)
    }

    /// The environment a binding is pushed to: the one it registered or learned, else the
    /// default.
    pub fn of(&self, binding: Option<ApnsEnvironment>) -> ApnsEnvironment {
        binding.unwrap_or(self.default)
    }
}

/// How FCM addresses a device: by registration token (`message.token`), or by Firebase
/// Installation ID (`message.fid`), which apps that opted in to FID registration receive in
/// `onRegistered` instead of a token in `onNewToken`. APNs devices are always `Token`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A device token (APNs) or an FCM registration token.
    #[default]
    Token,
    /// A Firebase Installation ID (FCM only).
    Fid,
}

impl Target {
    /// The lower-case name used in bindings and the API (`token`, `fid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Token => "token",
            Target::Fid => "fid",
        }
    }

    /// Whether this is the default, registration-token target (stored bindings omit it).
    pub fn is_token(&self) -> bool {
        *self == Target::Token
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
    /// The device's address (APNs: lower-case hex token; FCM: registration token or FID).
    pub device_token: Arc<str>,
    /// What `device_token` is: an FCM push to an FID sends `fid` in place of `token`.
    pub target: Target,
    /// APNs: the environment to push to — the one the binding registered or learned, or, when
    /// it knows none, `None`, and the credential's (the dispatcher then learns it, SPEC §6).
    pub environment: Option<ApnsEnvironment>,
}

impl Push {
    /// A push of `call` to a registration token, in the credential's environment.
    pub fn new(call: Arc<CallContent>, device_token: impl Into<Arc<str>>) -> Push {
        Push {
            call,
            device_token: device_token.into(),
            target: Target::Token,
            environment: None,
        }
    }

    /// The same push, to `environment`.
    pub fn in_environment(&self, environment: ApnsEnvironment) -> Push {
        Push {
            environment: Some(environment),
            ..self.clone()
        }
    }
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
    masked(token).to_string()
}

/// [`mask_device_token`] without building a string: written only when a log line or a
/// message is, so a push whose log level is off allocates nothing for it.
pub fn masked(token: &str) -> MaskedToken<'_> {
    let end = token.char_indices().nth(8).map_or(token.len(), |(i, _)| i);
    MaskedToken(&token[..end])
}

/// A device token's first 8 characters, shown with an ellipsis ([`masked`]).
#[derive(Debug, Clone, Copy)]
pub struct MaskedToken<'a>(&'a str);

impl std::fmt::Display for MaskedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_token_shows_its_first_8_characters() {
        assert_eq!(mask_device_token("0123456789abcdef"), "01234567…");
        assert_eq!(mask_device_token("abc"), "abc…");
        assert_eq!(mask_device_token("ééééééééé"), "éééééééé…");
        assert_eq!(masked("fcm:tok-xyz").to_string(), "fcm:tok-…");
    }
}
