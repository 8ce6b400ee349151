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

pub use crate::domain::ApnsEnvironment;
use crate::domain::ApnsEnvironments;

/// Apple's production host.
pub const APPLE_PRODUCTION_HOST: &str = "https://api.push.apple.com";
/// Apple's sandbox (development) host.
pub const APPLE_SANDBOX_HOST: &str = "https://api.sandbox.push.apple.com";

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
    /// `production` or `sandbox`: where bindings that registered no environment are pushed
    /// first (SPEC §6).
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// The environments the key may push to (Apple scopes new keys to one environment if asked,
    /// since 2025). Default: both — unless only one environment's host is overridden (a proxy,
    /// a staging server or a test double), then only that one, so callpush never goes around
    /// the override to Apple on its own.
    #[serde(default)]
    pub environments: Option<Vec<ApnsEnvironment>>,
    /// Override of Apple's production host (staging, a proxy, a test double); `http://` means
    /// h2c. For a credential whose `environment` is `sandbox` and that has no
    /// `sandbox_endpoint`, the sandbox host, as before callpush pushed to both environments.
    pub endpoint: Option<String>,
    /// Override of Apple's sandbox host; `http://` means h2c.
    pub sandbox_endpoint: Option<String>,
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
    /// The one-host form of earlier versions: a sandbox credential's `endpoint` without a
    /// `sandbox_endpoint` is its sandbox host.
    fn endpoint_is_sandbox(&self) -> bool {
        self.environment == ApnsEnvironment::Sandbox
            && self.sandbox_endpoint.is_none()
            && self.endpoint.is_some()
    }

    /// The configured override of `environment`'s host, if any.
    fn override_of(&self, environment: ApnsEnvironment) -> Option<&str> {
        match environment {
            ApnsEnvironment::Production if self.endpoint_is_sandbox() => None,
            ApnsEnvironment::Production => self.endpoint.as_deref(),
            ApnsEnvironment::Sandbox if self.endpoint_is_sandbox() => self.endpoint.as_deref(),
            ApnsEnvironment::Sandbox => self.sandbox_endpoint.as_deref(),
        }
    }

    /// The host pushes to `environment` go to: the override, or Apple's.
    pub fn endpoint_of(&self, environment: ApnsEnvironment) -> &str {
        self.override_of(environment).unwrap_or(match environment {
            ApnsEnvironment::Production => APPLE_PRODUCTION_HOST,
            ApnsEnvironment::Sandbox => APPLE_SANDBOX_HOST,
        })
    }

    /// The host of the credential's default `environment`.
    pub fn endpoint(&self) -> &str {
        self.endpoint_of(self.environment)
    }

    /// The environments this credential pushes to (see `environments`; validation made sure
    /// the list holds `environment`).
    pub fn environments(&self) -> ApnsEnvironments {
        let other = self.environment.other();
        let allowed = match &self.environments {
            Some(list) => list.contains(&other),
            None => {
                self.override_of(self.environment).is_some() == self.override_of(other).is_some()
            }
        };
        ApnsEnvironments {
            default: self.environment,
            other: allowed.then_some(other),
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
