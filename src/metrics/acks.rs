//! Device acks (SPEC §11), emitted by the ack route only: `callpush_device_acks_total{platform,
//! credential}` (first acks: phones that woke) and `callpush_device_wake_seconds{platform}`
//! (the event's stream-id time to the ack: what the callee feels). Beside
//! `callpush_pushes_total{outcome="delivered"}` they give "accepted vs woke".

use std::collections::HashMap;

use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};

use super::{counter, histogram};
use crate::domain::Platform;

/// Wake time buckets, seconds: 100 ms to 2 minutes (a phone in Doze or on a weak network can
/// take tens of seconds; past the ring window an ack is refused anyway).
const WAKE_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];

/// The ack route's handles, resolved at start for every configured credential.
pub(crate) struct AckMetrics {
    acks: HashMap<String, IntCounter>,
    acks_vec: IntCounterVec,
    wake: HashMap<Platform, Histogram>,
}

impl AckMetrics {
    pub(super) fn new<'a>(
        registry: &Registry,
        credentials: impl IntoIterator<Item = (Platform, &'a str)>,
    ) -> prometheus::Result<AckMetrics> {
        let acks_vec = counter(
            registry,
            "callpush_device_acks_total",
            "Devices that said a call's push woke them (first ack per device and call), by \
             platform and credential.",
            &["platform", "credential"],
        )?;
        let acks = credentials
            .into_iter()
            .map(|(p, sid)| {
                (
                    sid.to_string(),
                    acks_vec.with_label_values(&[p.as_str(), sid]),
                )
            })
            .collect();
        let wake_vec = histogram(
            registry,
            "callpush_device_wake_seconds",
            "From the call event's stream-id time to the device's ack that the push woke it.",
            &["platform"],
            WAKE_BUCKETS,
        )?;
        let wake = [Platform::Apns, Platform::Fcm]
            .into_iter()
            .map(|p| (p, wake_vec.with_label_values(&[p.as_str()])))
            .collect();
        Ok(AckMetrics {
            acks,
            acks_vec,
            wake,
        })
    }

    /// A device's first ack; `wake_secs` when the push's stream-id time is known.
    pub(crate) fn acked(&self, platform: Platform, credential: &str, wake_secs: Option<f64>) {
        match self.acks.get(credential) {
            Some(c) => c.inc(),
            None => self
                .acks_vec
                .with_label_values(&[platform.as_str(), credential])
                .inc(),
        }
        if let (Some(secs), Some(h)) = (wake_secs, self.wake.get(&platform)) {
            h.observe(secs);
        }
    }
}
