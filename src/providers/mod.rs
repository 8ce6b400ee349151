//! The provider boundary: what the dispatcher hands a push provider and what it gets back.
//!
//! Providers (`crate::apns`, `crate::fcm`) speak HTTP to Apple and Google; nothing outside them
//! sees a status code. Each provider has exactly one function that turns a provider answer into an
//! [`Outcome`], so the retry, prune and dead-letter decisions live in one place per provider;
//! the pieces they share (`Retry-After`, unanswered requests, label cleaning, the [`Verdict`])
//! are in [`answer`].

pub(crate) mod answer;

use std::time::Duration;

use crate::domain::{ApnsEnvironments, Platform, Push};

pub use answer::Verdict;

/// Why a push did not go through, for dead letters, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A short code with few possible values, fit for a metric label: the provider's reason
    /// (`BadTopic`, `UNREGISTERED`, …), or `timeout`, `connect`, `http_503`, ….
    pub reason: String,
    /// A human sentence for the dead letter's `detail`: provider, status and reason,
    /// e.g. `APNs 400 BadTopic`.
    pub detail: String,
}

impl Failure {
    /// A failure with a reason code and a human detail.
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What the provider's answer means for the dispatcher. Providers return this, never HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the push.
    Delivered,
    /// The provider says the device token is dead: prune the binding unless it was re-registered
    /// after `judged_at_ms` (APNs' 410 timestamp; FCM: when the push was sent). Not retried.
    InvalidToken {
        /// Why the token is dead (`Unregistered`, `BadDeviceToken`, `UNREGISTERED`, …).
        failure: Failure,
        /// When the provider judged the token dead, in ms since the Unix epoch.
        judged_at_ms: u64,
    },
    /// A transient failure: try again after the backoff (or at least `retry_after`), within the
    /// event's deadline.
    Retry {
        /// What went wrong.
        failure: Failure,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A permanent failure (bad topic, bad credentials, payload too large, …): not retried,
    /// dead-lettered with the provider's reason.
    Rejected(Failure),
    /// The credential as a whole is over its provider's quota (FCM: the project's messages per
    /// minute), not this device: every push of the credential waits out `pause` before its next
    /// request, then tries again within its event's deadline.
    OverQuota {
        /// What the provider said.
        failure: Failure,
        /// How long the credential pauses (the provider's `Retry-After`, bounded).
        pause: Duration,
    },
}

/// A push service for one credential (one app).
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Which service this is.
    fn platform(&self) -> Platform;
    /// The credential SID this provider pushes for.
    fn credential(&self) -> &str;
    /// Whether `cancel` events are sent to this credential's devices (always for FCM; for APNs
    /// only with `send_cancel = true`).
    fn sends_cancel(&self) -> bool;
    /// APNs: the environments this credential pushes to (the default first); `None` for FCM.
    fn environments(&self) -> Option<ApnsEnvironments> {
        None
    }
    /// Send one push and classify the answer. Never panics, never returns HTTP details.
    async fn send(&self, push: &Push) -> Outcome;
}
