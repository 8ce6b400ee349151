//! How the store's feeding scripts reach the feed: the stream itself on one server, the outbox
//! of the identity's slot on a cluster (forwarded right after, see [`super::outbox`]).

use tracing::warn;

use super::{RedisBindingStore, Returned};
use crate::bindings::feed::FEED_MAX_LEN;
use crate::redis_conn::RedisConn;

impl RedisBindingStore {
    /// Add the key and arguments every feeding script ends with (`feed.lua`) for a change to
    /// `identity`: the feed stream or the identity's outbox, the time, the cap and the mode.
    /// Returns that key.
    pub(super) fn feed_tail(
        &self,
        invocation: &mut redis::ScriptInvocation<'_>,
        identity: &str,
        now_ms: u64,
    ) -> String {
        let (key, mode) = match &self.outbox {
            None => (self.feed_key.clone(), "inline"),
            Some(outbox) => (
                outbox.key_near(&self.keys.identity_bindings(identity)),
                "outbox",
            ),
        };
        invocation
            .key(&key)
            .arg(crate::domain::rfc3339_ms(now_ms))
            .arg(FEED_MAX_LEN)
            .arg(mode);
        key
    }

    /// Forward to the feed the events a script added to the outbox `outbox_key` (only on a
    /// cluster; elsewhere there are none). The change is made and its events are safe in the
    /// outbox whatever happens here: a failure is logged and the sweep forwards them later.
    pub(super) async fn publish(&self, outbox_key: &str, events: Returned) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        if events.is_empty() || !self.forward {
            return;
        }
        if let Err(e) = outbox.forward(&self.conn, outbox_key, events).await {
            warn!(error = %e, "binding feed: could not forward events from their outbox; the sweep will");
        }
    }

    /// (Tests) Leave every event in its outbox, as a crash right after each script would.
    #[doc(hidden)]
    pub fn without_forwarding(mut self) -> RedisBindingStore {
        self.forward = false;
        self
    }

    /// Forward the outbox entries older than `older_than` to the feed when this store holds
    /// the sweep lease; how many. Nothing to do off a cluster.
    pub async fn sweep_outboxes(
        &self,
        older_than: std::time::Duration,
    ) -> Result<usize, crate::backend::BackendError> {
        match (&self.outbox, &self.conn) {
            (Some(outbox), conn @ RedisConn::Cluster(_)) => outbox.sweep(conn, older_than).await,
            _ => Ok(0),
        }
    }
}
