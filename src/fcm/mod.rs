//! The FCM HTTP v1 provider: Android pushes through Firebase Cloud Messaging.
//!
//! One [`FcmProvider`] per FCM credential (one Firebase project). It signs in with the
//! credential's service account ([`account`], [`oauth`]), builds the data message of SPEC §6
//! ([`payload`]), posts it to `{base_url}/v1/projects/{project_id}/messages:send` over a pool of
//! HTTP/2 connections, and lets [`classify`] alone decide what FCM's answer means.

mod account;
mod classify;
mod oauth;
pub mod payload;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use tracing::{debug, info, warn};

use crate::config::{FcmCredential, PayloadFormat};
use crate::domain::masked as mask_token;
use crate::domain::{now_ms, Platform, Push};
use crate::providers::answer::unanswered;
use crate::providers::{Failure, Outcome, Provider};
use crate::transport::{H2Pool, PoolOptions, TransportError};
use account::ServiceAccount;
use oauth::TokenSource;

pub use account::GOOGLE_TOKEN_URI;
pub use oauth::FCM_SCOPE;
use payload::Unsendable;
pub use payload::MAX_DATA_BYTES;

/// FCM's endpoint when the credential sets no `base_url`.
pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";

/// Why an FCM credential cannot be used. Each names the service-account file and the field.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    /// The service-account file could not be read.
    #[error("cannot read FCM service account file {file}: {source}")]
    Read {
        /// The file's path.
        file: String,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or a field has the wrong JSON type.
    #[error("FCM service account file {file} is not valid JSON: {source}")]
    Json {
        /// The file's path.
        file: String,
        /// Where and why parsing failed.
        #[source]
        source: serde_json::Error,
    },
    /// A field the OAuth flow needs is absent or empty.
    #[error("FCM service account file {file} lacks the field `{field}`")]
    MissingField {
        /// The file's path.
        file: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field is present but unusable.
    #[error("FCM service account file {file}: field `{field}` {reason}")]
    BadField {
        /// The file's path.
        file: String,
        /// The bad field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `base_url` or `token_uri` is not a usable endpoint (or the CA file is bad).
    #[error("FCM {setting}: {source}")]
    Endpoint {
        /// `base_url` or `token_uri`.
        setting: &'static str,
        /// What the transport said.
        #[source]
        source: TransportError,
    },
}

/// Pushes to Android devices of one FCM credential.
pub struct FcmProvider {
    sid: String,
    project_id: String,
    pool: Arc<H2Pool>,
    /// Distinct from `pool` only when the token endpoint is on another origin.
    token_pool: Option<Arc<H2Pool>>,
    /// `…/v1/projects/<project>/messages:send`, parsed once.
    send_path: http::Uri,
    tokens: TokenSource,
    /// `payload`: the `callpush` data keys or the Twilio Voice SDK's `twi_*` keys.
    format: PayloadFormat,
}

impl std::fmt::Debug for FcmProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmProvider")
            .field("credential", &self.sid)
            .field("project_id", &self.project_id)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl FcmProvider {
    /// Load the credential's service account and prepare the connection pools (connections
    /// open on the first push; the access token is fetched then too).
    pub fn new(cred: &FcmCredential) -> Result<FcmProvider, FcmError> {
        let account = ServiceAccount::load(
            &cred.service_account_file,
            cred.project_id.as_deref(),
            cred.token_uri.as_deref(),
        )?;
        let options = PoolOptions {
            connections: cred.connections.max(1),
            request_timeout: Duration::from_millis(cred.request_timeout_ms),
            ca_file: cred.ca_file.clone(),
            ..PoolOptions::default()
        };
        let base_url = cred.base_url.as_deref().unwrap_or(FCM_BASE_URL);
        let endpoint = |setting| move |source| FcmError::Endpoint { setting, source };
        let pool = Arc::new(H2Pool::new(base_url, options.clone()).map_err(endpoint("base_url"))?);
        let token_pool = Arc::new(
            H2Pool::new(
                &account.token_uri,
                PoolOptions {
                    connections: 1,
                    ..options
                },
            )
            .map_err(endpoint("token_uri"))?,
        );
        // One origin serving both (a proxy, the test double): one pool is enough.
        let token_pool = (token_pool.origin() != pool.origin()).then_some(token_pool);
        let tokens = TokenSource::new(
            &account,
            token_pool.clone().unwrap_or_else(|| pool.clone()),
            path_of(&account.token_uri, "/"),
        );
        // Sign once now, so a key that parses but cannot sign fails at start, not per push.
        tokens.assertion().map_err(|e| FcmError::BadField {
            file: cred.service_account_file.display().to_string(),
            field: "private_key",
            reason: format!("cannot sign an RS256 assertion: {e}"),
        })?;
        let prefix = path_of(base_url, "");
        let send_path = format!(
            "{}/v1/projects/{}/messages:send",
            prefix.trim_end_matches('/'),
            account.project_id
        );
        let send_path = http::Uri::try_from(send_path).map_err(|e| FcmError::BadField {
            file: cred.service_account_file.display().to_string(),
            field: "project_id",
            reason: format!("does not make a valid URL path with `base_url`: {e}"),
        })?;
        Ok(FcmProvider {
            sid: cred.sid.clone(),
            project_id: account.project_id,
            pool,
            token_pool,
            send_path,
            tokens,
            format: cred.payload,
        })
    }

    /// HTTP/2 connections open right now, to FCM and to the token endpoint.
    pub fn open_connections(&self) -> usize {
        self.pool.open_connections() + self.token_pool.as_ref().map_or(0, |p| p.open_connections())
    }

    /// The request of one push: the path and the authorization are encoded once (per
    /// credential, per access token) and shared by every push.
    fn request(&self, authorization: &HeaderValue, body: Bytes) -> Request<Bytes> {
        let mut request = Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.send_path.clone();
        let headers = request.headers_mut();
        headers.reserve(2);
        headers.insert(header::AUTHORIZATION, authorization.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        request
    }
}

impl crate::metrics::ProviderProbe for FcmProvider {
    fn open_connections(&self) -> Vec<(Option<crate::domain::ApnsEnvironment>, usize)> {
        vec![(None, FcmProvider::open_connections(self))]
    }

    fn token_refreshes(&self) -> (u64, u64) {
        self.tokens.refreshes.snapshot()
    }
}

/// The path of `url` (without query), or `default` when it has none.
fn path_of(url: &str, default: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .map(|u| u.path().to_string())
        .filter(|p| !p.is_empty() && p != "/")
        .unwrap_or_else(|| default.to_string())
}

#[async_trait::async_trait]
impl Provider for FcmProvider {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    fn credential(&self) -> &str {
        &self.sid
    }

    fn sends_cancel(&self) -> bool {
        true
    }

    async fn send(&self, push: &Push) -> Outcome {
        let device = mask_token(&push.device_token);
        let call_sid = push.call.call_sid.as_ref();
        let body = match payload::message(push, self.format, now_ms()) {
            Ok(body) => body,
            Err(unsendable) => {
                let failure = match unsendable {
                    Unsendable::TooBig(bytes) => Failure::new(
                        "MessageTooBig",
                        format!(
                            "FCM data payload of {bytes} bytes is over FCM's {MAX_DATA_BYTES}-byte limit"
                        ),
                    ),
                    Unsendable::ReservedKey(key) => Failure::new(
                        "InvalidDataKey",
                        format!(
                            "the Twilio notification's field {key:?} is a data key FCM forbids \
                             (from, message_type, google…, gcm…): it cannot travel unchanged"
                        ),
                    ),
                };
                warn!(credential = %self.sid, %device, call_sid, detail = %failure.detail, "FCM push not sent");
                return Outcome::Rejected(failure);
            }
        };
        self.send_body(push, body).await
    }
}

impl FcmProvider {
    /// Send `push` with `"validate_only": true`: FCM checks the credential, the project and
    /// the message without delivering anything (`callpush check`). The same classification as
    /// a real push.
    pub async fn validate(&self, push: &Push) -> Outcome {
        let body = payload::message(push, self.format, now_ms()).map(|body| {
            let mut message: serde_json::Value =
                serde_json::from_slice(&body).expect("the payload module writes JSON");
            message["validate_only"] = true.into();
            serde_json::to_vec(&message).expect("a JSON value serializes")
        });
        match body {
            Ok(body) => self.send_body(push, body).await,
            Err(_) => Outcome::Rejected(Failure::new(
                "unsendable",
                "the probe message cannot be built",
            )),
        }
    }

    async fn send_body(&self, push: &Push, body: Vec<u8>) -> Outcome {
        let device = mask_token(&push.device_token);
        let call_sid = push.call.call_sid.as_ref();
        let token = match self.tokens.get().await {
            Ok(token) => token,
            Err(outcome) => {
                warn!(credential = %self.sid, %device, call_sid, outcome = ?outcome, "no FCM access token");
                return outcome;
            }
        };
        let sent_at = now_ms();
        // The body is shared by the first request and any second (the first found its
        // connection closed), which are built each on their own instead of copied.
        let body = Bytes::from(body);
        let again = || Some(self.request(&token.authorization, body.clone()));
        let response = match self
            .pool
            .send_rebuilding(self.request(&token.authorization, body.clone()), again)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                debug!(credential = %self.sid, %device, call_sid, error = %e, "FCM request failed");
                return unanswered("FCM", &e);
            }
        };
        let verdict = classify::classify(&response, sent_at);
        if verdict.renew_auth {
            self.tokens.invalidate(&token);
        }
        match &verdict.outcome {
            Outcome::Delivered => {
                debug!(credential = %self.sid, %device, call_sid, "FCM push delivered")
            }
            Outcome::InvalidToken { failure, .. } => {
                info!(credential = %self.sid, %device, call_sid, reason = %failure.reason, "FCM says the device token is dead")
            }
            Outcome::Retry { failure, .. } => {
                debug!(credential = %self.sid, %device, call_sid, detail = %failure.detail, "FCM push to retry")
            }
            Outcome::OverQuota { failure, pause } => {
                warn!(credential = %self.sid, call_sid, detail = %failure.detail, ?pause,
                    "FCM says the project is over its quota: the credential pauses")
            }
            Outcome::Rejected(failure) => {
                warn!(credential = %self.sid, %device, call_sid, detail = %failure.detail, "FCM rejected the push")
            }
        }
        verdict.outcome
    }
}
