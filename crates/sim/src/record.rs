//! What a simulator received: every push request with its headers, body, bearer, arrival time
//! and answer, the same type for APNs and FCM, and waiters for a number of arrivals.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use tokio::sync::watch;

/// One push request a simulator received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The device the push was for: APNs' token from the path, FCM's `message.token` or
    /// `message.fid` (empty when the body had neither).
    pub token: String,
    /// The request's path.
    pub path: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The body, parsed (`Value::Null` when it was not JSON).
    pub body: Value,
    /// The body as sent.
    pub raw_body: Bytes,
    /// The `authorization: Bearer …` credential: APNs' provider token (a JWT), FCM's OAuth
    /// access token.
    pub bearer: Option<String>,
    /// When it arrived (before any delay or latency).
    pub received_at: Instant,
    /// The HTTP status the simulator answered.
    pub status: u16,
}

impl Recorded {
    /// A request for `token` to `path` with these headers and body, answered with `status`.
    pub fn new(
        token: String,
        path: &str,
        headers: &HeaderMap,
        raw_body: Bytes,
        received_at: Instant,
        status: u16,
    ) -> Recorded {
        Recorded {
            token,
            path: path.to_string(),
            headers: headers.clone(),
            body: serde_json::from_slice(&raw_body).unwrap_or(Value::Null),
            raw_body,
            bearer: bearer(headers).map(str::to_string),
            received_at,
            status,
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The credential of `authorization: Bearer <credential>` (the scheme in any case).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credential.trim())
}

/// Sees every push a simulator answers, when it arrives (the load benchmark computes the
/// latency XADD → push at the simulator with it).
pub trait PushObserver: Send + Sync + std::fmt::Debug + 'static {
    /// A push to `platform` (`APNs` or `FCM`) for `call_sid` arrived and is answered `status`.
    fn pushed(&self, platform: &'static str, call_sid: &str, status: u16);
}

/// The pushes one simulator received: those that arrived (answered or still waiting out a
/// delay) and those recorded; with `keep` off only their numbers, so a long run (a dev
/// session, a benchmark) does not hold every push in memory.
#[derive(Debug)]
pub(super) struct Recorder {
    keep: bool,
    observer: Option<Arc<dyn PushObserver>>,
    requests: Mutex<Vec<Recorded>>,
    recorded: watch::Sender<usize>,
    arrived: watch::Sender<usize>,
}

impl Recorder {
    pub(super) fn new(keep: bool, observer: Option<Arc<dyn PushObserver>>) -> Recorder {
        Recorder {
            keep,
            observer,
            requests: Mutex::new(Vec::new()),
            recorded: watch::channel(0).0,
            arrived: watch::channel(0).0,
        }
    }

    /// A push arrived (it is recorded once its answer is known).
    pub(super) fn arrive(&self) {
        self.arrived.send_modify(|n| *n += 1);
    }

    /// Tell the observer, if any, of a push that arrived and its answer.
    pub(super) fn observe(&self, platform: &'static str, call_sid: &str, status: u16) {
        if let Some(observer) = &self.observer {
            observer.pushed(platform, call_sid, status);
        }
    }

    /// Record a push (only count it without `keep`).
    pub(super) fn record(&self, request: Recorded) {
        if self.keep {
            self.requests.lock().expect("sim lock").push(request);
        }
        self.recorded.send_modify(|n| *n += 1);
    }

    pub(super) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("sim lock").clone()
    }

    pub(super) fn count(&self) -> usize {
        *self.recorded.borrow()
    }

    pub(super) fn arrived(&self) -> usize {
        *self.arrived.borrow()
    }

    /// Wait until `n` pushes were recorded; false when `timeout` passed first.
    pub(super) async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        reach(&self.recorded, n, timeout).await
    }

    /// Wait until `n` pushes arrived; false when `timeout` passed first.
    pub(super) async fn wait_for_arrived(&self, n: usize, timeout: Duration) -> bool {
        reach(&self.arrived, n, timeout).await
    }

    /// The distinct bearer credentials seen, in order of first use.
    pub(super) fn distinct_bearers(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for r in self.requests.lock().expect("sim lock").iter() {
            if let Some(b) = r.bearer.as_deref() {
                if !seen.iter().any(|s| s == b) {
                    seen.push(b.to_string());
                }
            }
        }
        seen
    }
}

async fn reach(counter: &watch::Sender<usize>, n: usize, timeout: Duration) -> bool {
    let mut rx = counter.subscribe();
    let reached = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
    reached.is_ok()
}
