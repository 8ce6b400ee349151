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
pub(crate) mod sampler;
mod stage;
mod twilio;

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub use feed::FeedPost;
pub use labels::{
    prune_reasons, retry_reasons, RateScope, DEAD_REASONS, EVENT_OUTCOMES, EVENT_TYPES, REDIS_OPS,
    REGISTRATION_OUTCOMES,
};
pub use provider::{MeteredProvider, ProviderProbe, RefreshCounter};
pub use stage::Stage;
pub(crate) use stage::StageClock;

use crate::domain::{ApnsEnvironment, Platform};

/// Event latency buckets, seconds: 1 ms to 30 s (the SLO histogram).
const EVENT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// One provider request, seconds: 1 ms to 10 s.
const PUSH_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One HTTP request to the API, seconds.
const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The per-credential handles of the push path, resolved once at start. `delivered` and
/// `connections` hold one handle per APNs environment (production, sandbox); an FCM
/// credential's two are the same series, with an empty `environment`.
#[derive(Clone)]
pub(crate) struct CredentialHandles {
    pub(crate) delivered: [IntCounter; 2],
    pub(crate) duration: Histogram,
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
    events: HashMap<(&'static str, &'static str), IntCounter>,
    events_vec: IntCounterVec,
    event_latency: HashMap<&'static str, Histogram>,
    pub(crate) pushes: IntCounterVec,
    pub(crate) push_duration: HistogramVec,
    pub(crate) in_flight: IntGauge,
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

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Register every metric on `registry`, with handles for each configured credential
    /// (`(platform, sid)`). Label sets known in advance are created now, so their series show
    /// 0 from the first scrape and `rate()` in alerts sees the first increase.
    pub fn new<'a>(
        registry: &Registry,
        credentials: impl IntoIterator<Item = (Platform, &'a str)>,
    ) -> prometheus::Result<Arc<Metrics>> {
        let events_vec = counter(
            registry,
            "callpush_events_total",
            "Call events by type and final outcome (SPEC §5).",
            &["type", "outcome"],
        )?;
        let mut events = HashMap::new();
        for t in EVENT_TYPES {
            for o in EVENT_OUTCOMES {
                events.insert((t, o), events_vec.with_label_values(&[t, o]));
            }
        }
        let latency = histogram(
            registry,
            "callpush_event_latency_seconds",
            "From the event's stream-id time to the first device's push accepted.",
            &["type"],
            EVENT_LATENCY_BUCKETS,
        )?;
        let event_latency = ["incoming", "cancel"]
            .into_iter()
            .map(|t| (t, latency.with_label_values(&[t])))
            .collect();
        let pushes = counter(registry, "callpush_pushes_total", "Provider requests by answer: outcome is delivered, invalid_token, retry or rejected; reason is the provider's; environment is the APNs host's (production, sandbox), empty for FCM.", &["platform", "credential", "environment", "outcome", "reason"])?;
        let push_duration = histogram(
            registry,
            "callpush_push_duration_seconds",
            "One provider request, from send to answer.",
            &["platform", "credential"],
            PUSH_DURATION_BUCKETS,
        )?;
        let connections = IntGaugeVec::new(
            Opts::new(
                "callpush_provider_connections",
                "Open HTTP/2 connections to the provider, per credential and APNs environment.",
            ),
            &["platform", "credential", "environment"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        let pauses = counter(
            registry,
            "callpush_credential_pauses_total",
            "Times a credential's pushes were paused (or the pause extended) because the provider \
             said the credential as a whole is over its quota (FCM: the project's messages per minute).",
            &["platform", "credential"],
        )?;
        let paused = IntGaugeVec::new(
            Opts::new(
                "callpush_credential_paused",
                "1 while a credential's pushes are paused for its provider quota, else 0.",
            ),
            &["platform", "credential"],
        )?;
        registry.register(Box::new(paused.clone()))?;
        let token_refreshes = counter(
            registry,
            "callpush_provider_token_refreshes_total",
            "APNs provider tokens re-signed and FCM OAuth tokens fetched, by outcome (ok, failed).",
            &["platform", "outcome"],
        )?;
        let retries = counter(
            registry,
            "callpush_push_retries_total",
            "Pushes retried after a transient failure, by reason.",
            &["platform", "reason"],
        )?;
        let pruned = counter(
            registry,
            "callpush_tokens_pruned_total",
            "Bindings removed because the provider said the device token is dead.",
            &["platform", "reason"],
        )?;
        for platform in [Platform::Apns, Platform::Fcm] {
            let p = platform.as_str();
            for reason in retry_reasons(platform) {
                retries.with_label_values(&[p, reason]);
            }
            for reason in prune_reasons(platform) {
                pruned.with_label_values(&[p, reason]);
            }
        }
        let credentials: Vec<(Platform, &str)> = credentials.into_iter().collect();
        let acks = acks::AckMetrics::new(registry, credentials.iter().copied())?;
        let families = credential::Families {
            pushes: pushes.clone(),
            push_duration: push_duration.clone(),
            connections,
            pauses,
            paused,
        };
        let credential_handles = credentials
            .into_iter()
            .map(|(platform, sid)| (sid.to_string(), families.handles(platform, sid)))
            .collect();
        for p in [Platform::Apns, Platform::Fcm] {
            for o in ["ok", "failed"] {
                token_refreshes.with_label_values(&[p.as_str(), o]);
            }
        }
        let limited = counter(
            registry,
            "callpush_rate_limited_total",
            "Work turned away by a rate limit, by scope.",
            &["scope"],
        )?;
        let rate_limited = RateScope::ALL
            .into_iter()
            .map(|s| (s, limited.with_label_values(&[s.as_str()])))
            .collect();
        let reloads_vec = counter(
            registry,
            "callpush_config_reloads_total",
            "Configuration reloads (SIGHUP, POST /v1/admin/reload), by result: applied or refused (the daemon kept the previous configuration).",
            &["result"],
        )?;
        let reloads = ["applied", "refused"].map(|r| reloads_vec.with_label_values(&[r]));
        let registrations_vec = counter(
            registry,
            "callpush_registrations_total",
            "Registration requests that reached the store, by platform and outcome.",
            &["platform", "outcome"],
        )?;
        let mut registrations = HashMap::new();
        for p in [Platform::Apns, Platform::Fcm] {
            for o in REGISTRATION_OUTCOMES {
                registrations.insert(
                    (p, o),
                    registrations_vec.with_label_values(&[p.as_str(), o]),
                );
            }
        }
        let redis_errors = counter(
            registry,
            "callpush_redis_errors_total",
            "Redis commands that failed, by operation.",
            &["op"],
        )?;
        for op in REDIS_OPS {
            redis_errors.with_label_values(&[op]);
        }
        let replayed = counter(
            registry,
            "callpush_dead_letters_replayed_total",
            "Dead letters put back on the calls stream through the admin API, by reason.",
            &["reason"],
        )?;
        let dead_replayed = DEAD_REASONS
            .into_iter()
            .map(|r| (r, replayed.with_label_values(&[r])))
            .collect();
        let dead_purged = IntCounter::new(
            "callpush_dead_letters_purged_total",
            "Dead letters deleted through the admin API.",
        )?;
        registry.register(Box::new(dead_purged.clone()))?;
        let bindings_undecodable = IntCounter::new(
            "callpush_bindings_undecodable_total",
            "Stored bindings skipped because they did not decode (written by another version, \
             or by hand); the identity's other bindings are still pushed.",
        )?;
        registry.register(Box::new(bindings_undecodable.clone()))?;
        Ok(Arc::new(Metrics {
            events,
            events_vec,
            event_latency,
            pushes,
            push_duration,
            in_flight: gauge(
                registry,
                "callpush_pushes_in_flight",
                "Provider requests waiting for an answer now.",
            )?,
            retries,
            pruned,
            rate_limited,
            reloads,
            stream_lag: gauge(
                registry,
                "callpush_stream_lag",
                "Calls-stream entries not yet delivered to the consumer group (XINFO GROUPS lag).",
            )?,
            stream_pending: gauge(
                registry,
                "callpush_stream_pending",
                "Calls-stream entries delivered but not acknowledged (XPENDING).",
            )?,
            dead_letters: gauge(
                registry,
                "callpush_dead_letters",
                "Entries in the dead-letter stream (XLEN).",
            )?,
            dead_replayed,
            dead_purged,
            bindings_undecodable,
            registrations,
            http_requests: counter(
                registry,
                "callpush_http_requests_total",
                "HTTP requests by listener, matched route and status.",
                &["listener", "route", "status"],
            )?,
            http_duration: histogram(
                registry,
                "callpush_http_request_duration_seconds",
                "HTTP request duration by listener and matched route.",
                &["listener", "route"],
                HTTP_DURATION_BUCKETS,
            )?,
            http_refused: counter(
                registry,
                "callpush_http_connections_refused_total",
                "Connections refused because the listener had api/admin.limits.max_connections open.",
                &["listener"],
            )?,
            redis_errors,
            token_refreshes,
            credentials: std::sync::RwLock::new(credential_handles),
            families,
            twilio: twilio::TwilioMetrics::new(registry)?,
            acks,
            feed: feed::FeedMetrics::new(registry)?,
            stages: stage::StageMetrics::new(registry)?,
        }))
    }

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
            Some(c) => c.inc(),
            // Not one of the fixed names: still counted, under `unknown` so labels stay bounded.
            None => self
                .events_vec
                .with_label_values(&["unknown", outcome])
                .inc(),
        }
    }

    /// The first device of an event accepted its push, `seconds` after the stream-id time.
    pub fn event_latency(&self, kind: &str, seconds: f64) {
        if let Some(h) = self.event_latency.get(kind) {
            h.observe(seconds.max(0.0));
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
