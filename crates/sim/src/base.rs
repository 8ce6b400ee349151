//! What the APNs and the FCM simulator have in common: how they serve ([`Serving`]), what
//! their connections share besides each provider's own checks ([`Core`]: the scripted answers,
//! the flaky tokens, the recorder, the latency, the ids of answers) and the running simulator
//! ([`Sim`]: the server, scripting, reading back). Each provider adds only its own checks and
//! answers (`apns`, `fcm`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::record::{PushObserver, Recorded, Recorder};
use super::script::Script;
use super::server::{Handler, SimServer, TlsIdentity};
use super::{log_push, Flakes, SimError};

/// How a simulator serves, the same for APNs and FCM.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` each connection advertises (Apple's is 1000).
    pub max_concurrent_streams: u32,
    /// How long every push waits before its answer (Apple's round trip is about 30 ms).
    pub latency: Duration,
    /// Serve TLS (ALPN `h2`) with this certificate instead of h2c.
    pub tls: Option<TlsIdentity>,
    /// Keep every push for `requests()` (on by default); off, only their numbers are kept.
    pub record: bool,
    /// Told of every push as it arrives, when set.
    pub observer: Option<Arc<dyn PushObserver>>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            max_concurrent_streams: 1000,
            latency: Duration::ZERO,
            tls: None,
            record: true,
            observer: None,
        }
    }
}

/// What a simulator's connections share besides the provider's own state; answers are `A`.
pub(super) struct Core<A> {
    pub(super) script: Script<A>,
    pub(super) flakes: Flakes,
    pub(super) recorder: Arc<Recorder>,
    latency: Duration,
    ids: AtomicU64,
}

impl<A: Clone> Core<A> {
    pub(super) fn new(serving: &Serving) -> Core<A> {
        Core {
            script: Script::default(),
            flakes: Flakes::default(),
            recorder: Arc::new(Recorder::new(serving.record, serving.observer.clone())),
            latency: serving.latency,
            ids: AtomicU64::new(1),
        }
    }

    /// The next id of an answer (APNs' `apns-id`, FCM's message name), from 1.
    pub(super) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Log a push's answer in one line and tell the observer.
    pub(super) fn answered(&self, platform: &'static str, about: Pushed<'_>) {
        log_push(
            platform,
            about.token,
            about.kind,
            about.call_sid,
            about.status,
            about.reason,
        );
        self.recorder
            .observe(platform, about.call_sid, about.status);
    }

    /// Keep (or count) a push with its answer.
    pub(super) fn record(&self, request: Recorded) {
        self.recorder.record(request);
    }

    /// Hold the answer for the latency plus the answer's own `delay`.
    pub(super) async fn hold(&self, delay: Duration) {
        let wait = self.latency + delay;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A push and its answer, for the log line and the observer.
pub(super) struct Pushed<'a> {
    pub(super) token: &'a str,
    pub(super) kind: &'a str,
    pub(super) call_sid: &'a str,
    pub(super) status: u16,
    pub(super) reason: &'a str,
}

/// A running simulator of either provider (answers `A`, provider state `S`); it stops, with
/// its connections, when dropped. It dereferences to its [`SimServer`]: URL, connections,
/// recorded pushes.
pub struct Sim<A, S> {
    server: SimServer,
    core: Arc<Core<A>>,
    pub(super) state: Arc<S>,
}

impl<A, S> std::ops::Deref for Sim<A, S> {
    type Target = SimServer;

    /// The server: URL, connections, recorded pushes.
    fn deref(&self) -> &SimServer {
        &self.server
    }
}

impl<A: Clone, S> Sim<A, S> {
    /// Serve `state` (which holds `core`) on 127.0.0.1, port 0.
    pub(super) async fn serve(
        core: Arc<Core<A>>,
        state: Arc<S>,
        serving: &Serving,
    ) -> Result<Sim<A, S>, SimError>
    where
        S: Handler,
    {
        let server = SimServer::start(
            state.clone(),
            core.recorder.clone(),
            serving.tls.as_ref(),
            serving.max_concurrent_streams,
        )
        .await?;
        Ok(Sim {
            server,
            core,
            state,
        })
    }

    /// Answer the next pushes to `token` with `answers`, in order (then as before).
    pub fn script(&self, token: &str, answers: Vec<A>) {
        self.core.script.push(token, answers);
    }

    /// Answer every well-formed push that has no scripted answer with `answer` (instead of the
    /// token prefix's behaviour).
    pub fn set_default(&self, answer: A) {
        self.core.script.set_default(answer);
    }

    /// Answer every push to `token` that has no scripted answer with `answer`.
    pub(super) fn stand(&self, token: &str, answer: A) {
        self.core.script.stand(token, answer);
    }
}
