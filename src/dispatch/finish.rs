//! The finish stage, for many events at once: one task takes the outcomes event tasks hand it,
//! as many as are ready (up to a read batch; several batches in flight, [`super::batch`]), and
//! records them in two round trips however many
//! there are — first the ledger settlements of every event (sent and released claims), then the
//! outcomes and acknowledgements ([`CallQueue::finish_many`]: one script call per stream
//! shard). The order is the guarantee: an entry is acknowledged only once its accepted push is
//! recorded, so a later attempt of the call never pushes that device again.
//!
//! A failed round trip is repeated (both are safe to repeat) with backoff until it succeeds or
//! the daemon stops hard; then the events of the batch stay pending, as an event does whose
//! task stops there. The outcomes are answered one by one: an event whose outcome is recorded
//! is told at once, and only the ones that failed for a reason that may pass (their shard down
//! or hung) are tried again; one the store refuses for good even as a bare dead letter stays
//! pending (`crate::ingest::redis`). Event tasks wait for their outcome to be recorded: they
//! hold their event slot and stay in flight (touched, [`super::heartbeat`]) until then.
//!
//! [`CallQueue::finish_many`]: crate::ingest::CallQueue::finish_many

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::ledger::Settlement;
use super::outage::Backoff;
use super::{batch, sleep_or_stop, Shared};
use crate::event::StreamEntry;
use crate::ingest::Finish;
use crate::outcome::{DeadLetter, EventResult};

/// One event's outcome, on its way to be recorded.
pub(super) struct Job {
    pub(super) entry: StreamEntry,
    pub(super) result: EventResult,
    pub(super) dead: Option<DeadLetter>,
    pub(super) settlement: Option<Settlement>,
    /// Answered once the outcome is recorded; dropped when the daemon stopped hard first.
    pub(super) done: oneshot::Sender<()>,
}

/// Record the jobs `jobs` brings, up to `max` per round trip and [`batch::IN_FLIGHT`] batches
/// at once, until `all_done` (every event task has ended, so none waits).
pub(super) async fn run(
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    max: usize,
    all_done: CancellationToken,
) {
    batch::run(jobs, max, batch::IN_FLIGHT, all_done, move |batch| {
        finish(shared.clone(), batch)
    })
    .await
}

/// Record one batch and tell its event tasks, each as soon as its own outcome is recorded.
/// When the daemon stops hard first, the entries not yet recorded stay pending and their tasks
/// see the answer dropped.
async fn finish(shared: Arc<Shared>, batch: Vec<Job>) {
    if !settle(&shared, &batch).await {
        return;
    }
    let mut waiting = batch;
    let mut backoff = Backoff::default();
    loop {
        let answers = {
            let items: Vec<Finish> = waiting
                .iter()
                .map(|j| Finish {
                    entry: &j.entry,
                    result: &j.result,
                    dead: j.dead.as_ref(),
                })
                .collect();
            shared.queue.finish_many(&items).await
        };
        let mut failed = Vec::new();
        let mut error = None;
        for (job, answer) in waiting.into_iter().zip(answers) {
            match answer {
                Ok(()) => answer_recorded(&shared, job),
                Err(err) if err.is_transient() => {
                    error.get_or_insert(err);
                    failed.push(job);
                }
                // Refused for good even as a dead letter without the event's fields: the
                // shard's own streams are broken. Retrying here would hold this batch until an
                // operator fixes them; the entry stays pending instead (its task ends, its slot
                // is freed) and is reclaimed after `stream.claim_idle_ms`.
                Err(err) => {
                    shared.metrics.redis_error("finish");
                    tracing::warn!(stream_id = %job.entry.id, error = %err, "the outcome cannot be recorded; the entry stays pending");
                }
            }
        }
        let Some(error) = error else {
            shared.outage.recovered();
            return;
        };
        shared
            .outage
            .failed("finish", "recording the outcome", &error);
        if sleep_or_stop(backoff.next(), &shared.hard_stop).await {
            return;
        }
        waiting = failed;
    }
}

/// Count a recorded outcome and tell its event task.
fn answer_recorded(shared: &Shared, job: Job) {
    let kind = job.entry.field("type").unwrap_or("unknown");
    shared.metrics.event(kind, job.result.outcome.as_str());
    let _ = job.done.send(());
}

/// Settle the ledger claims of `batch` (safe to repeat, so repeated until it succeeds); false
/// when the daemon stopped hard first.
async fn settle(shared: &Shared, batch: &[Job]) -> bool {
    let settlements: Vec<&Settlement> = batch
        .iter()
        .filter_map(|j| j.settlement.as_ref())
        .filter(|s| !s.devices.is_empty())
        .collect();
    if settlements.is_empty() {
        return true;
    }
    retry(shared, "settle_devices", "recording device claims", || {
        shared.ledger.settle_many(&settlements)
    })
    .await
}

/// Run `op` until it succeeds (true) or the daemon stops hard (false), logging an outage once.
async fn retry<'a, F, Fut>(
    shared: &Shared,
    op_name: &'static str,
    what: &'static str,
    op: F,
) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::backend::BackendError>> + 'a,
{
    let mut backoff = Backoff::default();
    loop {
        match op().await {
            Ok(()) => {
                shared.outage.recovered();
                return true;
            }
            Err(err) => {
                shared.outage.failed(op_name, what, &err);
                if sleep_or_stop(backoff.next(), &shared.hard_stop).await {
                    return false;
                }
            }
        }
    }
}
