//! `[[credentials]]`: the push credential of one app on one platform. An APNs credential names
//! the .p8 key file, an FCM credential the service-account file; the keys themselves are read
//! by the providers at start.

use std::path::PathBuf;

use serde::Deserialize;

/// One `[[credentials]]` entry: the push credential of one app on one platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum CredentialSettings {
    /// An APNs VoIP credential (token-based, .p8 key).
    Apns(ApnsCredential),
    /// An FCM HTTP v1 credential (service account).
    Fcm(FcmCredential),
}

impl CredentialSettings {
    /// The credential SID (`CR…`), what `push_credential_sid` names.
    pub fn sid(&self) -> &str {
        match self {
            CredentialSettings::Apns(c) => &c.sid,
            CredentialSettings::Fcm(c) => &c.sid,
        }
    }

    /// The platform of this credential.
    pub fn platform(&self) -> crate::domain::Platform {
        match self {
            CredentialSettings::Apns(_) => crate::domain::Platform::Apns,
            CredentialSettings::Fcm(_) => crate::domain::Platform::Fcm,
        }
    }
}

/// APNs environment: which of Apple's hosts to use when no `endpoint` is set.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com`
    #[default]
    Production,
    /// `https://api.sandbox.push.apple.com` (development builds).
    Sandbox,
}

/// An APNs credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsCredential {
    /// Credential SID (`CR…`).
    pub sid: String,
    /// The app's bundle id; pushes go to topic `<bundle_id>.voip`.
    pub bundle_id: String,
    /// Apple developer team id (the provider token's `iss`).
    pub team_id: String,
    /// Id of the .p8 signing key (the provider token's `kid`).
    pub key_id: String,
    /// Path of the .p8 key (PKCS#8 PEM, P-256).
    pub key_file: PathBuf,
    /// `production` or `sandbox`.
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// Override of Apple's host (staging, a proxy, a test double); `http://` means h2c.
    pub endpoint: Option<String>,
    /// An extra root certificate (PEM) for the endpoint.
    pub ca_file: Option<PathBuf>,
    /// Send `cancel` events as VoIP pushes too (off: iOS 13+ kills an app that gets a VoIP
    /// push and reports no call to CallKit).
    #[serde(default)]
    pub send_cancel: bool,
    /// HTTP/2 connections kept to Apple for this credential.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// How long one push request may take, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Pushes per second allowed for this credential (none: unlimited).
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// `callpush` (SPEC §6) or `twilio` (the Twilio Voice SDK's format, SPEC §10).
    #[serde(default)]
    pub payload: super::PayloadFormat,
}

impl ApnsCredential {
    /// The endpoint to use: the override, or Apple's host for the environment.
    pub fn endpoint(&self) -> &str {
        match (&self.endpoint, self.environment) {
            (Some(e), _) => e,
            (None, ApnsEnvironment::Production) => "https://api.push.apple.com",
            (None, ApnsEnvironment::Sandbox) => "https://api.sandbox.push.apple.com",
        }
    }
}

/// An FCM HTTP v1 credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmCredential {
    /// Credential SID (`CR…`).
    pub sid: String,
    /// Google's service-account JSON (`project_id`, `client_email`, `private_key`, `token_uri`).
    pub service_account_file: PathBuf,
    /// Override of `https://fcm.googleapis.com`; `http://` means h2c.
    pub base_url: Option<String>,
    /// Override of the service account's `token_uri`.
    pub token_uri: Option<String>,
    /// Override of the service account's `project_id`.
    pub project_id: Option<String>,
    /// An extra root certificate (PEM) for `base_url` and `token_uri`.
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 connections kept to FCM for this credential.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// How long one push request may take, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Pushes per second allowed for this credential (none: unlimited).
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// `callpush` (SPEC §6) or `twilio` (the Twilio Voice SDK's format, SPEC §10).
    #[serde(default)]
    pub payload: super::PayloadFormat,
}

fn default_connections() -> usize {
    2
}

fn default_request_timeout_ms() -> u64 {
    5_000
}
