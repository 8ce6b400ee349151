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
//!
//! Failures stay where they start: each credential also has its own cap of push slots (half the
//! pool when there are several credentials), taken before a pool slot, so a credential that hangs
//! or times out cannot hold every slot the others need. Entries being worked on are touched
//! every `claim_idle / 3`, so no consumer (this one included) reclaims an event that is only
//! slow — say, waiting out a provider's `Retry-After`. Redis outages are logged once, however
//! many events notice them ([`outage`]).

pub mod dedup;
mod event;
pub mod limits;
mod outage;
mod push;
pub mod retry;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::bindings::BindingStore;
use crate::event::StreamEntry;
use crate::ingest::CallQueue;
use crate::metrics::Metrics;
use crate::providers::Provider;
use dedup::{MemoryLedger, SentLedger};
use event::Resolution;
use outage::{Backoff, Outage};
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
    /// Which devices each call already pushed.
    ledger: Arc<dyn SentLedger>,
    /// Push slots of the pool.
    pushes: Semaphore,
    /// Push slots of each credential (by SID), taken before a pool slot.
    credential_slots: HashMap<String, Semaphore>,
    retry: RetryPolicy,
    limits: limits::Limits,
    /// Whether Redis is failing, logged once per outage.
    outage: Outage,
    /// Stream ids of the entries this process is working on.
    in_flight: Mutex<HashSet<String>>,
    /// Cancelled when the grace period is over: tasks stop where they are.
    hard_stop: CancellationToken,
    /// Events, latency, retries, prunes, call rate limits.
    metrics: Arc<Metrics>,
}

/// Push slots of each credential: all of them with one credential, else half the pool (at least
/// one), so one stuck credential leaves at least half the pool to the others.
fn credential_slots(
    providers: &HashMap<String, Arc<dyn Provider>>,
    max_in_flight: usize,
) -> HashMap<String, Semaphore> {
    let cap = if providers.len() > 1 {
        max_in_flight.div_ceil(2).max(1)
    } else {
        max_in_flight.max(1)
    };
    providers
        .keys()
        .map(|sid| (sid.clone(), Semaphore::new(cap)))
        .collect()
}

/// The worker pool.
pub struct Dispatcher {
    shared: Arc<Shared>,
    events: Arc<Semaphore>,
    options: DispatchOptions,
}

impl Dispatcher {
    /// A pool over `queue` and `store`, pushing through `providers` (keyed by credential SID).
    /// Pushes are remembered in a [`MemoryLedger`] until [`Dispatcher::with_ledger`] says
    /// otherwise (several daemons must share a ledger in Redis).
    pub fn new(
        queue: Arc<dyn CallQueue>,
        store: Arc<dyn BindingStore>,
        providers: HashMap<String, Arc<dyn Provider>>,
        limits: limits::Limits,
        options: DispatchOptions,
    ) -> Self {
        // Metrics of its own until `with_metrics`: a pool always counts, whoever reads it.
        let credentials = providers
            .values()
            .map(|p| (p.platform(), p.credential().to_string()))
            .collect::<Vec<_>>();
        let metrics = Metrics::new(
            &prometheus::Registry::new(),
            credentials.iter().map(|(p, c)| (*p, c.as_str())),
        )
        .expect("a fresh registry takes every metric");
        let shared = Arc::new(Shared {
            store,
            queue,
            credential_slots: credential_slots(&providers, options.max_in_flight),
            providers,
            ledger: Arc::new(MemoryLedger::default()),
            pushes: Semaphore::new(options.max_in_flight),
            retry: options.retry,
            limits,
            outage: Outage::new(metrics.clone()),
            in_flight: Mutex::default(),
            hard_stop: CancellationToken::new(),
            metrics,
        });
        Dispatcher {
            shared,
            events: Arc::new(Semaphore::new(options.max_in_flight)),
            options,
        }
    }

    /// Remember pushes in `ledger` (`dedup::redis::RedisSentLedger` in production).
    pub fn with_ledger(mut self, ledger: Arc<dyn SentLedger>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("the pool is not running yet")
            .ledger = ledger;
        self
    }

    /// Count events, retries, prunes and rate limits in `metrics` (the daemon's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        let shared = Arc::get_mut(&mut self.shared).expect("the pool is not running yet");
        shared.outage = Outage::new(metrics.clone());
        shared.metrics = metrics;
        self
    }

    /// Consume the stream until `shutdown` is cancelled, then let in-flight events finish within
    /// the grace period and return. Redis failures are retried, never returned.
    pub async fn run(self, shutdown: CancellationToken) {
        let queue = self.shared.queue.clone();
        let outage = &self.shared.outage;
        let mut backoff = Backoff::default();
        while let Err(err) = queue.ensure_group().await {
            outage.failed("create_group", "creating the consumer group", &err);
            if sleep_or_stop(backoff.next(), &shutdown).await {
                return;
            }
        }
        outage.recovered();
        backoff.reset();
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
        let all_done = CancellationToken::new();
        tokio::spawn(heartbeat(
            self.shared.clone(),
            self.options.claim_idle / 3,
            all_done.clone(),
        ));
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
                    backoff.reset();
                    entries
                }
                Err(err) => {
                    outage.failed("read_stream", "reading the calls stream", &err);
                    drop(permits);
                    if sleep_or_stop(backoff.next(), &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if !own_pending_done && entries.len() < want {
                own_pending_done = true;
            }
            for entry in entries {
                // A reclaimed entry this process is still working on (its touches failed
                // during an outage) must not run twice here.
                if !self.shared.start(&entry.id) {
                    continue;
                }
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
        all_done.cancel();
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

impl Shared {
    /// Note that work on `id` starts; false when it is already in flight here.
    fn start(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(id.to_string())
    }
}

/// Forgets an entry from the in-flight set however its task ends.
struct InFlight<'a>(&'a Shared, &'a str);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .lock()
            .expect("in-flight lock")
            .remove(self.1);
    }
}

/// Touch the entries in flight every `every` until `done`, so they never look idle to
/// XAUTOCLAIM while this process works on them.
async fn heartbeat(shared: Arc<Shared>, every: Duration, done: CancellationToken) {
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
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        match shared.queue.touch(&ids).await {
            Ok(()) => shared.outage.recovered(),
            Err(err) => shared
                .outage
                .failed("touch", "touching entries in flight", &err),
        }
    }
}

/// Take one event to its outcome, record it and acknowledge the entry.
async fn handle(shared: Arc<Shared>, entry: StreamEntry, _slot: OwnedSemaphorePermit) {
    let _in_flight = InFlight(&shared, &entry.id);
    let (result, dead) = match event::resolve(&shared, &entry).await {
        Resolution::Final(result, dead) => (result, dead),
        Resolution::LeavePending => return,
    };
    let mut backoff = Backoff::default();
    loop {
        match shared.queue.finish(&entry, &result, dead.as_ref()).await {
            Ok(()) => {
                shared.outage.recovered();
                let kind = entry.field("type").unwrap_or("unknown");
                shared.metrics.event(kind, result.outcome.as_str());
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
                shared
                    .outage
                    .failed("finish", "recording the outcome", &err);
                if sleep_or_stop(backoff.next(), &shared.hard_stop).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delivery;
