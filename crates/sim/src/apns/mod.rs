//! The APNs simulator: `POST /3/device/<token>` checked as `api.push.apple.com` checks it (see
//! `checks`), answered with Apple's statuses, `{"reason": …}` bodies and an `apns-id`.
//!
//! What a well-formed push gets: the next answer scripted for its token, else the token's
//! "unregistered" mark, else the default answer, else the token prefix's [`Behaviour`].

mod answers;
mod checks;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::Full;
use serde_json::Value;

pub use answers::Answer;

use super::base::{Core, Pushed, Serving, Sim};
use super::record::Recorded;
use super::server::Handler;
use super::{Behaviour, SimError, SANDBOX_PREFIX};
use crate::Environment;

/// Who the APNs simulator is: the key, team, key id and topic it accepts, and how it serves.
/// The default is the development identity of `callpush dev`.
#[derive(Debug, Clone)]
pub struct ApnsOptions {
    /// The public half of the signing key, PEM: provider tokens are verified with it.
    pub public_key_pem: String,
    /// The provider token's `iss`.
    pub team_id: String,
    /// The provider token's `kid`.
    pub key_id: String,
    /// The `apns-topic` pushes must carry (`<bundle id>.voip` for VoIP pushes).
    pub topic: String,
    /// The environment this simulator plays: tokens of the other ([`SANDBOX_PREFIX`]) get
    /// `400 BadDeviceToken`.
    pub environment: Environment,
    /// How it serves: streams, latency, TLS, recording.
    pub serve: Serving,
}

impl Default for ApnsOptions {
    fn default() -> Self {
        ApnsOptions {
            public_key_pem: super::DEV_APNS_PUBLIC_KEY.into(),
            team_id: super::DEV_TEAM_ID.into(),
            key_id: super::DEV_KEY_ID.into(),
            topic: format!("{}.voip", super::DEV_BUNDLE_ID),
            environment: Environment::Production,
            serve: Serving::default(),
        }
    }
}

/// What the APNs simulator's connections share besides the [`Core`]: its checks, its
/// environment and what tests set on it. Opaque: reach it through [`ApnsSim`].
pub struct State {
    checker: checks::Checker,
    environment: Environment,
    /// Answer every push `403 BadEnvironmentKeyInToken`: the key is scoped to the other
    /// environment.
    key_elsewhere: AtomicBool,
    /// Provider tokens issued before this second are expired (0: none).
    expire_before: AtomicU64,
    core: Arc<Core<Answer>>,
}

/// A running APNs simulator; it stops, with its connections, when dropped.
pub type ApnsSim = Sim<Answer, State>;

impl ApnsSim {
    /// Start on 127.0.0.1, port 0.
    pub async fn start(opts: ApnsOptions) -> Result<ApnsSim, SimError> {
        let core = Arc::new(Core::new(&opts.serve));
        let state = Arc::new(State {
            checker: checks::Checker::new(&opts)?,
            environment: opts.environment,
            key_elsewhere: AtomicBool::new(false),
            expire_before: AtomicU64::new(0),
            core: core.clone(),
        });
        Sim::serve(core, state, &opts.serve).await
    }

    /// Answer 410 Unregistered (with this timestamp) to every push to `token`.
    pub fn set_unregistered(&self, token: &str, timestamp_ms: u64) {
        self.stand(token, Answer::unregistered(timestamp_ms));
    }

    /// Treat provider tokens issued before `iat_secs` (epoch seconds) as expired: 403
    /// ExpiredProviderToken until the client signs a newer one.
    pub fn expire_provider_tokens_before(&self, iat_secs: u64) {
        self.state.expire_before.store(iat_secs, Ordering::SeqCst);
    }

    /// The environment this simulator plays.
    pub fn environment(&self) -> Environment {
        self.state.environment
    }

    /// From now on, refuse every push with `403 BadEnvironmentKeyInToken`, as Apple does for a
    /// key scoped to the other environment (`false`: accept the key again).
    pub fn scope_key_elsewhere(&self, elsewhere: bool) {
        self.state.key_elsewhere.store(elsewhere, Ordering::SeqCst);
    }

    /// The distinct provider tokens seen, in order of first use.
    pub fn distinct_jwts(&self) -> Vec<String> {
        self.distinct_bearers()
    }
}

impl State {
    /// The answer to a well-formed push to `token`.
    fn answer(&self, token: &str, payload: &Value) -> Answer {
        if token == crate::PROBE_TOKEN {
            return Answer::error(400, "BadDeviceToken");
        }
        if self.key_elsewhere.load(Ordering::SeqCst) {
            return Answer::error(403, "BadEnvironmentKeyInToken");
        }
        if let Some(answer) = self.core.script.next(token) {
            return answer;
        }
        let lower = token.to_ascii_lowercase();
        let (environment, rest) = match lower.strip_prefix(SANDBOX_PREFIX) {
            Some(rest) => (Environment::Sandbox, rest),
            None => (Environment::Production, lower.as_str()),
        };
        if environment != self.environment {
            return Answer::error(400, "BadDeviceToken");
        }
        let (kind, call_sid) = about(payload);
        match self.core.flakes.answer(rest, kind, call_sid) {
            Behaviour::Accept => Answer::ok(),
            Behaviour::Gone => Answer::unregistered(crate::now_ms()),
            Behaviour::Reject => Answer::error(400, "TopicDisallowed"),
            Behaviour::Flaky => Answer::error(503, "ServiceUnavailable"),
        }
    }
}

/// The push type and call of a callpush payload, for the log line (`?` when absent).
fn about(payload: &Value) -> (&str, &str) {
    let of = |key: &str| payload["callpush"][key].as_str().unwrap_or("?");
    (of("type"), of("call_sid"))
}

#[async_trait::async_trait]
impl Handler for State {
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
        let received_at = Instant::now();
        self.core.recorder.arrive();
        let path = parts.uri.path();
        let token = checks::device_token(path).unwrap_or("").to_string();
        let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let now_secs = crate::now_ms() / 1000;
        let expire_before = self.expire_before.load(Ordering::SeqCst);
        let answer = match self.checker.check(
            &parts.method,
            path,
            &parts.headers,
            &body,
            now_secs,
            expire_before,
        ) {
            Err((status, reason)) => Answer::error(status, reason),
            Ok(()) => self.answer(&token, &payload),
        };
        let (kind, call_sid) = about(&payload);
        let reason = answer.reason.as_deref().unwrap_or("");
        let pushed = Pushed {
            token: &token,
            kind,
            call_sid,
            status: answer.status,
            reason,
        };
        self.core.answered("APNs", pushed);
        self.core.record(Recorded::new(
            token,
            path,
            &parts.headers,
            body,
            received_at,
            answer.status,
        ));
        self.core.hold(answer.delay).await;
        answer.respond(&parts.headers, self.core.next_id())
    }
}
