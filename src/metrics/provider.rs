//! Metrics at the provider boundary: [`MeteredProvider`] counts and times every provider request
//! (the one place `callpush_pushes_total`, `callpush_push_duration_seconds` and
//! `callpush_pushes_in_flight` are emitted), and [`ProviderProbe`] is what the sampler reads
//! from a provider (open connections, token refreshes) — plain numbers, so provider code holds
//! no Prometheus types.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use super::{environment_index, environment_labels, CredentialHandles, Metrics};
use crate::domain::{ApnsEnvironment, ApnsEnvironments, Platform, Push};
use crate::providers::{Outcome, Provider};

/// Counts a provider's token refreshes (APNs re-signs, FCM OAuth fetches), read by the sampler.
#[derive(Debug, Default)]
pub struct RefreshCounter {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl RefreshCounter {
    /// A refresh succeeded.
    pub fn succeeded(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// A refresh failed.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// `(succeeded, failed)` since start.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// What the sampler reads from a provider every few seconds.
pub trait ProviderProbe: Provider {
    /// HTTP/2 connections open right now, per APNs environment (FCM: one entry, `None`).
    fn open_connections(&self) -> Vec<(Option<ApnsEnvironment>, usize)>;
    /// Token refreshes since start, `(succeeded, failed)`.
    fn token_refreshes(&self) -> (u64, u64);
}

/// A provider whose requests are counted and timed. The dispatcher sees it as any provider.
pub struct MeteredProvider {
    inner: Arc<dyn Provider>,
    handles: Option<CredentialHandles>,
    pushes: IntCounterVec,
    in_flight: super::Sharded<IntGauge>,
    fallback_duration: prometheus::HistogramVec,
}

impl MeteredProvider {
    /// Wrap `inner`, with the handles of its credential resolved now.
    pub fn new(inner: Arc<dyn Provider>, metrics: &Metrics) -> MeteredProvider {
        MeteredProvider {
            handles: metrics.credential(inner.credential()),
            inner,
            pushes: metrics.pushes.any().clone(),
            in_flight: metrics.in_flight.clone(),
            fallback_duration: metrics.push_duration.any().clone(),
        }
    }

    /// The APNs environment a push goes to (what the provider does with `push.environment`).
    fn environment(&self, push: &Push) -> Option<ApnsEnvironment> {
        self.inner
            .environments()
            .map(|envs: ApnsEnvironments| envs.of(push.environment))
    }

    fn labelled(
        &self,
        environment: Option<ApnsEnvironment>,
        outcome: &str,
        reason: &str,
    ) -> IntCounter {
        let platform = self.inner.platform();
        let env = environment_labels(platform)[environment_index(environment)];
        self.pushes.with_label_values(&[
            platform.as_str(),
            self.inner.credential(),
            env,
            outcome,
            reason,
        ])
    }
}

/// Keeps `callpush_pushes_in_flight` right when the dispatcher drops a request at its deadline.
/// The thread that ends the request counts it down in its own copy (see [`super::sharded`]).
struct InFlight<'a>(&'a super::Sharded<IntGauge>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.local().dec();
    }
}

#[async_trait::async_trait]
impl Provider for MeteredProvider {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    fn credential(&self) -> &str {
        self.inner.credential()
    }

    fn sends_cancel(&self) -> bool {
        self.inner.sends_cancel()
    }

    fn environments(&self) -> Option<ApnsEnvironments> {
        self.inner.environments()
    }

    async fn send(&self, push: &Push) -> Outcome {
        self.in_flight.local().inc();
        let _guard = InFlight(&self.in_flight);
        let started = Instant::now();
        let outcome = self.inner.send(push).await;
        let seconds = started.elapsed().as_secs_f64();
        match &self.handles {
            Some(h) => h.duration.local().observe(seconds),
            None => self
                .fallback_duration
                .with_label_values(&[self.inner.platform().as_str(), self.inner.credential()])
                .observe(seconds),
        }
        let env = self.environment(push);
        match &outcome {
            Outcome::Delivered => match &self.handles {
                Some(h) => h.delivered[environment_index(env)].local().inc(),
                None => self.labelled(env, "delivered", "").inc(),
            },
            Outcome::InvalidToken { failure, .. } => {
                self.labelled(env, "invalid_token", &failure.reason).inc()
            }
            Outcome::Retry { failure, .. } | Outcome::OverQuota { failure, .. } => {
                self.labelled(env, "retry", &failure.reason).inc()
            }
            Outcome::Rejected(failure) => self.labelled(env, "rejected", &failure.reason).inc(),
        }
        outcome
    }
}
