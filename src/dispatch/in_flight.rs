//! The entries this process works on now: the in-flight set (an entry is taken once per
//! process), and the heartbeat that touches them so they never look idle to another consumer's
//! XAUTOCLAIM while a push of theirs is under way.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Shared;

impl Shared {
    /// Note that work on `id` starts: its entry in the in-flight set, for its [`InFlight`]
    /// guard; `None` when it is already in flight here.
    pub(super) fn start(&self, id: &str) -> Option<Arc<str>> {
        let id: Arc<str> = id.into();
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(id.clone())
            .then_some(id)
    }

    /// Whether this process is working on entry `id` now.
    pub(super) fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight.lock().expect("in-flight lock").contains(id)
    }
}

/// Forgets an entry from the in-flight set however its work ends: it goes from the event's task
/// to the finish stage with the event's outcome, and is dropped once the outcome is recorded.
pub(super) struct InFlight(pub(super) Arc<Shared>, pub(super) Arc<str>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&self.1);
    }
}

/// Touch the entries in flight every `every` until `done`, so they never look idle to
/// XAUTOCLAIM while this process works on them.
pub(super) async fn heartbeat(shared: Arc<Shared>, every: Duration, done: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => return,
        }
        let ids: Vec<String> = shared
            .in_flight
            .lock()
            .expect("in-flight lock")
            .iter()
            .map(|id| id.to_string())
            .collect();
        if ids.is_empty() {
            continue;
        }
        match shared.queue.touch(&ids).await {
            Ok(lost) => {
                shared.outage.recovered();
                if lost > 0 {
                    // Cut off from Redis past `claim_idle`: another consumer took them, and
                    // pushes devices this process may be pushing too.
                    warn!(
                        entries = lost,
                        "entries in flight here were reclaimed by another consumer"
                    );
                }
            }
            Err(err) => shared
                .outage
                .failed("touch", "touching entries in flight", &err),
        }
    }
}
