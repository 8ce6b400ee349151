//! Ingest: reading call events from the calls stream with a consumer group (SPEC §5), and
//! finishing them: [`CallQueue::finish`] records an event's one outcome and acknowledges its
//! entry in one step (the dispatcher decides the outcome; this module only stores it). The
//! trait is narrow so an in-memory queue can stand in for Redis (`callpush dev`); `redis` is
//! the production queue (its module header documents the keys).

pub mod redis;

use std::time::Duration;

use crate::backend::BackendError;
use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult};

/// One event's outcome for [`CallQueue::finish_many`].
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// The entry to acknowledge.
    pub entry: &'a StreamEntry,
    /// Its result.
    pub result: &'a EventResult,
    /// Its dead letter, when there is one.
    pub dead: Option<&'a DeadLetter>,
}

/// [`CallQueue::finish`] for a queue whose [`CallQueue::finish_many`] does the work (the Redis
/// queue, the sharded one): the one item through it, and its answer.
pub(crate) async fn finish_through_many<Q: CallQueue + ?Sized>(
    queue: &Q,
    entry: &StreamEntry,
    result: &EventResult,
    dead: Option<&DeadLetter>,
) -> Result<(), BackendError> {
    let item = Finish {
        entry,
        result,
        dead,
    };
    let mut answers = queue.finish_many(&[item]).await;
    answers.pop().expect("one answer per item")
}

/// The calls stream as the worker pool sees it.
#[async_trait::async_trait]
pub trait CallQueue: Send + Sync + 'static {
    /// This process's consumer name in the group.
    fn consumer(&self) -> &str;

    /// Create the consumer group (and the stream) when missing, at the start of the stream, so
    /// events added before the first start are processed. Idempotent.
    async fn ensure_group(&self) -> Result<(), BackendError>;

    /// Read up to `max` entries never delivered to any consumer, blocking up to `block` when
    /// there are none. Returns an empty batch on timeout.
    async fn read_new(&self, max: usize, block: Duration)
        -> Result<Vec<StreamEntry>, BackendError>;

    /// Whether a `read_new` may be dropped while it waits without losing an entry (it hands
    /// entries out only as it returns): shutdown then ends the wait at once instead of sitting
    /// out `block`. Not for Redis, whose `XREADGROUP` makes entries pending once sent; there the
    /// wait is at most `stream.block_ms`.
    fn read_is_cancel_safe(&self) -> bool {
        false
    }

    /// Whether part of the queue answers again after it did not (a shard whose server hung or
    /// failed), since the last call: reads cut off while it was down may have left entries
    /// pending with this consumer that it never saw, so the dispatcher reads its own pending
    /// entries again ([`CallQueue::read_own_pending`]) instead of waiting `claim_idle_ms` for
    /// the reclaim. The default: never.
    fn take_recovered(&self) -> bool {
        false
    }

    /// Entries this consumer already read but never acknowledged (after a restart with the same
    /// consumer name), with ids after `after` (`0` for all), up to `max`, oldest first.
    async fn read_own_pending(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError>;

    /// Take over entries other consumers left pending for at least `min_idle` (XAUTOCLAIM), up
    /// to `max`. Entries deleted from the stream meanwhile are acknowledged and skipped.
    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError>;

    /// Keep entries this consumer is working on from looking idle (and being reclaimed by
    /// another consumer). Only entries still pending with this consumer are touched: one that
    /// another consumer reclaimed meanwhile stays theirs. Returns how many of `ids` are pending
    /// with another consumer now (one acknowledged meanwhile, its outcome recorded while the
    /// touch was on its way, is not counted). The default does nothing, for queues no one else reads.
    async fn touch(&self, _ids: &[String]) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// Which consumer each entry is pending with now (`None`: not pending — acknowledged,
    /// deleted, or never read), in order. Tells a live claim from a stale one.
    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError>;

    /// Record the event's outcome and acknowledge its entry, atomically: the result entry (when
    /// results are enabled), the dead letter (when there is one) and the acknowledgement — and
    /// nothing at all when the entry was acknowledged already (another consumer finished it
    /// first), so every entry gets exactly one outcome.
    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), BackendError>;

    /// [`CallQueue::finish`] for many events at once (the dispatcher finishes what is ready
    /// together), each entry on its own: one answer per item, in order — `Ok` once its outcome
    /// is recorded (or was already, by another consumer), else the error that left it pending.
    /// An entry never waits for or fails with another: the store refusing one entry's outcome
    /// for good ([`crate::backend::Fate::Permanent`]) is narrowed down to that entry, which then
    /// ends with a dead letter the store can take (see the Redis queue). Repeating the call for
    /// the items that failed records only those. The default finishes them one by one.
    async fn finish_many(&self, items: &[Finish<'_>]) -> Vec<Result<(), BackendError>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.finish(item.entry, item.result, item.dead).await);
        }
        out
    }

    /// Append an event to the calls stream (the `enqueue` CLI, `POST /v1/calls`). Returns the
    /// stream id.
    async fn enqueue(&self, fields: &[(String, String)]) -> Result<String, BackendError>;

    /// Append an event unless any of `once_keys` was used within the last `ttl_ms` (the Twilio
    /// webhook's `twi_message_id` and idempotency token): `Some(stream id)` when added, every
    /// key then marked; `None` when a key was seen. The markers and the entry are written
    /// together, so a failure leaves none of them. The default, for queues without a marker
    /// store, adds every time (the `call_sid` ledger still keeps a device from ringing twice).
    async fn enqueue_once(
        &self,
        once_keys: &[String],
        ttl_ms: u64,
        fields: &[(String, String)],
    ) -> Result<Option<String>, BackendError> {
        let _ = (once_keys, ttl_ms);
        self.enqueue(fields).await.map(Some)
    }
}
