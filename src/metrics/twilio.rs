//! The Twilio webhook's metrics (SPEC §10), emitted by its handler only:
//! `callpush_twilio_webhooks_total{status}` (every answer the webhook gave) and
//! `callpush_twilio_signature_failures_total` (requests whose `X-Twilio-Signature` was missing
//! or wrong: a misconfigured URL or token, or someone probing).

use std::collections::HashMap;

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::counter;

/// The statuses the webhook answers with, created up front so each shows 0 from the start.
pub const WEBHOOK_STATUSES: [u16; 9] = [200, 400, 403, 404, 408, 413, 415, 500, 503];

/// The webhook's handles, resolved at start.
pub(crate) struct TwilioMetrics {
    webhooks: HashMap<u16, IntCounter>,
    webhooks_vec: IntCounterVec,
    signature_failures: IntCounter,
}

impl TwilioMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<TwilioMetrics> {
        let webhooks_vec = counter(
            registry,
            "callpush_twilio_webhooks_total",
            "Twilio call-notification webhooks by answered status.",
            &["status"],
        )?;
        let webhooks = WEBHOOK_STATUSES
            .iter()
            .map(|s| (*s, webhooks_vec.with_label_values(&[&s.to_string()])))
            .collect();
        let signature_failures = IntCounter::new(
            "callpush_twilio_signature_failures_total",
            "Twilio webhooks refused for a missing or wrong X-Twilio-Signature.",
        )?;
        registry.register(Box::new(signature_failures.clone()))?;
        Ok(TwilioMetrics {
            webhooks,
            webhooks_vec,
            signature_failures,
        })
    }

    /// The webhook answered with `status`.
    pub(crate) fn webhook(&self, status: u16) {
        match self.webhooks.get(&status) {
            Some(c) => c.inc(),
            None => self
                .webhooks_vec
                .with_label_values(&[&status.to_string()])
                .inc(),
        }
    }

    /// A webhook's signature did not verify.
    pub(crate) fn signature_failure(&self) {
        self.signature_failures.inc();
    }
}
