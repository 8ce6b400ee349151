//! Ingest: reading call events from the calls stream with a consumer group (SPEC §5), and
//! finishing them. The trait is narrow so an in-memory queue can stand in for Redis (`callpush
//! dev`); `redis` is the production queue (its module header documents the keys).

pub mod redis;

use std::time::Duration;

use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult};

/// Errors of the call queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// The calls stream as the worker pool sees it.
#[async_trait::async_trait]
pub trait CallQueue: Send + Sync + 'static {
    /// Create the consumer group (and the stream) when missing. Idempotent.
    async fn ensure_group(&self) -> Result<(), QueueError>;

    /// Read up to `max` entries never delivered to any consumer, blocking up to `block` when
    /// there are none. Returns an empty batch on timeout.
    async fn read_new(&self, max: usize, block: Duration) -> Result<Vec<StreamEntry>, QueueError>;

    /// Entries this consumer already read but never acknowledged (after a restart with the same
    /// consumer name), up to `max`.
    async fn read_own_pending(&self, max: usize) -> Result<Vec<StreamEntry>, QueueError>;

    /// Take over entries other consumers left pending for at least `min_idle` (XAUTOCLAIM), up
    /// to `max`. Entries deleted from the stream meanwhile are acknowledged and skipped.
    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, QueueError>;

    /// Keep entries this consumer is working on from looking idle (and being reclaimed by
    /// another consumer). The default does nothing, for queues no one else reads.
    async fn touch(&self, _ids: &[String]) -> Result<(), QueueError> {
        Ok(())
    }

    /// Record the event's outcome and acknowledge its entry, atomically: the result entry (when
    /// results are enabled), the dead letter (when there is one) and the acknowledgement — and
    /// nothing at all when the entry was acknowledged already (another consumer finished it
    /// first), so every entry gets exactly one outcome.
    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), QueueError>;

    /// Append an event to the calls stream (the `enqueue` CLI, `POST /v1/calls`). Returns the
    /// stream id.
    async fn enqueue(&self, fields: &[(String, String)]) -> Result<String, QueueError>;
}
