//! The binding feed webhook's metrics (SPEC §11), emitted by its task only:
//! `callpush_binding_feed_webhook_posts_total{result}` — every POST of a feed event to the app
//! backend: `delivered` (a 2xx), `refused` (any other status), `unreachable` (no answer: refused
//! connection, TLS handshake, timeout). A backend that stops taking events shows as `delivered`
//! flat while the other two climb; the events wait in `<p>binding-events` meanwhile.

use prometheus::{IntCounter, Registry};

use super::counter;

/// How one POST of a feed event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedPost {
    /// The backend answered 2xx: the event is delivered.
    Delivered,
    /// The backend answered another status.
    Refused,
    /// No answer at all.
    Unreachable,
}

impl FeedPost {
    const ALL: [FeedPost; 3] = [
        FeedPost::Delivered,
        FeedPost::Refused,
        FeedPost::Unreachable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            FeedPost::Delivered => "delivered",
            FeedPost::Refused => "refused",
            FeedPost::Unreachable => "unreachable",
        }
    }
}

/// The webhook's handles, one per result, each shown from the start.
pub(crate) struct FeedMetrics {
    posts: [IntCounter; 3],
}

impl FeedMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<FeedMetrics> {
        let posts = counter(
            registry,
            "callpush_binding_feed_webhook_posts_total",
            "POSTs of binding feed events to the app backend's webhook, by result (delivered, \
             refused, unreachable).",
            &["result"],
        )?;
        Ok(FeedMetrics {
            posts: FeedPost::ALL.map(|r| posts.with_label_values(&[r.as_str()])),
        })
    }

    /// One POST ended with `result`.
    pub(crate) fn post(&self, result: FeedPost) {
        self.posts[result as usize].inc();
    }
}
