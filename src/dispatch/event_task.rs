//! One event's task: from its entry to its one outcome, handed to the finish stage.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::info;

use super::in_flight::InFlight;
use super::resolve::{self, Resolution};
use super::{finish, Shared};
use crate::domain::now_ms;
use crate::event::{stream_id_ms, StreamEntry};
use crate::metrics::Stage;
use crate::outcome::EventOutcome;

/// Take one event to its outcome and hand it to the finish stage; return once it is recorded
/// and the entry acknowledged (or the daemon stopped hard first).
pub(super) async fn handle(
    shared: Arc<Shared>,
    jobs: mpsc::Sender<finish::Job>,
    entry: StreamEntry,
    id: Arc<str>,
    _slot: OwnedSemaphorePermit,
) {
    let _in_flight = InFlight(&shared, id);
    if let Some(at) = stream_id_ms(&entry.id) {
        let waited = now_ms().saturating_sub(at) as f64 / 1000.0;
        shared.metrics.stages.observe(Stage::Read, waited);
    }
    let mut clock = shared.metrics.stages.clock();
    let (result, dead, settlement) = match resolve::resolve_timed(&shared, &entry, &mut clock).await
    {
        Resolution::Final(result, dead, settlement) => (result, dead, settlement),
        Resolution::LeavePending => return,
    };
    let (outcome, devices, delivered) = (result.outcome, result.devices, result.delivered);
    let (done, recorded) = oneshot::channel();
    let job = finish::Job {
        entry,
        result,
        dead,
        settlement,
        done,
    };
    // Either fails only when the finish stage stopped hard: the entry stays pending.
    if jobs.send(job).await.is_err() || recorded.await.is_err() {
        return;
    }
    clock.lap(Stage::Finish);
    // Delivered is the common case: keep it out of the default log volume.
    if outcome == EventOutcome::Delivered {
        tracing::debug!(devices, delivered, "event delivered");
    } else {
        info!(%outcome, devices, "event finished");
    }
}
