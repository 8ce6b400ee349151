//! A local stand-in for `api.push.apple.com`: a real HTTP/2 server (h2c, or TLS with ALPN `h2`
//! and the test CA's localhost certificate) that checks requests as Apple does — method, path,
//! device token, ES256 provider token, topic, push type, priority, expiration, collapse id and
//! payload — and answers with Apple's statuses, `{"reason": …}` bodies and an `apns-id` header.
//!
//! Tests script it (a dead token, a sequence of answers per device, a default answer, slow
//! answers, expired provider tokens, dropped connections) and read back every request it got.
//!
//! ```ignore
//! let apns = ApnsDouble::start(DoubleOptions::default()).await;
//! let provider = ApnsProvider::new(&apns.credential("CRapns"))?;
//! apns.script(&token, vec![Answer::error(503, "ServiceUnavailable"), Answer::ok()]);
//! ```

mod checks;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use server::{accept_loop, tls_acceptor, Script, State};

pub use super::fixtures::fixture;
pub use super::recorded::Recorded;

/// Who the double is: the one topic, team and key it accepts.
#[derive(Debug, Clone)]
pub struct DoubleOptions {
    /// The `apns-topic` pushes must carry (`<bundle_id>.voip`).
    pub topic: String,
    /// The provider token's `iss`.
    pub team_id: String,
    /// The provider token's `kid`.
    pub key_id: String,
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` each connection advertises (Apple's is 1000).
    pub max_concurrent_streams: u32,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        DoubleOptions {
            topic: "com.example.app.voip".into(),
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            max_concurrent_streams: 1000,
        }
    }
}

/// How the double answers one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Apple's `reason` (none for 200).
    pub reason: Option<String>,
    /// The 410 body's `timestamp` (ms since the epoch).
    pub timestamp: Option<u64>,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// How long to wait before answering (a slow Apple).
    pub delay: Duration,
}

impl Answer {
    /// 200, accepted.
    pub fn ok() -> Self {
        Answer {
            status: 200,
            reason: None,
            timestamp: None,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// An error status with Apple's reason, e.g. `Answer::error(503, "ServiceUnavailable")`.
    pub fn error(status: u16, reason: &str) -> Self {
        Answer {
            status,
            reason: Some(reason.to_string()),
            ..Answer::ok()
        }
    }

    /// 410 Unregistered, judged dead at `timestamp_ms`.
    pub fn unregistered(timestamp_ms: u64) -> Self {
        Answer {
            timestamp: Some(timestamp_ms),
            ..Answer::error(410, "Unregistered")
        }
    }

    /// This answer with a `Retry-After: <secs>` header.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// This answer, given only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The running double; it stops when dropped.
pub struct ApnsDouble {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    accept: AbortHandle,
}

impl Drop for ApnsDouble {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill_connections();
    }
}

impl ApnsDouble {
    /// Start an h2c (HTTP/2 without TLS) double on 127.0.0.1, port chosen by the system.
    pub async fn start(opts: DoubleOptions) -> Self {
        Self::start_inner(opts, None).await
    }

    /// Start a TLS double (ALPN `h2`, `tests/fixtures/localhost.pem`, signed by `test_ca.pem`).
    pub async fn start_tls(opts: DoubleOptions) -> Self {
        Self::start_inner(opts, Some(tls_acceptor())).await
    }

    async fn start_inner(opts: DoubleOptions, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let max_streams = opts.max_concurrent_streams;
        let state = Arc::new(State {
            checker: checks::Checker::new(opts),
            max_streams,
            script: Mutex::new(Script::default()),
            count: watch::channel(0).0,
            goaway: watch::channel(0).0,
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        });
        let is_tls = tls.is_some();
        let accept = tokio::spawn(accept_loop(listener, tls, state.clone())).abort_handle();
        ApnsDouble {
            addr,
            tls: is_tls,
            state,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>` (or `https://…` for the TLS double).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// An APNs credential pointed at this double with the fixture key, bundle id
    /// `com.example.app`, team `TEAM123456`, key `KEY1234567` (and the test CA for TLS).
    pub fn credential(&self, sid: &str) -> callpush::config::ApnsCredential {
        callpush::config::ApnsCredential {
            sid: sid.to_string(),
            bundle_id: "com.example.app".into(),
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            key_file: fixture("apns_auth_key.p8"),
            environment: Default::default(),
            endpoint: Some(self.url()),
            ca_file: self.tls.then(|| fixture("test_ca.pem")),
            send_cancel: false,
            connections: 2,
            request_timeout_ms: 5_000,
            rate_limit_per_sec: None,
            payload: Default::default(),
        }
    }

    /// Answer 410 Unregistered (with this timestamp) to every push to `token`.
    pub fn set_unregistered(&self, token: &str, timestamp_ms: u64) {
        let mut s = self.state.script.lock().unwrap();
        s.unregistered.insert(token.to_string(), timestamp_ms);
    }

    /// Answer the next pushes to `token` with `answers`, in order (then as before).
    pub fn script(&self, token: &str, answers: Vec<Answer>) {
        let mut s = self.state.script.lock().unwrap();
        s.per_token
            .entry(token.to_string())
            .or_default()
            .extend(answers);
    }

    /// Answer every well-formed push that has no scripted answer with `answer` (instead of 200).
    pub fn set_default(&self, answer: Answer) {
        self.state.script.lock().unwrap().default = Some(answer);
    }

    /// Treat provider tokens issued before `iat_secs` (epoch seconds) as expired: 403
    /// ExpiredProviderToken until the client signs a newer one.
    pub fn expire_provider_tokens_before(&self, iat_secs: u64) {
        self.state.script.lock().unwrap().expire_before = iat_secs;
    }

    /// Send GOAWAY on every open connection (in-flight streams finish; new ones must use a new
    /// connection), as Apple does when it rotates servers.
    pub fn goaway_all(&self) {
        self.state.goaway.send_modify(|g| *g += 1);
    }

    /// Drop every open connection at once, without GOAWAY (a network failure).
    pub fn kill_connections(&self) {
        for conn in self.state.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// How many connections the double has accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.script.lock().unwrap().requests.clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        *self.state.count.borrow()
    }

    /// Wait until at least `n` requests were received; false when `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.state.count.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        reached.is_ok()
    }

    /// The distinct provider tokens seen, in order of first use.
    pub fn distinct_jwts(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for r in self.state.script.lock().unwrap().requests.iter() {
            if let Some(jwt) = r.bearer.as_deref() {
                if !seen.iter().any(|s| s == jwt) {
                    seen.push(jwt.to_string());
                }
            }
        }
        seen
    }
}
