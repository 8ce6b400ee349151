//! The APNs provider: one credential's pushes, sent as `POST /3/device/{token}` to the host of
//! the push's environment. Each environment the credential may use is a [`Lane`] of its own —
//! a small pool of HTTP/2 connections and a provider token — so a key Apple scoped to one
//! environment never signs for the other, and `ExpiredProviderToken` from one host re-signs
//! only that host's token.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use tracing::{debug, info, warn};

use super::classify::classify;
use super::payload::{self, MAX_VOIP_PAYLOAD};
use super::token::ProviderToken;
use super::ApnsError;
use crate::config::{ApnsCredential, PayloadFormat};
use crate::domain::masked as mask_token;
use crate::domain::{now_ms, ApnsEnvironment, ApnsEnvironments, Platform, Push};
use crate::providers::answer::unanswered;
use crate::providers::{Failure, Outcome, Provider};
use crate::transport::{H2Pool, PoolOptions};

const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");
/// How many headers a push request carries.
const HEADERS: usize = 7;
/// The path of a push, before the device token.
const DEVICE_PATH: &str = "/3/device/";

/// Sends VoIP pushes for one APNs credential.
#[derive(Debug)]
pub struct ApnsProvider {
    sid: String,
    send_cancel: bool,
    /// `<bundle_id>.voip`, built once.
    topic: HeaderValue,
    /// Where the credential may push, the default first.
    environments: ApnsEnvironments,
    /// One lane per environment of `environments`, in the same order.
    lanes: Vec<Lane>,
    /// `payload`: the `callpush` object or the Twilio Voice SDK's top-level `twi_*` fields.
    format: PayloadFormat,
    /// The last `apns-expiration` value sent.
    expiration: Expiration,
}

/// The `apns-expiration` value of the last push, shared by the pushes that expire in the same
/// second — in a burst, nearly all of them — instead of each formatting its own into a new
/// buffer.
#[derive(Debug, Default)]
struct Expiration(Mutex<Option<(u64, HeaderValue)>>);

impl Expiration {
    /// The header value of `seconds` since the Unix epoch.
    fn of(&self, seconds: u64) -> HeaderValue {
        let mut last = self.0.lock().expect("expiration lock");
        match &*last {
            Some((at, value)) if *at == seconds => value.clone(),
            _ => {
                let value = HeaderValue::from(seconds);
                *last = Some((seconds, value.clone()));
                value
            }
        }
    }
}

/// One environment's host: its connections and its provider token.
#[derive(Debug)]
struct Lane {
    environment: ApnsEnvironment,
    token: ProviderToken,
    pool: H2Pool,
}

impl ApnsProvider {
    /// A provider for `cred`: reads and checks the .p8 key (signing a first token), and prepares
    /// a connection pool to the host of each environment the credential may use; connections
    /// open on the first push.
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
        let environments = cred.environments();
        let mut lanes = Vec::with_capacity(2);
        for environment in environments.all() {
            let pool =
                H2Pool::new(cred.endpoint_of(environment), options.clone()).map_err(|source| {
                    ApnsError::Transport {
                        sid: cred.sid.clone(),
                        source,
                    }
                })?;
            let token =
                ProviderToken::new(key.clone(), &cred.key_id, &cred.team_id).map_err(key_err)?;
            lanes.push(Lane {
                environment,
                token,
                pool,
            });
        }
        Ok(ApnsProvider {
            sid: cred.sid.clone(),
            send_cancel: cred.send_cancel,
            format: cred.payload,
            topic,
            environments,
            lanes,
            expiration: Expiration::default(),
        })
    }

    /// How many HTTP/2 connections to Apple are open right now, all environments together.
    pub fn open_connections(&self) -> usize {
        self.lanes.iter().map(|l| l.pool.open_connections()).sum()
    }

    /// The lane of `environment`, when the credential may push there.
    fn lane(&self, environment: ApnsEnvironment) -> Option<&Lane> {
        self.lanes.iter().find(|l| l.environment == environment)
    }

    /// The JSON body of one push, or why it cannot be sent.
    fn body(&self, push: &Push) -> Result<Vec<u8>, Failure> {
        let body = match self.format {
            PayloadFormat::Callpush => payload::body(&push.call),
            PayloadFormat::Twilio => {
                payload::twilio_body(&push.call).map_err(|payload::ApsCollision| {
                    Failure::new(
                        "InvalidPayloadKey",
                        "the Twilio notification has a field `aps`, which is APNs' own key: \
                         it cannot travel unchanged",
                    )
                })?
            }
        };
        if body.len() > MAX_VOIP_PAYLOAD {
            return Err(Failure::new(
                "PayloadTooLarge",
                format!(
                    "APNs payload of {} bytes is over the {MAX_VOIP_PAYLOAD}-byte VoIP limit",
                    body.len()
                ),
            ));
        }
        Ok(body)
    }

    /// The request of one push. Its header map is sized for every header at once (a builder
    /// grows it twice), the constant values are static or shared with the credential, and the
    /// path is written into one string of the right size.
    fn request(
        &self,
        push: &Push,
        body: Vec<u8>,
        authorization: HeaderValue,
    ) -> Result<Request<Bytes>, http::Error> {
        let call = &push.call;
        let mut path = String::with_capacity(DEVICE_PATH.len() + push.device_token.len());
        path.push_str(DEVICE_PATH);
        path.push_str(&push.device_token);
        // A body shorter than its buffer would get a shared header of its own as `Bytes`;
        // trimmed first (in place: mimalloc shrinks a block to no less than half without moving
        // it), it needs none.
        let mut request = Request::new(Bytes::from(body.into_boxed_slice()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::try_from(path)?;
        let headers = request.headers_mut();
        headers.reserve(HEADERS);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(APNS_PUSH_TYPE, HeaderValue::from_static("voip"));
        headers.insert(APNS_TOPIC, self.topic.clone());
        headers.insert(APNS_PRIORITY, HeaderValue::from_static("10"));
        headers.insert(APNS_EXPIRATION, self.expiration.of(call.deadline_ms / 1000));
        headers.insert(
            APNS_COLLAPSE_ID,
            HeaderValue::try_from(payload::collapse_id(&call.call_sid))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(request)
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

    fn environments(&self) -> Option<ApnsEnvironments> {
        Some(self.environments)
    }

    async fn send(&self, push: &Push) -> Outcome {
        let environment = self.environments.of(push.environment);
        let Some(lane) = self.lane(environment) else {
            // A binding registered (or stored) for an environment the key may not use: no push
            // to it can succeed until the configuration allows that environment.
            let failure = Failure::new(
                "EnvironmentNotAllowed",
                format!(
                    "the device is in the APNs {environment} environment, which credential {} \
                     may not push to (its `environments`)",
                    self.sid
                ),
            );
            warn!(credential = %self.sid, device = %mask_token(&push.device_token),
                call_sid = %push.call.call_sid, detail = %failure.detail, "APNs push not sent");
            return Outcome::Rejected(failure);
        };
        let body = match self.body(push) {
            Ok(body) => body,
            Err(failure) => {
                warn!(credential = %self.sid, device = %mask_token(&push.device_token),
                    call_sid = %push.call.call_sid, detail = %failure.detail, "APNs push not sent");
                return Outcome::Rejected(failure);
            }
        };
        let token = lane.token.current();
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
        // A second attempt (the first found its connection closed) builds the same request again.
        let again = || {
            let body = self.body(push).ok()?;
            self.request(push, body, token.authorization.clone()).ok()
        };
        let outcome = match lane.pool.send_rebuilding(request, again).await {
            Ok(resp) => {
                let verdict = classify(resp.status, &resp.headers, &resp.body, now_ms());
                if verdict.renew_auth {
                    lane.token.expired(&token);
                }
                verdict.outcome
            }
            Err(e) => unanswered("APNs", &e),
        };
        log(&self.sid, environment, push, &outcome);
        outcome
    }
}

impl crate::metrics::ProviderProbe for ApnsProvider {
    fn open_connections(&self) -> Vec<(Option<ApnsEnvironment>, usize)> {
        self.lanes
            .iter()
            .map(|l| (Some(l.environment), l.pool.open_connections()))
            .collect()
    }

    fn token_refreshes(&self) -> (u64, u64) {
        self.lanes.iter().fold((0, 0), |(ok, failed), l| {
            let (o, f) = l.token.refreshes.snapshot();
            (ok + o, failed + f)
        })
    }
}

fn log(sid: &str, environment: ApnsEnvironment, push: &Push, outcome: &Outcome) {
    let device = mask_token(&push.device_token);
    let call_sid = &push.call.call_sid;
    let env = environment.as_str();
    match outcome {
        Outcome::Delivered => {
            debug!(credential = %sid, environment = env, %device, %call_sid, "APNs push delivered")
        }
        Outcome::InvalidToken { failure, .. } => {
            info!(credential = %sid, environment = env, %device, %call_sid, detail = %failure.detail,
                "APNs refused the device token")
        }
        Outcome::Retry { failure, .. } | Outcome::OverQuota { failure, .. } => {
            debug!(credential = %sid, environment = env, %device, %call_sid, detail = %failure.detail, "APNs push to retry")
        }
        Outcome::Rejected(failure) => {
            warn!(credential = %sid, environment = env, %device, %call_sid, detail = %failure.detail, "APNs push rejected")
        }
    }
}
