//! A local stand-in for Google: `oauth2.googleapis.com/token` and `fcm.googleapis.com` on one
//! HTTP/2 (h2c) server on 127.0.0.1, strict the way Google is.
//!
//! The token endpoint verifies the JWT-bearer assertion against the fixture service-account key
//! and issues random access tokens; the messages endpoint checks the bearer, the project and the
//! message like FCM does, then answers from a per-token script, the unregistered set, a default
//! answer, or 200. Every push is recorded for tests to inspect.
//!
//! ```ignore
//! let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
//! let sa = fcm.write_service_account(dir.path());
//! let provider = FcmProvider::new(&fcm.credential("CRfcm", &sa))?;
//! fcm.set_unregistered("dead-token");
//! ```

mod messages;

use super::recorded::read_request;
pub use super::recorded::Recorded;
mod oauth;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use messages::Answer;

/// The fixture service-account key the double trusts.
pub const SA_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fcm_sa_key.pk8.pem"
);
const SA_PUBLIC_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fcm_sa_key.pub.pem"
);

/// How the double starts.
#[derive(Debug, Clone)]
pub struct FcmDoubleOptions {
    /// The Firebase project the double serves.
    pub project_id: String,
    /// The service account allowed to sign in.
    pub client_email: String,
    /// Lifetime of issued access tokens, in seconds.
    pub expires_in: u64,
    /// How long the token endpoint takes to answer.
    pub token_delay: Duration,
}

impl Default for FcmDoubleOptions {
    fn default() -> Self {
        FcmDoubleOptions {
            project_id: "callpush-test".into(),
            client_email: "callpush@callpush-test.iam.gserviceaccount.com".into(),
            expires_in: 3600,
            token_delay: Duration::ZERO,
        }
    }
}

/// One access token the double issued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Issued {
    pub(crate) at: Instant,
    pub(crate) expires: Instant,
}

pub(crate) struct State {
    opts: FcmDoubleOptions,
    token_uri: String,
    expires_in: AtomicU64,
    /// Access tokens issued: when, and until when they are valid.
    issued: Mutex<HashMap<String, Issued>>,
    token_requests: AtomicUsize,
    token_script: Mutex<VecDeque<Answer>>,
    unregistered: Mutex<HashSet<String>>,
    scripts: Mutex<HashMap<String, VecDeque<Answer>>>,
    default: Mutex<Option<Answer>>,
    requests: Mutex<Vec<Recorded>>,
    /// Pushes that arrived, answered or still waiting out their delay.
    arrivals: AtomicUsize,
    pushed: Notify,
    next_id: AtomicU64,
}

/// The running double; stops when dropped.
pub struct FcmDouble {
    url: String,
    state: Arc<State>,
    stop: CancellationToken,
}

impl FcmDouble {
    /// Start on a free port of 127.0.0.1.
    pub async fn start(opts: FcmDoubleOptions) -> FcmDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            expires_in: AtomicU64::new(opts.expires_in),
            opts,
            token_uri: format!("{url}/token"),
            issued: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            token_script: Mutex::default(),
            unregistered: Mutex::default(),
            scripts: Mutex::default(),
            default: Mutex::default(),
            requests: Mutex::default(),
            arrivals: AtomicUsize::new(0),
            pushed: Notify::new(),
            next_id: AtomicU64::new(1),
        });
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, state.clone(), stop.clone()));
        FcmDouble { url, state, stop }
    }

    /// `http://127.0.0.1:<port>`: the credential's `base_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The token endpoint, `<url>/token`.
    pub fn token_uri(&self) -> String {
        self.state.token_uri.clone()
    }

    /// The project id the double serves.
    pub fn project_id(&self) -> String {
        self.state.opts.project_id.clone()
    }

    /// A service-account JSON as Google issues it, with the fixture key and this double's
    /// project, client email and token URI.
    pub fn service_account_json(&self) -> Value {
        let key = std::fs::read_to_string(SA_KEY_FILE).unwrap();
        json!({
            "type": "service_account",
            "project_id": self.state.opts.project_id,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": key,
            "client_email": self.state.opts.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.state.token_uri,
        })
    }

    /// Write [`Self::service_account_json`] to `dir/fcm-service-account.json`.
    pub fn write_service_account(&self, dir: &Path) -> PathBuf {
        write_json(
            dir,
            "fcm-service-account.json",
            &self.service_account_json(),
        )
    }

    /// An FCM credential pointing at this double, for `FcmProvider::new` or a daemon config.
    pub fn credential(
        &self,
        sid: &str,
        service_account_file: &Path,
    ) -> callpush::config::FcmCredential {
        serde_json::from_value(json!({
            "sid": sid,
            "service_account_file": service_account_file,
            "base_url": self.url,
        }))
        .unwrap()
    }

    /// Answer `token` with 404 UNREGISTERED from now on.
    pub fn set_unregistered(&self, token: &str) {
        self.state
            .unregistered
            .lock()
            .unwrap()
            .insert(token.to_string());
    }

    /// Answer the next pushes to `token` with `answers`, in order (then fall back as usual).
    pub fn script(&self, token: &str, answers: Vec<Answer>) {
        let mut scripts = self.state.scripts.lock().unwrap();
        scripts
            .entry(token.to_string())
            .or_default()
            .extend(answers);
    }

    /// Answer unscripted valid pushes with `answer` instead of 200.
    pub fn set_default(&self, answer: Answer) {
        *self.state.default.lock().unwrap() = Some(answer);
    }

    /// Answer the next token requests with `answers` (e.g. 503), in order.
    pub fn script_token(&self, answers: Vec<Answer>) {
        self.state.token_script.lock().unwrap().extend(answers);
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::Relaxed);
    }

    /// Forget every issued access token, as if Google revoked them: the next push gets 401.
    pub fn revoke_tokens(&self) {
        self.state.issued.lock().unwrap().clear();
    }

    /// When the double issued access token `bearer` (`None`: never, or revoked since).
    pub fn issued_at(&self, bearer: &str) -> Option<Instant> {
        self.state.issued.lock().unwrap().get(bearer).map(|i| i.at)
    }

    /// How many requests reached the token endpoint.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Every request to the messages endpoint so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many pushes arrived at the messages endpoint, including those still waiting out a
    /// delayed answer (which [`Self::requests`] lists only once answered).
    pub fn received(&self) -> usize {
        self.state.arrivals.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` pushes arrived, answered or not; false when `timeout` passed
    /// first.
    pub async fn wait_for_received(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.received() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// How many requests reached the messages endpoint.
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Wait until at least `n` pushes arrived; false when `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.pushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() >= n;
            }
        }
    }
}

impl Drop for FcmDouble {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A running double and a provider signed in with its service account.
pub struct FcmSetup {
    /// The double.
    pub fcm: FcmDouble,
    /// An `FcmProvider` for credential `CRfcm`, pointed at the double.
    pub provider: callpush::fcm::FcmProvider,
    /// Holds the service-account file.
    pub dir: tempfile::TempDir,
}

/// Start a double and build a provider for it.
pub async fn start_with_provider(opts: FcmDoubleOptions) -> FcmSetup {
    let fcm = FcmDouble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    let provider = callpush::fcm::FcmProvider::new(&fcm.credential("CRfcm", &sa)).unwrap();
    FcmSetup { fcm, provider, dir }
}

/// An incoming-call push to `token` (with a caller and params), 30 s before its deadline.
pub fn incoming_push(token: &str) -> callpush::domain::Push {
    use callpush::domain::{now_ms, CallContent, PushKind};
    callpush::domain::Push {
        call: Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA0123456789abcdef".into(),
            caller: Some("+15551234567".into()),
            callee: "alice".into(),
            params: Some(r#"{"display":"Bob","room":"42"}"#.into()),
            deadline_ms: now_ms() + 30_000,
            twilio: Vec::new(),
        }),
        device_token: token.into(),
    }
}

/// Write `value` as `dir/name`, e.g. an edited service account.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(state.clone(), req));
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

async fn route(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = read_request(req).await;
    let path = parts.uri.path().to_string();
    let response = if path == "/token" {
        oauth::token(&state, &parts, &body).await
    } else if path.starts_with("/v1/projects/") && path.ends_with("/messages:send") {
        messages::send(&state, &parts, &body).await
    } else {
        google_error(404, "NOT_FOUND", "Requested entity was not found.", vec![])
    };
    Ok(response)
}

/// A response with a JSON body.
fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json; charset=UTF-8");
    if let Some(secs) = retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Google's error shape: `{"error": {"code", "message", "status", "details"}}`.
fn google_error(
    code: u16,
    status: &str,
    message: &str,
    details: Vec<Value>,
) -> Response<Full<Bytes>> {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json_response(code, &json!({ "error": error }), None)
}
