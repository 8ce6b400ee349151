//! Every Prometheus metric callpush exports, named and registered in this one module.
//!
//! The names are a contract with dashboards and alert rules (`dashboards/`, `deploy/prometheus/`):
//! `callpush_<noun>_<unit>`, `_total` on counters, label values from small fixed sets (platform,
//! credential SID, outcome, reason, scope, route) — never a device token, an identity or a call
//! sid. Each metric is emitted from exactly one place:
//!
//! - pushes, push duration, pushes in flight: [`MeteredProvider`], wrapped around every provider;
//! - provider connections, provider token refreshes, stream lag/pending, dead letters,
//!   undecodable bindings: the [`sampler`], every few seconds;
//! - events, event latency, stage durations ([`stage`]), retries, prunes, call rate limits: the
//!   dispatcher;
//! - registrations, registration rate limits, HTTP requests, dead letters replayed and purged,
//!   Twilio webhooks ([`twilio`]), device acks ([`acks`]): the API (a `callpush dlq` command runs in its own process and counts in none of these; the
//!   sampled `callpush_dead_letters` shows its effect);
//! - binding feed webhook POSTs ([`feed`]): the webhook's task.
//!
//! A [`Metrics`] is built once per registry and passed around as `Arc<Metrics>` (no statics), so
//! each test has its own. Handles used per push or per event are resolved at start; the
//! `with_label_values` lookups left are on rare paths (failures, Redis errors).

mod acks;
mod credential;
mod feed;
mod labels;
mod provider;
mod register;
pub(crate) mod sampler;
mod sharded;
mod stage;
mod twilio;

use std::collections::HashMap;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use sharded::{Sharded, ShardedVec};

pub use feed::FeedPost;
pub use labels::{prune_reasons, retry_reasons, RateScope};
pub use provider::{MeteredProvider, ProviderProbe, RefreshCounter};
pub use stage::Stage;
pub(crate) use stage::StageClock;

use crate::domain::{ApnsEnvironment, Platform};
use register::{counter, histogram};

/// The per-credential handles of the push path, resolved once at start. `delivered` and
/// `connections` hold one handle per APNs environment (production, sandbox); an FCM
/// credential's two are the same series, with an empty `environment`.
#[derive(Clone)]
pub(crate) struct CredentialHandles {
    pub(crate) delivered: [Sharded<IntCounter>; 2],
    pub(crate) duration: Sharded<Histogram>,
    pub(crate) connections: [IntGauge; 2],
    /// `callpush_credential_pauses_total`: quota pauses begun or extended.
    pub(crate) pauses: IntCounter,
    /// `callpush_credential_paused`: 1 while the credential is paused.
    pub(crate) paused: IntGauge,
}

/// The `environment` label values of a platform's series, production then sandbox: APNs'
/// environments, and none (empty) for FCM.
pub(crate) fn environment_labels(platform: Platform) -> [&'static str; 2] {
    match platform {
        Platform::Apns => [
            ApnsEnvironment::Production.as_str(),
            ApnsEnvironment::Sandbox.as_str(),
        ],
        Platform::Fcm => ["", ""],
    }
}

/// Which of [`CredentialHandles`]' two per-environment handles serves `environment`.
pub(crate) fn environment_index(environment: Option<ApnsEnvironment>) -> usize {
    match environment {
        Some(ApnsEnvironment::Sandbox) => 1,
        _ => 0,
    }
}

/// Every metric of the daemon, registered on one registry.
pub struct Metrics {
    events: HashMap<(&'static str, &'static str), Sharded<IntCounter>>,
    events_vec: ShardedVec<IntCounterVec>,
    event_latency: HashMap<&'static str, Sharded<Histogram>>,
    pub(crate) pushes: ShardedVec<IntCounterVec>,
    pub(crate) push_duration: ShardedVec<HistogramVec>,
    pub(crate) in_flight: Sharded<IntGauge>,
    retries: IntCounterVec,
    pruned: IntCounterVec,
    rate_limited: Vec<(RateScope, IntCounter)>,
    /// `callpush_config_reloads_total{result}`: applied, refused.
    reloads: [IntCounter; 2],
    pub(crate) stream_lag: IntGauge,
    pub(crate) stream_pending: IntGauge,
    pub(crate) dead_letters: IntGauge,
    dead_replayed: HashMap<&'static str, IntCounter>,
    dead_purged: IntCounter,
    pub(crate) bindings_undecodable: IntCounter,
    registrations: HashMap<(Platform, &'static str), IntCounter>,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_refused: IntCounterVec,
    redis_errors: IntCounterVec,
    pub(crate) token_refreshes: IntCounterVec,
    /// Each credential's handles: those of the start, and those a reload added.
    credentials: std::sync::RwLock<HashMap<String, CredentialHandles>>,
    /// What a credential's handles are made of.
    families: credential::Families,
    pub(crate) twilio: twilio::TwilioMetrics,
    pub(crate) acks: acks::AckMetrics,
    pub(crate) feed: feed::FeedMetrics,
    pub(crate) stages: stage::StageMetrics,
}

impl Metrics {
    /// The cached handles of one credential (None for a credential neither given to
    /// [`Metrics::new`] nor added by [`Metrics::add_credential`]).
    pub(crate) fn credential(&self, sid: &str) -> Option<CredentialHandles> {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sid)
            .cloned()
    }

    /// Series for a credential a reload added, made as those of the start are.
    pub fn add_credential(&self, platform: Platform, sid: &str) {
        let mut credentials = self.credentials.write().unwrap_or_else(|e| e.into_inner());
        if !credentials.contains_key(sid) {
            credentials.insert(sid.to_string(), self.families.handles(platform, sid));
        }
    }

    /// Credentials no provider serves any more (a reload removed them) hold no connections:
    /// their connection gauges read 0 rather than their last value. Their counters stay.
    pub(crate) fn close_connections_except(&self, live: &std::collections::HashSet<&str>) {
        let credentials = self.credentials.read().unwrap_or_else(|e| e.into_inner());
        for (sid, handles) in credentials.iter() {
            if !live.contains(sid.as_str()) {
                handles.connections.iter().for_each(|g| g.set(0));
            }
        }
    }

    /// An event reached its one outcome. `kind` and `outcome` are the SPEC §5 names.
    pub fn event(&self, kind: &str, outcome: &str) {
        match self.events.get(&(kind, outcome)) {
            Some(c) => c.local().inc(),
            // Not one of the fixed names: still counted, under `unknown` so labels stay bounded.
            None => self
                .events_vec
                .any()
                .with_label_values(&["unknown", outcome])
                .inc(),
        }
    }

    /// The first device of an event accepted its push, `seconds` after the stream-id time.
    pub fn event_latency(&self, kind: &str, seconds: f64) {
        if let Some(h) = self.event_latency.get(kind) {
            h.local().observe(seconds.max(0.0));
        }
    }

    /// A push will be retried after a transient failure.
    pub fn retry(&self, platform: Platform, reason: &str) {
        self.retries
            .with_label_values(&[platform.as_str(), reason])
            .inc();
    }

    /// A binding was removed because its device token is dead.
    pub fn pruned(&self, platform: Platform, reason: &str) {
        self.pruned
            .with_label_values(&[platform.as_str(), reason])
            .inc();
    }

    /// A configuration reload, applied or refused.
    pub fn config_reload(&self, applied: bool) {
        self.reloads[usize::from(!applied)].inc();
    }

    /// Work turned away by the limit of `scope`.
    pub fn rate_limited(&self, scope: RateScope) {
        if let Some((_, c)) = self.rate_limited.iter().find(|(s, _)| *s == scope) {
            c.inc();
        }
    }

    /// A registration request ended in `outcome` (one of [`REGISTRATION_OUTCOMES`]).
    pub fn registration(&self, platform: Platform, outcome: &'static str) {
        if let Some(c) = self.registrations.get(&(platform, outcome)) {
            c.inc();
        }
    }

    /// `n` dead letters of `reason` were replayed.
    pub fn dead_letters_replayed(&self, reason: &str, n: u64) {
        let counter = self
            .dead_replayed
            .get(reason)
            .or_else(|| self.dead_replayed.get("other"));
        if let Some(c) = counter {
            c.inc_by(n);
        }
    }

    /// `n` dead letters were purged.
    pub fn dead_letters_purged(&self, n: u64) {
        self.dead_purged.inc_by(n);
    }

    /// A connection to `listener` was refused: it had its maximum of connections open.
    pub fn http_connection_refused(&self, listener: &str) {
        self.http_refused.with_label_values(&[listener]).inc();
    }

    /// One HTTP request answered. `route` is the matched route pattern (or `unmatched`).
    pub fn http_request(&self, listener: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[listener, route, &status])
            .inc();
        self.http_duration
            .with_label_values(&[listener, route])
            .observe(seconds);
    }

    /// A Redis command failed. `op` is a fixed name (`xinfo_groups`, `xlen`, `ping`, …).
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.with_label_values(&[op]).inc();
    }
}

#[cfg(test)]
mod tests;
