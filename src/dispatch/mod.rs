//! Dispatch: the worker pool between the calls stream and the providers.
//!
//! One reader loop pulls batches from the [`CallQueue`] — first this consumer's own pending
//! entries (after a restart), then new ones, and every so often entries a dead consumer left
//! pending — and spawns one task per event. Memory is bounded twice: an event holds one of
//! `workers.max_in_flight` event slots from read to acknowledgement, so reading pauses while
//! they are all taken (stream lag grows instead of memory), and a push holds one of as many push
//! slots only while its request is in flight. An entry is acknowledged only with its final
//! outcome ([`event::resolve`]); anything unfinished at shutdown stays pending for another
//! consumer.

mod event;
pub mod limits;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::bindings::BindingStore;
use crate::event::StreamEntry;
use crate::ingest::CallQueue;
use crate::providers::Provider;
use event::Resolution;
use retry::RetryPolicy;

/// How the worker pool runs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// Events and pushes in flight at once.
    pub max_in_flight: usize,
    /// Entries read per round trip.
    pub batch_size: usize,
    /// How long one read blocks waiting for entries.
    pub block: Duration,
    /// Reclaim entries other consumers left pending this long.
    pub claim_idle: Duration,
    /// How long in-flight events may take to finish after shutdown starts.
    pub grace: Duration,
    /// Retries of transient provider failures.
    pub retry: RetryPolicy,
}

/// How often idle callees are dropped from the per-callee limiter.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// What event tasks share.
pub(crate) struct Shared {
    store: Arc<dyn BindingStore>,
    queue: Arc<dyn CallQueue>,
    providers: HashMap<String, Arc<dyn Provider>>,
    pushes: Semaphore,
    retry: RetryPolicy,
    limits: limits::Limits,
    /// Cancelled when the grace period is over: tasks stop where they are.
    hard_stop: CancellationToken,
}

/// The worker pool.
pub struct Dispatcher {
    shared: Arc<Shared>,
    events: Arc<Semaphore>,
    options: DispatchOptions,
}

/// Logs a Redis outage once when it starts and once when it ends, not once per failure.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    failures: u32,
}

impl Outage {
    fn failed(&mut self, what: &str, err: &dyn std::fmt::Display) -> Duration {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            error!(error = %err, "{what} failed; retrying until Redis answers");
        }
        Duration::from_millis((100u64 << self.failures.min(5)).min(2_000))
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            info!(failures = self.failures, down_for = ?since.elapsed(), "Redis answers again");
        }
        self.failures = 0;
    }
}

impl Dispatcher {
    /// A pool over `queue` and `store`, pushing through `providers` (keyed by credential SID).
    pub fn new(
        queue: Arc<dyn CallQueue>,
        store: Arc<dyn BindingStore>,
        providers: HashMap<String, Arc<dyn Provider>>,
        limits: limits::Limits,
        options: DispatchOptions,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            queue,
            providers,
            pushes: Semaphore::new(options.max_in_flight),
            retry: options.retry,
            limits,
            hard_stop: CancellationToken::new(),
        });
        Dispatcher {
            shared,
            events: Arc::new(Semaphore::new(options.max_in_flight)),
            options,
        }
    }

    /// Consume the stream until `shutdown` is cancelled, then let in-flight events finish within
    /// the grace period and return. Redis failures are retried, never returned.
    pub async fn run(self, shutdown: CancellationToken) {
        let queue = self.shared.queue.clone();
        let mut outage = Outage::default();
        while let Err(err) = queue.ensure_group().await {
            let wait = outage.failed("creating the consumer group", &err);
            if sleep_or_stop(wait, &shutdown).await {
                return;
            }
        }
        outage.recovered();
        let tracker = TaskTracker::new();
        let shared = self.shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_IDLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => shared.limits.forget_idle(),
                    _ = stop.cancelled() => return,
                }
            }
        });
        let claim_every = (self.options.claim_idle / 2).max(Duration::from_millis(500));
        let mut next_claim = Instant::now();
        let mut own_pending_done = false;
        while !shutdown.is_cancelled() {
            let Some(mut permits) = self.take_slots(&shutdown).await else {
                break;
            };
            let want = permits.num_permits();
            let read = if !own_pending_done {
                queue.read_own_pending(want).await
            } else if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                queue.claim_stale(self.options.claim_idle, want).await
            } else {
                queue.read_new(want, self.options.block).await
            };
            let entries = match read {
                Ok(entries) => {
                    outage.recovered();
                    entries
                }
                Err(err) => {
                    let wait = outage.failed("reading the calls stream", &err);
                    drop(permits);
                    if sleep_or_stop(wait, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if !own_pending_done && entries.len() < want {
                own_pending_done = true;
            }
            for entry in entries {
                let permit = permits
                    .split(1)
                    .expect("no more entries are read than slots were taken");
                let span = tracing::info_span!("event", stream_id = %entry.id, call_sid = entry.field("call_sid").unwrap_or(""));
                tracker.spawn(handle(self.shared.clone(), entry, permit).instrument(span));
            }
        }
        tracker.close();
        if !tracker.is_empty() {
            info!(events = tracker.len(), grace = ?self.options.grace, "stopping: finishing events in flight");
        }
        if tokio::time::timeout(self.options.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                events = tracker.len(),
                "grace period over; unfinished events stay pending for another consumer"
            );
            self.shared.hard_stop.cancel();
            tracker.wait().await;
        }
    }

    /// Wait for at least one free event slot, then take as many as are free, up to a batch.
    async fn take_slots(&self, shutdown: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        let mut permits = tokio::select! {
            p = self.events.clone().acquire_owned() => p.expect("the event semaphore is never closed"),
            _ = shutdown.cancelled() => return None,
        };
        let more = self
            .events
            .available_permits()
            .min(self.options.batch_size.saturating_sub(1));
        if more > 0 {
            if let Ok(extra) = self.events.clone().try_acquire_many_owned(more as u32) {
                permits.merge(extra);
            }
        }
        Some(permits)
    }
}

/// True when `shutdown` fired during the wait.
async fn sleep_or_stop(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Take one event to its outcome, record it and acknowledge the entry.
async fn handle(shared: Arc<Shared>, entry: StreamEntry, _slot: OwnedSemaphorePermit) {
    let (result, dead) = match event::resolve(&shared, &entry).await {
        Resolution::Final(result, dead) => (result, dead),
        Resolution::LeavePending => return,
    };
    let mut outage = Outage::default();
    loop {
        match shared.queue.finish(&entry, &result, dead.as_ref()).await {
            Ok(()) => {
                // Delivered is the common case: keep it out of the default log volume.
                if result.outcome == crate::outcome::EventOutcome::Delivered {
                    tracing::debug!(
                        devices = result.devices,
                        delivered = result.delivered,
                        "event delivered"
                    );
                } else {
                    info!(outcome = %result.outcome, devices = result.devices, "event finished");
                }
                return;
            }
            Err(err) => {
                let wait = outage.failed("recording the outcome", &err);
                if sleep_or_stop(wait, &shared.hard_stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
