//! The simulators together, as `callpush dev` and the benchmark start them: APNs' production
//! and sandbox hosts, and FCM.

use std::sync::Arc;
use std::time::Duration;

use super::{ApnsOptions, ApnsSim, FcmOptions, FcmSim, PushObserver, SimError};
use crate::Environment;

/// How [`Simulators::start_with`] starts both simulators.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// How long every push waits before its answer, on both (e.g. 30 ms for Apple's round
    /// trip); this overrides the two options' own `latency` unless zero.
    pub latency: Duration,
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` of every connection, on both (0: each options'
    /// own, 1000 by default).
    pub max_concurrent_streams: u32,
    /// Keep every push for `requests()` on both. Off by default: a dev session or a benchmark
    /// runs long, and counts (`count`, `received`) are kept either way.
    pub record: bool,
    /// Told of every push on both as it arrives (the benchmark's latency), when set.
    pub observer: Option<Arc<dyn PushObserver>>,
    /// The APNs simulators (identity, TLS, …); the default is the development identity. Its
    /// `environment` is ignored: one simulator plays each environment.
    pub apns: ApnsOptions,
    /// The FCM simulator; the default is the development identity.
    pub fcm: FcmOptions,
}

/// The simulators, running until dropped.
pub struct Simulators {
    apns: ApnsSim,
    apns_sandbox: ApnsSim,
    fcm: FcmSim,
}

impl std::fmt::Debug for Simulators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulators")
            .field("apns", &self.apns.url())
            .field("apns_sandbox", &self.apns_sandbox.url())
            .field("fcm", &self.fcm.url())
            .finish()
    }
}

impl Simulators {
    /// Start both on 127.0.0.1, port 0, with the development identities, answering at once,
    /// counting pushes without keeping them.
    pub async fn start() -> std::io::Result<Simulators> {
        Self::start_with(SimOptions::default())
            .await
            .map_err(std::io::Error::other)
    }

    /// Start both on 127.0.0.1, port 0, as `opts` says.
    pub async fn start_with(opts: SimOptions) -> Result<Simulators, SimError> {
        let SimOptions {
            latency,
            max_concurrent_streams,
            record,
            observer,
            mut apns,
            mut fcm,
        } = opts;
        for serve in [&mut apns.serve, &mut fcm.serve] {
            serve.record = record;
            if observer.is_some() {
                serve.observer = observer.clone();
            }
            if !latency.is_zero() {
                serve.latency = latency;
            }
            if max_concurrent_streams > 0 {
                serve.max_concurrent_streams = max_concurrent_streams;
            }
        }
        let sandbox = ApnsOptions {
            environment: Environment::Sandbox,
            ..apns.clone()
        };
        apns.environment = Environment::Production;
        Ok(Simulators {
            apns: ApnsSim::start(apns).await?,
            apns_sandbox: ApnsSim::start(sandbox).await?,
            fcm: FcmSim::start(fcm).await?,
        })
    }

    /// The APNs production endpoint (an APNs credential's `endpoint`).
    pub fn apns_endpoint(&self) -> String {
        self.apns.url()
    }

    /// The APNs sandbox endpoint (an APNs credential's `sandbox_endpoint`).
    pub fn apns_sandbox_endpoint(&self) -> String {
        self.apns_sandbox.url()
    }

    /// The FCM base URL (an FCM credential's `base_url`).
    pub fn fcm_base_url(&self) -> String {
        self.fcm.url()
    }

    /// The OAuth token endpoint (the service account's `token_uri`).
    pub fn token_uri(&self) -> String {
        self.fcm.token_uri()
    }

    /// The APNs production simulator, to script or read back.
    pub fn apns(&self) -> &ApnsSim {
        &self.apns
    }

    /// The APNs sandbox simulator, to script or read back.
    pub fn apns_sandbox(&self) -> &ApnsSim {
        &self.apns_sandbox
    }

    /// The FCM simulator, to script or read back.
    pub fn fcm(&self) -> &FcmSim {
        &self.fcm
    }
}
