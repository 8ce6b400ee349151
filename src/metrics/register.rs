//! Registering every metric on the registry: the bucket sets, the `counter`/`gauge`/`histogram`
//! helpers the per-area modules share, and [`Metrics::new`], which creates each series the
//! daemon exports (label sets known in advance are created at once).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::labels::{
    prune_reasons, retry_reasons, RateScope, DEAD_REASONS, EVENT_OUTCOMES, EVENT_TYPES, REDIS_OPS,
    REGISTRATION_OUTCOMES,
};
use super::sharded::ShardedVec;
use super::{acks, credential, feed, stage, twilio, Metrics};
use crate::domain::Platform;

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

pub(super) fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// [`counter`], split per thread ([`ShardedVec`]): for series the event path updates.
pub(super) fn sharded_counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<ShardedVec<IntCounterVec>> {
    ShardedVec::register(registry, || {
        IntCounterVec::new(Opts::new(name, help), labels)
    })
}

/// [`histogram`], split per thread ([`ShardedVec`]): for series the event path updates.
pub(super) fn sharded_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<ShardedVec<HistogramVec>> {
    ShardedVec::register(registry, || {
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
    })
}

pub(super) fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

pub(super) fn histogram(
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
        let events_vec = sharded_counter(
            registry,
            "callpush_events_total",
            "Call events by type and final outcome (SPEC §5).",
            &["type", "outcome"],
        )?;
        let mut events = HashMap::new();
        for t in EVENT_TYPES {
            for o in EVENT_OUTCOMES {
                events.insert((t, o), events_vec.handle(|v| v.with_label_values(&[t, o])));
            }
        }
        let latency = sharded_histogram(
            registry,
            "callpush_event_latency_seconds",
            "From the event's stream-id time to the first device's push accepted.",
            &["type"],
            EVENT_LATENCY_BUCKETS,
        )?;
        let event_latency = ["incoming", "cancel"]
            .into_iter()
            .map(|t| (t, latency.handle(|v| v.with_label_values(&[t]))))
            .collect();
        let pushes = sharded_counter(registry, "callpush_pushes_total", "Provider requests by answer: outcome is delivered, invalid_token, retry or rejected; reason is the provider's; environment is the APNs host's (production, sandbox), empty for FCM.", &["platform", "credential", "environment", "outcome", "reason"])?;
        let push_duration = sharded_histogram(
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
            // Each thread counts up and down in its own copy; the copies add up to the number.
            in_flight: ShardedVec::register(registry, || {
                IntGauge::new(
                    "callpush_pushes_in_flight",
                    "Provider requests waiting for an answer now.",
                )
            })?
            .handle(IntGauge::clone),
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
}
