//! Dispatch: the worker pool between the calls stream and the providers.
//!
//! One reader loop pulls batches from the [`CallQueue`] — first this consumer's own pending
//! entries (after a restart), then new ones, and every so often entries a dead consumer left
//! pending — and spawns one task per event ([`event_task`]). Memory is bounded twice: an event holds one of
//! `workers.max_in_flight` event slots from read to acknowledgement, so reading pauses while
//! they are all taken (stream lag grows instead of memory), and a push holds one of as many push
//! slots only while its request is in flight. An entry is acknowledged only with its final
//! outcome ([`resolve`], where the stages of one event live). The round trips to Redis are
//! shared by the events of the moment ([`batch`]): the bindings of many events are read
//! together, their first claims made together, and their outcomes recorded together
//! ([`finish`]: one round trip for the ledger, one for the outcomes and acknowledgements);
//! anything unfinished when the daemon stops hard stays pending for another consumer.
//!
//! Failures stay where they start: each credential also has its own cap of push slots (half the
//! pool when there are several credentials), taken before a pool slot, so a credential that hangs
//! or times out cannot hold every slot the others need. Entries being worked on
//! ([`in_flight`]) are touched every `claim_idle / 3`, so no consumer (this one included)
//! reclaims an event that is only slow — say, waiting out a provider's `Retry-After`. Redis
//! outages are logged once, however many events notice them ([`outage`]).

mod batch;
mod environment;
mod event_task;
mod finish;
mod in_flight;
pub mod ledger;
pub(crate) mod limits;
mod outage;
pub mod providers;
mod push;
mod quota;
mod resolve;
pub(crate) mod retry;
mod slots;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, Instrument};

use crate::bindings::BindingStore;
use crate::ingest::CallQueue;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use event_task::handle;
use in_flight::heartbeat;
use ledger::SentLedger;
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
    /// Retries of transient provider failures.
    pub retry: RetryPolicy,
    /// Serve every store request of the batch stages on its own instead of in batches: on a
    /// Redis Cluster, where a batch's keys live on different nodes and one hung node would
    /// otherwise hold every event of the batch ([`batch`]).
    pub split_batches: bool,
}

/// What the worker pool works with, each built by the daemon.
pub struct DispatchParts {
    /// The calls stream.
    pub queue: Arc<dyn CallQueue>,
    /// The bindings.
    pub store: Arc<dyn BindingStore>,
    /// Which devices each call already pushed (shared by every daemon of the group).
    pub ledger: Arc<dyn SentLedger>,
    /// One provider per credential SID (replaced by a reload).
    pub providers: Arc<providers::ProviderSet>,
    /// Per-credential and per-callee rate limits.
    pub limits: limits::Limits,
    /// Events, latency, retries, prunes, call rate limits and Redis errors are counted here.
    pub metrics: Arc<Metrics>,
}

/// How often idle callees are dropped from the per-callee limiter.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// What event tasks share.
pub(crate) struct Shared {
    store: Arc<dyn BindingStore>,
    queue: Arc<dyn CallQueue>,
    providers: Arc<providers::ProviderSet>,
    /// Which devices each call already pushed.
    ledger: Arc<dyn SentLedger>,
    /// This process's consumer name, as its ledger claims record it.
    consumer: Arc<str>,
    /// A random id of this process, new at every start (see [`ledger::Holder`]).
    instance: Arc<str>,
    /// Push slots of the pool.
    pushes: Semaphore,
    /// Push slots of each credential (by SID), taken before a pool slot.
    credential_slots: slots::CredentialSlots,
    retry: RetryPolicy,
    limits: limits::Limits,
    /// Credentials paused because their provider says they are over quota.
    quota: quota::QuotaGates,
    /// Whether Redis is failing, logged once per outage.
    outage: Outage,
    /// Stream ids of the entries this process is working on.
    in_flight: Mutex<HashSet<Arc<str>>>,
    /// Cancelled when the grace period is over: tasks stop where they are.
    hard_stop: CancellationToken,
    /// Events, latency, retries, prunes, call rate limits.
    metrics: Arc<Metrics>,
    /// Where event tasks ask for bindings and claims, served for many events at once; `None`
    /// (the unit tests' pools): each event asks the store and the ledger itself.
    batches: Option<Batches>,
}

/// The stages that serve many events' requests at once ([`batch`]).
struct Batches {
    lookups: mpsc::Sender<resolve::Lookup>,
    claims: mpsc::Sender<resolve::ClaimAsk>,
}

/// The other ends of [`Batches`], taken by [`Dispatcher::run`].
struct Inboxes {
    lookups: mpsc::Receiver<resolve::Lookup>,
    claims: mpsc::Receiver<resolve::ClaimAsk>,
}

/// A random id for this process's ledger claims.
fn new_instance() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The worker pool.
pub struct Dispatcher {
    shared: Arc<Shared>,
    events: Arc<Semaphore>,
    options: DispatchOptions,
    inboxes: Option<Inboxes>,
}

impl Dispatcher {
    /// A pool over `parts`, stopping hard when `hard_stop` is cancelled.
    pub fn new(
        parts: DispatchParts,
        options: DispatchOptions,
        hard_stop: CancellationToken,
    ) -> Self {
        // Each event task has at most one request out at a time.
        let capacity = options.max_in_flight.max(1);
        let (lookups, lookup_inbox) = mpsc::channel(capacity);
        let (claims, claim_inbox) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            consumer: parts.queue.consumer().into(),
            instance: new_instance().into(),
            store: parts.store,
            queue: parts.queue,
            credential_slots: slots::CredentialSlots::new(
                &parts.providers.snapshot(),
                options.max_in_flight,
            ),
            quota: quota::QuotaGates::new(&parts.providers.snapshot()),
            providers: parts.providers,
            ledger: parts.ledger,
            pushes: Semaphore::new(options.max_in_flight),
            retry: options.retry,
            limits: parts.limits,
            outage: Outage::new(parts.metrics.clone()),
            in_flight: Mutex::default(),
            hard_stop,
            metrics: parts.metrics,
            batches: Some(Batches { lookups, claims }),
        });
        // A credential a reload adds gets its slots and its quota gate as those of the start
        // did (the limits follow the settings: `limits::Rules::apply`).
        let weak = Arc::downgrade(&shared);
        shared.providers.on_replace(move |providers| {
            if let Some(shared) = weak.upgrade() {
                shared.credential_slots.adopt(providers);
                shared.quota.adopt(providers);
            }
        });
        Dispatcher {
            shared,
            events: Arc::new(Semaphore::new(options.max_in_flight)),
            options,
            inboxes: Some(Inboxes {
                lookups: lookup_inbox,
                claims: claim_inbox,
            }),
        }
    }

    /// Consume the stream until shutdown begins, then let in-flight events finish until the
    /// lifecycle stops hard, and return. Redis failures are retried, never returned.
    pub async fn run(mut self, life: Lifecycle) {
        let shutdown = life.stopping();
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
        life.spawn(forget_idle_callees(self.shared.clone(), life.stopping()));
        let all_done = CancellationToken::new();
        life.spawn(heartbeat(
            self.shared.clone(),
            self.options.claim_idle / 3,
            all_done.clone(),
        ));
        // Bounded by the event slots already: a job holds one.
        let (jobs, finished) = mpsc::channel(self.options.max_in_flight.max(1));
        let finishing = life.spawn(finish::run(
            self.shared.clone(),
            finished,
            self.options.batch_size.max(1),
            self.options.split_batches,
            self.shared.hard_stop.clone(),
        ));
        if let Some(inboxes) = self.inboxes.take() {
            self.serve_batches(
                &life,
                inboxes.lookups,
                &all_done,
                |shared, batch| async move { resolve::serve_lookups(&shared, batch).await },
            );
            self.serve_batches(
                &life,
                inboxes.claims,
                &all_done,
                |shared, batch| async move { resolve::serve_claims(&shared, batch).await },
            );
        }
        let claim_every = (self.options.claim_idle / 2).max(Duration::from_millis(500));
        let mut next_claim = Instant::now();
        // This consumer's pending entries are read once, oldest first, from a cursor: reading
        // from `0` again would return entries already in flight here, and an entry that
        // finished between the read and its start would run a second time.
        let mut own_pending_done = false;
        let mut own_cursor = "0".to_string();
        while !shutdown.is_cancelled() {
            let Some(mut permits) = self.take_slots(&shutdown).await else {
                break;
            };
            if queue.take_recovered() {
                // Entries the queue handed to this consumer while a part of it was down may
                // never have reached this process: read its pending entries again (those in
                // flight here are skipped below).
                own_pending_done = false;
                own_cursor = "0".to_string();
            }
            let want = permits.num_permits();
            let read = if !own_pending_done {
                queue.read_own_pending(&own_cursor, want).await
            } else if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                queue.claim_stale(self.options.claim_idle, want).await
            } else if queue.read_is_cancel_safe() {
                tokio::select! {
                    read = queue.read_new(want, self.options.block) => read,
                    _ = shutdown.cancelled() => break,
                }
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
            if !own_pending_done {
                own_pending_done = entries.len() < want;
                if let Some(last) = entries.last() {
                    own_cursor = last.id.clone();
                }
            }
            for entry in entries {
                // A reclaimed entry this process is still working on (its touches failed
                // during an outage) must not run twice here.
                let Some(id) = self.shared.start(&entry.id) else {
                    continue;
                };
                let permit = permits
                    .split(1)
                    .expect("no more entries are read than slots were taken");
                let span = tracing::info_span!("event", stream_id = %entry.id, call_sid = entry.field("call_sid").unwrap_or(""));
                let event = handle(self.shared.clone(), jobs.clone(), entry, id, permit);
                tracker.spawn(event.instrument(span));
            }
        }
        tracker.close();
        if !tracker.is_empty() {
            info!(
                events = tracker.len(),
                "stopping: finishing events in flight"
            );
        }
        // Events watch the hard stop themselves and return at once when it comes; the outcomes
        // they handed over are recorded before the stages stop.
        tracker.wait().await;
        drop(jobs);
        let _ = finishing.await;
        all_done.cancel();
    }

    /// Serve the requests of `inbox` in batches ([`batch`]: one round trip each) until `all_done`.
    fn serve_batches<R, S, Fut>(
        &self,
        life: &Lifecycle,
        inbox: mpsc::Receiver<R>,
        all_done: &CancellationToken,
        serve: S,
    ) where
        R: Send + 'static,
        S: Fn(Arc<Shared>, Vec<R>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let shared = self.shared.clone();
        life.spawn(batch::run(
            inbox,
            self.options.batch_size.max(1),
            batch::IN_FLIGHT,
            self.options.split_batches,
            all_done.clone(),
            move |batch| serve(shared.clone(), batch),
        ));
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

/// Drop idle callees from the per-callee limiter every [`FORGET_IDLE_EVERY`] (governor's keyed
/// limiters keep every key until told), until shutdown.
async fn forget_idle_callees(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FORGET_IDLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.limits.forget_idle(),
            _ = stop.cancelled() => return,
        }
    }
}

/// True when `shutdown` fired during the wait.
async fn sleep_or_stop(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delivery;
#[cfg(test)]
mod tests_providers;
