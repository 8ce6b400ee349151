//! The finish stage, for many events at once: one task takes the outcomes event tasks hand it,
//! as many as are ready (up to a read batch; several batches in flight, [`super::batch`]), and
//! records them in two round trips however many there are — first the ledger settlements of
//! every event (sent and released claims), then the outcomes and acknowledgements
//! ([`CallQueue::finish_many`]: one script call per stream shard). The order is the guarantee:
//! an entry is acknowledged only once its accepted push is recorded, so a later attempt of the
//! call never pushes that device again.
//!
//! A batch shares its round trips, never its fate: each event is let go as soon as its own
//! outcome is recorded, and the events whose settlement or outcome could not be recorded
//! (transient failures: an outage, a hung node) are tried again on their own, with backoff,
//! until they are recorded or the daemon stops hard — then they stay pending, as an event does
//! whose task stops there. An outcome the store refuses for good even as a bare dead letter
//! (the shard's own streams are broken, `crate::ingest::redis`) is not retried here: the entry
//! stays pending and is reclaimed after `stream.claim_idle_ms`. A settlement the store refuses for good (its ledger key holds
//! something else) is logged and counted, and the outcome is recorded all the same: there is
//! nothing better to do with that call's ledger. An event holds its event slot and stays in
//! flight (touched, [`super::heartbeat`]) until its outcome is recorded: its task hands both
//! over with the outcome ([`Held`]) and ends there, and this stage gives them back.
//!
//! [`CallQueue::finish_many`]: crate::ingest::CallQueue::finish_many

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::in_flight::InFlight;
use super::ledger::Settlement;
use super::outage::{Backoff, StoreFailure};
use super::{batch, sleep_or_stop, Shared};
use crate::event::StreamEntry;
use crate::ingest::Finish;
use crate::metrics::Stage;
use crate::outcome::{DeadLetter, EventOutcome, EventResult};

/// One event's outcome, on its way to be recorded.
pub(super) struct Job {
    pub(super) entry: StreamEntry,
    pub(super) result: EventResult,
    pub(super) dead: Option<DeadLetter>,
    /// How the event's claims end; `None` once recorded (or when there is nothing to settle).
    pub(super) settlement: Option<Settlement>,
    /// What the event holds until its outcome is recorded, given back when the job is dropped
    /// (recorded, or the daemon stopped hard first).
    pub(super) held: Held,
}

/// What an event holds from its read until its outcome is recorded.
pub(super) struct Held {
    /// When the finish stage began for it (`callpush_stage_seconds{stage="finish"}`).
    pub(super) since: Instant,
    /// Its event slot: reading pauses while every slot is taken.
    pub(super) _slot: OwnedSemaphorePermit,
    /// Its entry in the in-flight set, touched by the heartbeat so no consumer reclaims it.
    pub(super) _in_flight: InFlight,
}

/// Record the jobs `jobs` brings, up to `max` per round trip and [`batch::IN_FLIGHT`] batches
/// at once (each job alone with `split`, see [`batch::run`]), until every sender is gone (the
/// reader and every event task ended, so every outcome handed over is recorded) or the daemon
/// stops hard (`hard_stop`: the jobs not recorded yet stay pending).
pub(super) async fn run(
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    max: usize,
    split: bool,
    hard_stop: CancellationToken,
) {
    // The jobs a batch could not record are retried on their own tasks; the stage ends only
    // once they are recorded too (or the daemon stops hard), so a graceful stop during an
    // outage keeps their entries in flight (touched) until then.
    let retries = TaskTracker::new();
    let retrying = retries.clone();
    batch::run(
        jobs,
        max,
        batch::IN_FLIGHT,
        split,
        hard_stop,
        move |batch| finish(shared.clone(), batch, retrying.clone()),
    )
    .await;
    retries.close();
    retries.wait().await;
}

/// Record one batch, letting each event go as soon as its outcome is recorded; the events that
/// could not be recorded are tried again on their own (on `retries`), so the next batch does
/// not wait for them.
async fn finish(shared: Arc<Shared>, batch: Vec<Job>, retries: TaskTracker) {
    let left = record(&shared, batch).await;
    if !left.is_empty() {
        retries.spawn(record_until_done(shared, left));
    }
}

/// Where one job stands after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Recorded: the event is let go.
    Recorded,
    /// Not yet: the store did not answer, or its settlement waits; tried again.
    Waiting,
    /// The store refused its outcome for good: it stays pending.
    Refused,
}

/// Try `jobs` again with backoff until every one is recorded or the daemon stops hard (their
/// entries then stay pending).
async fn record_until_done(shared: Arc<Shared>, mut jobs: Vec<Job>) {
    let mut backoff = Backoff::default();
    while !jobs.is_empty() {
        if sleep_or_stop(backoff.next(), &shared.hard_stop).await {
            return;
        }
        jobs = record(&shared, jobs).await;
    }
}

/// Settle, then finish, every job of `jobs`; answer each one recorded and return the rest.
async fn record(shared: &Shared, mut jobs: Vec<Job>) -> Vec<Job> {
    let settling: Vec<usize> = (0..jobs.len())
        .filter(|i| {
            jobs[*i]
                .settlement
                .as_ref()
                .is_some_and(|s| !s.devices.is_empty())
        })
        .collect();
    let mut unsettled = vec![false; jobs.len()];
    if !settling.is_empty() {
        let settlements: Vec<&Settlement> = settling
            .iter()
            .filter_map(|i| jobs[*i].settlement.as_ref())
            .collect();
        let settled = shared.ledger.settle_many(&settlements).await;
        let judged = shared
            .outage
            .judge_all("settle_devices", "recording device claims", settled);
        for (i, answer) in settling.into_iter().zip(judged) {
            match answer {
                // Refused for good: the outcome is recorded all the same (module docs).
                Ok(()) | Err(StoreFailure::Refused(_)) => jobs[i].settlement = None,
                Err(StoreFailure::Unavailable) => unsettled[i] = true,
            }
        }
    }
    let ready: Vec<usize> = (0..jobs.len()).filter(|i| !unsettled[*i]).collect();
    let items: Vec<Finish> = ready
        .iter()
        .map(|i| Finish {
            entry: &jobs[*i].entry,
            result: &jobs[*i].result,
            dead: jobs[*i].dead.as_ref(),
        })
        .collect();
    let finished = shared.queue.finish_many(&items).await;
    drop(items);
    let judged = shared
        .outage
        .judge_all("finish", "recording the outcome", finished);
    let mut fates = vec![Fate::Waiting; jobs.len()];
    for (i, answer) in ready.into_iter().zip(judged) {
        fates[i] = match answer {
            Ok(()) => Fate::Recorded,
            Err(StoreFailure::Unavailable) => Fate::Waiting,
            Err(StoreFailure::Refused(_)) => Fate::Refused,
        };
    }
    let mut left = Vec::new();
    for (job, fate) in jobs.into_iter().zip(fates) {
        match fate {
            Fate::Recorded => recorded(shared, job),
            Fate::Waiting => left.push(job),
            // Refused even as a dead letter without the event's fields: the shard's own streams
            // are broken (`crate::ingest::redis`). Retrying would only wait for an operator;
            // the entry stays pending instead (its slot is freed) and is reclaimed after
            // `stream.claim_idle_ms`.
            Fate::Refused => drop(job),
        }
    }
    if !left.is_empty() {
        debug!(
            events = left.len(),
            "outcomes not recorded yet; tried again"
        );
    }
    left
}

/// `job`'s outcome is recorded and its entry acknowledged: count it, and give back what it held.
fn recorded(shared: &Shared, job: Job) {
    let kind = job.entry.field("type").unwrap_or("unknown");
    shared.metrics.event(kind, job.result.outcome.as_str());
    let waited = job.held.since.elapsed().as_secs_f64();
    shared.metrics.stages.observe(Stage::Finish, waited);
    let (outcome, devices, delivered) =
        (job.result.outcome, job.result.devices, job.result.delivered);
    // Delivered is the common case: keep it out of the default log volume.
    if outcome == EventOutcome::Delivered {
        debug!(stream_id = %job.entry.id, call_sid = %job.result.call_sid, devices, delivered, "event delivered");
    } else {
        info!(stream_id = %job.entry.id, call_sid = %job.result.call_sid, %outcome, devices, "event finished");
    }
}
