//! One event's task: from its entry to its one outcome, handed to the finish stage.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::in_flight::InFlight;
use super::resolve::{self, Resolution};
use super::{finish, Shared};
use crate::domain::now_ms;
use crate::event::{stream_id_ms, StreamEntry};
use crate::metrics::Stage;

/// Take one event to its outcome and hand it to the finish stage, which records it and
/// acknowledges the entry. The task ends there: the event's slot and its place in the in-flight
/// set go with the outcome ([`finish::Held`]) and are given back once it is recorded (or the
/// daemon stopped hard first), so no task waits, and is woken, for every event's round trip.
pub(super) async fn handle(
    shared: Arc<Shared>,
    jobs: mpsc::Sender<finish::Job>,
    entry: StreamEntry,
    id: Arc<str>,
    slot: OwnedSemaphorePermit,
) {
    let in_flight = InFlight(shared.clone(), id);
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
    let job = finish::Job {
        entry,
        result,
        dead,
        settlement,
        held: finish::Held {
            since: clock.since(),
            _slot: slot,
            _in_flight: in_flight,
        },
    };
    // Fails only when the finish stage stopped hard: the entry stays pending.
    let _ = jobs.send(job).await;
}
