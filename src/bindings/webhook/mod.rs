//! The binding feed's webhook (SPEC §11, `[bindings.feed]`): every event of the feed POSTed to
//! the app backend, signed, in feed order, at least once.
//!
//! One task per daemon, beside the dispatcher (it never holds up a push): it reads the feed from
//! its place (`BindingStore::feed_cursor`), POSTs each event until the backend answers 2xx —
//! waiting 500 ms, then twice as long each time up to `max_backoff_ms`, with jitter — and only
//! then moves its place on. An event the backend has not taken stays in the feed stream (and
//! the backend can read it there), so a backend that is down for minutes gets everything when
//! it is back, in order. A crash between a 2xx and the move of the place sends that event again:
//! at least once, and the `X-Callpush-Event-Id` header lets the backend drop the copy. Of several
//! daemons, the one holding the lease (`BindingStore::feed_lease`) delivers.
//!
//! Each POST: `Content-Type: application/json`, the body the event as JSON (`FeedEvent`),
//! `X-Callpush-Event-Id: <the event's event_id>`, `X-Callpush-Timestamp: <unix seconds>` and
//! `X-Callpush-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` ([`sign`]).

mod post;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::feed::FeedEvent;
use super::BindingStore;
use crate::config::FeedSettings;
use crate::metrics::{FeedPost, Metrics};
use crate::secret::Secret;

pub use post::PostError;

/// Events read from the feed at once.
const PAGE: usize = 100;
/// How long to wait for new events when the feed is read to its end.
const IDLE: Duration = Duration::from_millis(250);
/// The first wait after a failed POST.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why the webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// The signing secret could not be read.
    #[error("bindings.feed.secret_file: {0}")]
    Secret(#[from] crate::secret::SecretError),
    /// The URL or its TLS setup is not usable.
    #[error("bindings.feed.webhook_url: {0}")]
    Url(String),
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds):
/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. A backend recomputes it and compares
/// in constant time, and refuses timestamps far from its clock (replays).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The webhook's delivery task (see the module docs).
pub struct FeedWebhook {
    store: Arc<dyn BindingStore>,
    target: post::Target,
    secret: Secret,
    max_backoff: Duration,
    holder: String,
    metrics: Arc<Metrics>,
}

impl FeedWebhook {
    /// The webhook of `settings`, or `None` when no `webhook_url` is set.
    pub fn from_settings(
        settings: &FeedSettings,
        store: Arc<dyn BindingStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<FeedWebhook>, WebhookConfigError> {
        let Some(url) = &settings.webhook_url else {
            return Ok(None);
        };
        let Some(secret_file) = &settings.secret_file else {
            return Err(WebhookConfigError::Url(
                "needs bindings.feed.secret_file".into(),
            ));
        };
        let secret = Secret::from_file(secret_file)?;
        let target = post::Target::new(url, settings.ca_file.as_deref())
            .map_err(|e| WebhookConfigError::Url(e.to_string()))?;
        Ok(Some(FeedWebhook {
            store,
            target,
            secret,
            max_backoff: Duration::from_millis(settings.max_backoff_ms.max(1)),
            holder: crate::bindings::new_binding_id(),
            metrics,
        }))
    }

    /// Deliver until `shutdown`, then give up the lease.
    pub async fn run(self, shutdown: CancellationToken) {
        info!(url = %self.target, "binding feed webhook on");
        self.deliver_until(&shutdown).await;
        if let Err(e) = self.store.feed_lease(&self.holder, 0).await {
            warn!(error = %e, "binding feed webhook: could not give up its lease; it lapses");
        }
    }

    async fn deliver_until(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let more = match self.round(shutdown).await {
                Ok(more) => more,
                Err(e) => {
                    warn!(error = %e, "binding feed webhook: the store does not answer");
                    false
                }
            };
            if !more {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(IDLE) => {}
                }
            }
        }
    }

    /// The lease's life: longer than the longest wait, so the holder keeps it while it waits.
    fn lease_ms(&self) -> u64 {
        self.max_backoff.as_millis() as u64 + 30_000
    }

    /// One page: true when there may be more right away.
    async fn round(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<bool, crate::backend::BackendError> {
        if !self.store.feed_lease(&self.holder, self.lease_ms()).await? {
            return Ok(false);
        }
        let cursor = self.store.feed_cursor().await?;
        let events = self.store.feed(cursor.as_deref(), PAGE).await?;
        for event in &events {
            if !self.deliver(event, shutdown).await {
                return Ok(false);
            }
            self.store.set_feed_cursor(&event.id).await?;
        }
        Ok(events.len() == PAGE)
    }

    /// POST one event until the backend takes it; false when stopped first.
    async fn deliver(&self, event: &FeedEvent, shutdown: &CancellationToken) -> bool {
        let body = serde_json::to_vec(event).unwrap_or_default();
        let mut wait = FIRST_BACKOFF;
        for attempt in 1u32.. {
            let timestamp = crate::domain::now_ms() / 1000;
            let signature = sign(self.secret.expose(), timestamp, &body);
            let headers = [
                ("x-callpush-event-id", event.event_id.clone()),
                ("x-callpush-timestamp", timestamp.to_string()),
                ("x-callpush-signature", signature),
            ];
            match self.target.post(&headers, body.clone()).await {
                Ok(status) if status.is_success() => {
                    self.metrics.feed.post(FeedPost::Delivered);
                    return true;
                }
                Ok(status) => {
                    self.metrics.feed.post(FeedPost::Refused);
                    warn!(event_id = %event.event_id, attempt, status = status.as_u16(),
                        "binding feed webhook refused an event; trying again")
                }
                Err(e) => {
                    self.metrics.feed.post(FeedPost::Unreachable);
                    warn!(event_id = %event.event_id, attempt, error = %e,
                        "binding feed webhook unreachable; trying again")
                }
            }
            let jitter = rand::random_range(0.8..1.2);
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait.mul_f64(jitter)) => {}
            }
            wait = (wait * 2).min(self.max_backoff);
            // Keep the lease through long waits; another daemon that took it delivers instead.
            match self.store.feed_lease(&self.holder, self.lease_ms()).await {
                Ok(true) => {}
                _ => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signature = sign(b"Jefe", 0, b"what do ya want for nothing?");
        // The data signed is "0." + body, so the RFC's digest does not apply as is; check the
        // construction against ring directly instead.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(signature, format!("v1={}", hex::encode(tag.as_ref())));
        assert_ne!(
            sign(b"Jefe", 1, b"x"),
            sign(b"Jefe", 2, b"x"),
            "the time is signed"
        );
    }
}
