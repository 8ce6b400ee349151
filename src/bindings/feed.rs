//! The binding feed (SPEC §11): every change to a binding — `registered`, `refreshed`,
//! `unregistered`, `moved`, `pruned`, `expired`, `evicted` — as an entry of
//! `<p>binding-events`, so an app backend learns which devices are gone without waiting for the
//! next call to fail.
//!
//! The Redis store adds the entry inside the script that makes the change (`feed.lua`), so the
//! feed never misses or invents one; on a cluster the stream sits in another slot than the
//! identity's keys, so the script adds the events to an outbox in the identity's slot and the
//! store forwards them right after, or [`sweep`] does after a crash (`bindings::redis::outbox`).
//! The in-memory store keeps the last [`MEMORY_FEED_LEN`] in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::redis::outbox::{SWEEP_AFTER, SWEEP_EVERY};
use super::BindingStore;
use crate::backend::BackendError;

/// The stream's approximate cap (`XADD … MAXLEN ~`): about a week of changes for a million
/// devices refreshing daily is far more than a backend needs to catch up after an outage.
pub const FEED_MAX_LEN: u64 = 1_000_000;

/// How many events the in-memory store keeps.
pub const MEMORY_FEED_LEN: usize = 10_000;

/// One change to a binding, as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedEvent {
    /// The entry's stream id (in memory: `<ms>-<seq>` too), for reading on after it.
    pub id: String,
    /// The event's own id, the same on every copy of it: the stream id on one server and in
    /// memory; on a Redis Cluster `<outbox entry id>@<slot>`, since a crash while forwarding
    /// from the outbox can add an event to the feed twice (at least once).
    pub event_id: String,
    /// `registered`, `refreshed`, `unregistered`, `moved`, `pruned`, `expired` or `evicted`.
    pub event: String,
    /// The binding that changed.
    pub binding_id: String,
    /// Whose binding it was (for `moved`, the identity the device left).
    pub identity: String,
    /// `apns` or `fcm`.
    pub platform: String,
    /// The push credential.
    pub credential: String,
    /// The device token (or FID), in full: the backend needs it to know which device.
    pub device_token: String,
    /// Why: the provider's reason for `pruned`, `ttl`, `max_per_identity`, `app`, `admin`,
    /// `erased`, `replaced`; empty for `registered` and `refreshed`.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
    /// For `moved`: the identity the device moved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl FeedEvent {
    /// An event from a stream entry's id and fields (unknown fields ignored, missing ones empty).
    pub fn from_fields(id: String, fields: &[(String, String)]) -> FeedEvent {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        FeedEvent {
            event_id: get("event_id").unwrap_or_else(|| id.clone()),
            id,
            event: get("event").unwrap_or_default(),
            binding_id: get("binding_id").unwrap_or_default(),
            identity: get("identity").unwrap_or_default(),
            platform: get("platform").unwrap_or_default(),
            credential: get("credential").unwrap_or_default(),
            device_token: get("device_token").unwrap_or_default(),
            reason: get("reason").unwrap_or_default(),
            at: get("at").unwrap_or_default(),
            to: get("to"),
        }
    }

    /// The event of `binding` changing now (the in-memory store).
    pub fn of(event: &str, binding: &super::Binding, reason: &str, at_ms: u64) -> FeedEvent {
        FeedEvent {
            id: String::new(),
            event_id: String::new(),
            event: event.to_string(),
            binding_id: binding.binding_id.clone(),
            identity: binding.identity.clone(),
            platform: binding.platform.to_string(),
            credential: binding.credential.clone(),
            device_token: binding.device_token.clone(),
            reason: reason.to_string(),
            at: crate::domain::rfc3339_ms(at_ms),
            to: None,
        }
    }
}

/// Read up to `count` events after the stream id `after` (`None`: from the start).
pub async fn read(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    after: Option<&str>,
    count: usize,
) -> Result<Vec<FeedEvent>, BackendError> {
    Ok(entries_after(conn, key, after, count)
        .await?
        .into_iter()
        .map(|(id, flat)| {
            let fields: Vec<(String, String)> = flat
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                .collect();
            FeedEvent::from_fields(id, &fields)
        })
        .collect())
}

/// Up to `count` entries of the stream `key` after the id `after` (`None`: from the start),
/// each as its id and its flat field list.
pub async fn entries_after(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    after: Option<&str>,
    count: usize,
) -> Result<Vec<(String, Vec<String>)>, BackendError> {
    let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
    Ok(redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?)
}

/// A capped stream kept in memory (the in-memory backend's feed and acks): the last `CAP`
/// entries, with ids as a Redis stream's (`<ms>-<seq>`, only growing, even when the clock steps
/// back).
#[derive(Debug)]
pub struct MemoryLog<T, const CAP: usize> {
    entries: VecDeque<((u64, u64), T)>,
    last: (u64, u64),
}

impl<T, const CAP: usize> Default for MemoryLog<T, CAP> {
    fn default() -> Self {
        MemoryLog {
            entries: VecDeque::new(),
            last: (0, 0),
        }
    }
}

impl<T: Clone, const CAP: usize> MemoryLog<T, CAP> {
    /// Add the entry `make` builds from the next id, at `now_ms`.
    pub fn push(&mut self, now_ms: u64, make: impl FnOnce(String) -> T) {
        self.last = if now_ms > self.last.0 {
            (now_ms, 0)
        } else {
            (self.last.0, self.last.1 + 1)
        };
        if self.entries.len() == CAP {
            self.entries.pop_front();
        }
        let entry = make(format!("{}-{}", self.last.0, self.last.1));
        self.entries.push_back((self.last, entry));
    }

    /// Up to `count` entries after the id `after` (`None`: from the oldest kept).
    pub fn read(&self, after: Option<&str>, count: usize) -> Vec<T> {
        let after = after.and_then(parse_id);
        self.entries
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| *id > a))
            .take(count)
            .map(|(_, entry)| entry.clone())
            .collect()
    }
}

/// The in-memory feed: the last [`MEMORY_FEED_LEN`] events.
pub type MemoryFeed = MemoryLog<FeedEvent, MEMORY_FEED_LEN>;

impl MemoryFeed {
    /// Add an event now, giving it the next id.
    pub fn add(&mut self, mut event: FeedEvent, now_ms: u64) {
        self.push(now_ms, |id| {
            event.event_id = id.clone();
            event.id = id;
            event
        });
    }
}

/// Sweep the feed's outboxes every [`SWEEP_EVERY`] until `shutdown` (a daemon on a Redis
/// Cluster): what a crash left there reaches the feed [`SWEEP_AFTER`] to about twice that late.
pub async fn sweep(store: Arc<dyn BindingStore>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        match store.sweep_feed(SWEEP_AFTER).await {
            Ok(0) => {}
            Ok(n) => info!(
                events = n,
                "binding feed: forwarded events a crash left in outboxes"
            ),
            Err(e) => warn!(error = %e, "binding feed: could not sweep the outboxes"),
        }
    }
}

/// A stream id `<ms>-<seq>` (or `<ms>`), as numbers.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> FeedEvent {
        FeedEvent::from_fields(String::new(), &[("event".into(), name.into())])
    }

    #[test]
    fn the_memory_feed_reads_on_after_an_id_and_keeps_its_cap() {
        let mut feed = MemoryFeed::default();
        feed.add(event("registered"), 5);
        feed.add(event("refreshed"), 5);
        feed.add(event("pruned"), 4);
        let all = feed.read(None, 10);
        let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            ["5-0", "5-1", "5-2"],
            "ids only grow, even when the clock steps back"
        );
        assert_eq!(feed.read(Some("5-0"), 10).len(), 2);
        assert_eq!(feed.read(Some("5-2"), 10), vec![]);
        for _ in 0..MEMORY_FEED_LEN {
            feed.add(event("refreshed"), 6);
        }
        assert_eq!(feed.read(None, usize::MAX).len(), MEMORY_FEED_LEN);
    }
}
