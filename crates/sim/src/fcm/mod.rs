//! The FCM simulator, with Google's token endpoint beside it on one HTTP/2 server:
//! - `POST /token`: the JWT-bearer grant (see `oauth`), traded for an access token;
//! - `POST /v1/projects/<project>/messages:send`: the bearer must be one it issued and
//!   unexpired, the project its own, the message valid (see `messages`); answered with FCM's
//!   statuses and `google.rpc.Status` bodies.
//!
//! What a valid push gets: while the project is over its quota (`exceed_project_quota`), a 429
//! with Google's project-quota details and a `Retry-After`; else the next answer scripted for
//! its token (or FID), else the token's "unregistered" mark, else the default answer, else the
//! token prefix's [`Behaviour`].
//!
//! [`Behaviour`]: super::Behaviour

mod answers;
mod messages;
mod oauth;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::DecodingKey;
use tokio::time::Instant;

pub use answers::Answer;

use super::base::{Core, Serving, Sim};
use super::server::Handler;
use super::SimError;

/// Who the FCM simulator is: the service account it trusts, the project it serves, and how it
/// serves. The default is the development identity of `callpush dev`.
#[derive(Debug, Clone)]
pub struct FcmOptions {
    /// The public half of the service account's key, PEM: assertions are verified with it.
    pub public_key_pem: String,
    /// The Firebase project served.
    pub project_id: String,
    /// The service account allowed to sign in (the assertion's `iss`).
    pub client_email: String,
    /// Lifetime of issued access tokens, in seconds.
    pub expires_in: u64,
    /// How long the token endpoint takes to answer.
    pub token_delay: Duration,
    /// How it serves: streams, latency, TLS, recording.
    pub serve: Serving,
}

impl Default for FcmOptions {
    fn default() -> Self {
        FcmOptions {
            public_key_pem: super::DEV_FCM_PUBLIC_KEY.into(),
            project_id: super::DEV_PROJECT_ID.into(),
            client_email: super::DEV_CLIENT_EMAIL.into(),
            expires_in: 3600,
            token_delay: Duration::ZERO,
            serve: Serving::default(),
        }
    }
}

/// One access token issued.
#[derive(Debug, Clone, Copy)]
struct Issued {
    at: Instant,
    expires: Instant,
}

/// What the FCM simulator's connections share besides the [`Core`]: the key it trusts, the
/// project, the access tokens it issued and what tests set on it. Opaque: reach it through
/// [`FcmSim`].
pub struct State {
    key: DecodingKey,
    project_id: String,
    client_email: String,
    token_delay: Duration,
    token_uri: OnceLock<String>,
    expires_in: AtomicU64,
    issued: Mutex<HashMap<String, Issued>>,
    token_requests: AtomicUsize,
    token_script: Mutex<VecDeque<Answer>>,
    core: Arc<Core<Answer>>,
    /// The project is over its quota until then.
    over_quota_until: Mutex<Option<Instant>>,
}

impl State {
    fn token_uri(&self) -> &str {
        self.token_uri.get().map(String::as_str).unwrap_or_default()
    }

    fn expires_in(&self) -> u64 {
        self.expires_in.load(Ordering::Relaxed)
    }

    fn count_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
    }

    /// The answer of a project over its quota, while it is.
    fn over_quota(&self) -> Option<Answer> {
        let until = (*self.over_quota_until.lock().expect("sim lock"))?;
        let left = until.checked_duration_since(Instant::now())?;
        let secs = left.as_millis().div_ceil(1000).max(1) as u64;
        Some(Answer::project_quota_exceeded(&self.project_id).retry_after(secs))
    }

    /// Whether `bearer` is an access token issued here, unexpired and not revoked.
    fn authorized(&self, bearer: &str) -> bool {
        let issued = self.issued.lock().expect("sim lock");
        issued
            .get(bearer)
            .is_some_and(|i| i.expires > Instant::now())
    }
}

/// A running FCM simulator; it stops, with its connections, when dropped.
pub type FcmSim = Sim<Answer, State>;

impl FcmSim {
    /// Start on 127.0.0.1, port 0.
    pub async fn start(opts: FcmOptions) -> Result<FcmSim, SimError> {
        let key = DecodingKey::from_rsa_pem(opts.public_key_pem.as_bytes())
            .map_err(|e| SimError::Key(format!("the FCM public key: {e}")))?;
        let core = Arc::new(Core::new(&opts.serve));
        let state = Arc::new(State {
            key,
            project_id: opts.project_id,
            client_email: opts.client_email,
            token_delay: opts.token_delay,
            token_uri: OnceLock::new(),
            expires_in: AtomicU64::new(opts.expires_in),
            issued: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            token_script: Mutex::default(),
            core: core.clone(),
            over_quota_until: Mutex::new(None),
        });
        let sim = Sim::serve(core, state, &opts.serve).await?;
        let _ = sim.state.token_uri.set(format!("{}/token", sim.url()));
        Ok(sim)
    }

    /// The token endpoint, `<url>/token`: the service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        self.state.token_uri().to_string()
    }

    /// The Firebase project served.
    pub fn project_id(&self) -> String {
        self.state.project_id.clone()
    }

    /// The service account allowed to sign in.
    pub fn client_email(&self) -> String {
        self.state.client_email.clone()
    }

    /// Answer `token` with 404 UNREGISTERED from now on.
    pub fn set_unregistered(&self, token: &str) {
        self.stand(token, Answer::unregistered());
    }

    /// Answer the next token requests with `answers` (e.g. 503), in order.
    pub fn script_token(&self, answers: Vec<Answer>) {
        self.state
            .token_script
            .lock()
            .expect("sim lock")
            .extend(answers);
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::Relaxed);
    }

    /// Forget every issued access token, as if Google revoked them: the next push gets 401.
    pub fn revoke_tokens(&self) {
        self.state.issued.lock().expect("sim lock").clear();
    }

    /// When access token `bearer` was issued (`None`: never, or revoked since).
    pub fn issued_at(&self, bearer: &str) -> Option<Instant> {
        let issued = self.state.issued.lock().expect("sim lock");
        issued.get(bearer).map(|i| i.at)
    }

    /// Play a project over its messages-per-minute quota for `window` from now: every valid push
    /// meanwhile gets [`Answer::project_quota_exceeded`] with `Retry-After` = the seconds left
    /// (rounded up).
    pub fn exceed_project_quota(&self, window: Duration) {
        *self.state.over_quota_until.lock().expect("sim lock") = Some(Instant::now() + window);
    }

    /// How many requests reached the token endpoint.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Handler for State {
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
        let path = parts.uri.path();
        if path == "/token" {
            oauth::token(self, &parts, &body).await
        } else if path.starts_with("/v1/projects/") && path.ends_with("/messages:send") {
            messages::send(self, &parts, &body).await
        } else {
            let error = serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND",
                "message": "Requested entity was not found."}});
            super::server::json(StatusCode::NOT_FOUND, &error, None)
        }
    }
}
