//! The APNs provider: one credential's pushes, sent as `POST /3/device/{token}` over a small
//! pool of HTTP/2 connections with the shared provider token.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request};
use tracing::{debug, info, warn};

use super::classify::classify;
use super::payload::{self, MAX_VOIP_PAYLOAD};
use super::token::ProviderToken;
use super::ApnsError;
use crate::config::{ApnsCredential, PayloadFormat};
use crate::domain::mask_device_token as mask_token;
use crate::domain::{now_ms, Platform, Push};
use crate::providers::answer::unanswered;
use crate::providers::{Failure, Outcome, Provider};
use crate::transport::{H2Pool, PoolOptions};

const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");

/// Sends VoIP pushes for one APNs credential.
#[derive(Debug)]
pub struct ApnsProvider {
    sid: String,
    send_cancel: bool,
    /// `<bundle_id>.voip`, built once.
    topic: HeaderValue,
    token: ProviderToken,
    pool: H2Pool,
    /// `payload`: the `callpush` object or the Twilio Voice SDK's top-level `twi_*` fields.
    format: PayloadFormat,
}

impl ApnsProvider {
    /// A provider for `cred`: reads and checks the .p8 key (signing a first token), and prepares
    /// the connection pool to `cred.endpoint()`; connections open on the first push.
    pub fn new(cred: &ApnsCredential) -> Result<ApnsProvider, ApnsError> {
        let pem = std::fs::read(&cred.key_file).map_err(|source| ApnsError::KeyFile {
            sid: cred.sid.clone(),
            path: cred.key_file.clone(),
            source,
        })?;
        let key_err = |source| ApnsError::Key {
            sid: cred.sid.clone(),
            path: cred.key_file.clone(),
            key_id: cred.key_id.clone(),
            source,
        };
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).map_err(key_err)?;
        let token = ProviderToken::new(key, &cred.key_id, &cred.team_id).map_err(key_err)?;
        let topic = HeaderValue::try_from(format!("{}.voip", cred.bundle_id)).map_err(|_| {
            ApnsError::Topic {
                sid: cred.sid.clone(),
                bundle_id: cred.bundle_id.clone(),
            }
        })?;
        let options = PoolOptions {
            connections: cred.connections,
            request_timeout: Duration::from_millis(cred.request_timeout_ms),
            ca_file: cred.ca_file.clone(),
            ..PoolOptions::default()
        };
        let pool =
            H2Pool::new(cred.endpoint(), options).map_err(|source| ApnsError::Transport {
                sid: cred.sid.clone(),
                source,
            })?;
        Ok(ApnsProvider {
            sid: cred.sid.clone(),
            send_cancel: cred.send_cancel,
            format: cred.payload,
            topic,
            token,
            pool,
        })
    }

    /// How many HTTP/2 connections to Apple are open right now.
    pub fn open_connections(&self) -> usize {
        self.pool.open_connections()
    }

    fn request(
        &self,
        push: &Push,
        body: Vec<u8>,
        authorization: HeaderValue,
    ) -> Result<Request<Bytes>, http::Error> {
        let call = &push.call;
        Request::builder()
            .method(Method::POST)
            .uri(format!("/3/device/{}", push.device_token))
            .header(AUTHORIZATION, authorization)
            .header(APNS_PUSH_TYPE, HeaderValue::from_static("voip"))
            .header(APNS_TOPIC, self.topic.clone())
            .header(APNS_PRIORITY, HeaderValue::from_static("10"))
            .header(APNS_EXPIRATION, call.deadline_ms / 1000)
            .header(APNS_COLLAPSE_ID, payload::collapse_id(&call.call_sid))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Bytes::from(body))
    }
}

#[async_trait::async_trait]
impl Provider for ApnsProvider {
    fn platform(&self) -> Platform {
        Platform::Apns
    }

    fn credential(&self) -> &str {
        &self.sid
    }

    fn sends_cancel(&self) -> bool {
        self.send_cancel
    }

    async fn send(&self, push: &Push) -> Outcome {
        let body = match self.format {
            PayloadFormat::Callpush => payload::body(&push.call),
            PayloadFormat::Twilio => match payload::twilio_body(&push.call) {
                Ok(body) => body,
                Err(payload::ApsCollision) => {
                    let failure = Failure::new(
                        "InvalidPayloadKey",
                        "the Twilio notification has a field `aps`, which is APNs' own key: \
                         it cannot travel unchanged",
                    );
                    warn!(credential = %self.sid, device = %mask_token(&push.device_token),
                        call_sid = %push.call.call_sid, detail = %failure.detail, "APNs push not sent");
                    return Outcome::Rejected(failure);
                }
            },
        };
        if body.len() > MAX_VOIP_PAYLOAD {
            let failure = Failure::new(
                "PayloadTooLarge",
                format!(
                    "APNs payload of {} bytes is over the {MAX_VOIP_PAYLOAD}-byte VoIP limit",
                    body.len()
                ),
            );
            warn!(credential = %self.sid, device = %mask_token(&push.device_token),
                call_sid = %push.call.call_sid, detail = %failure.detail, "APNs push not sent");
            return Outcome::Rejected(failure);
        }
        let token = self.token.current();
        let request = match self.request(push, body, token.authorization.clone()) {
            Ok(request) => request,
            // Only the device token can make the request invalid (the rest is checked in `new`):
            // no push to it can ever succeed, as Apple would say.
            Err(_) => {
                return Outcome::InvalidToken {
                    failure: Failure::new(
                        "BadDeviceToken",
                        "APNs device token is not a valid URL path segment",
                    ),
                    judged_at_ms: now_ms(),
                }
            }
        };
        let outcome = match self.pool.send(request).await {
            Ok(resp) => {
                let verdict = classify(resp.status, &resp.headers, &resp.body, now_ms());
                if verdict.renew_auth {
                    self.token.expired(&token);
                }
                verdict.outcome
            }
            Err(e) => unanswered("APNs", &e),
        };
        log(&self.sid, push, &outcome);
        outcome
    }
}

impl crate::metrics::ProviderProbe for ApnsProvider {
    fn open_connections(&self) -> usize {
        self.pool.open_connections()
    }

    fn token_refreshes(&self) -> (u64, u64) {
        self.token.refreshes.snapshot()
    }
}

fn log(sid: &str, push: &Push, outcome: &Outcome) {
    let device = mask_token(&push.device_token);
    let call_sid = &push.call.call_sid;
    match outcome {
        Outcome::Delivered => debug!(credential = %sid, %device, %call_sid, "APNs push delivered"),
        Outcome::InvalidToken { failure, .. } => {
            info!(credential = %sid, %device, %call_sid, detail = %failure.detail, "APNs device token is dead")
        }
        Outcome::Retry { failure, .. } => {
            debug!(credential = %sid, %device, %call_sid, detail = %failure.detail, "APNs push to retry")
        }
        Outcome::Rejected(failure) => {
            warn!(credential = %sid, %device, %call_sid, detail = %failure.detail, "APNs push rejected")
        }
    }
}
