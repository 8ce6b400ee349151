//! Outcomes: the one result every event ends in (SPEC §5), and dead letters (SPEC §7), as
//! values and as the stream fields they are written as. The dispatcher decides them; the queue
//! ([`crate::ingest::CallQueue::finish`]) writes them together with the acknowledgement.

mod bounded;

use std::fmt;
use std::sync::Arc;

pub use bounded::{needed_for_replay, MAX_BYTES, MAX_FIELDS, MAX_ITEM_BYTES, TRUNCATED};

use crate::event::StreamEntry;

/// The outcome of one call event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    /// At least one device accepted the push.
    Delivered,
    /// The callee has no live binding that this event could go to.
    NoBindings,
    /// The deadline passed before any device accepted.
    Expired,
    /// No device accepted and the event went to the dead-letter stream.
    DeadLettered,
    /// The entry was not a valid call event (dead-lettered too).
    Malformed,
    /// A redelivered event whose devices had all been pushed already.
    Duplicate,
}

impl EventOutcome {
    /// The wire name, as in the results stream and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Delivered => "delivered",
            EventOutcome::NoBindings => "no_bindings",
            EventOutcome::Expired => "expired",
            EventOutcome::DeadLettered => "dead_lettered",
            EventOutcome::Malformed => "malformed",
            EventOutcome::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the results stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventResult {
    /// The event's `call_sid` (empty when the entry had none); shared with the event.
    pub call_sid: Arc<str>,
    /// The event's `to` (empty when the entry had none); shared with the event.
    pub to: Arc<str>,
    /// The outcome.
    pub outcome: EventOutcome,
    /// Devices the event was sent to.
    pub devices: usize,
    /// Devices that accepted.
    pub delivered: usize,
}

/// The value of one results-stream field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// Text, as it is.
    Text(&'a str),
    /// A count, in decimal.
    Count(usize),
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Text(text) => f.write_str(text),
            Field::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Why an event was dead-lettered (`reason` of SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The deadline passed.
    Expired,
    /// The entry was not a valid call event.
    Malformed,
    /// Transient failures until `retry.max_attempts`.
    RetriesExhausted,
    /// The provider refused the push for good (bad topic, bad credentials, …).
    ProviderRejected,
    /// The callee's call rate limit was exceeded.
    RateLimited,
    /// Redis refused this entry's command for good (`WRONGTYPE`, a script error, stored data
    /// that does not decode): the detail names the store's complaint (`crate::backend`).
    StoreError,
}

impl DeadReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Expired => "expired",
            DeadReason::Malformed => "malformed",
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::ProviderRejected => "provider_rejected",
            DeadReason::RateLimited => "rate_limited",
            DeadReason::StoreError => "store_error",
        }
    }
}

/// A dead letter: the original entry plus why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why.
    pub reason: DeadReason,
    /// The provider's status and reason, or the malformed field's message.
    pub detail: String,
    /// Push attempts made (over all devices).
    pub attempts: u32,
    /// When it failed, ms since the Unix epoch.
    pub failed_at_ms: u64,
}

impl DeadLetter {
    /// The fields of the dead-letter entry of `original` ([`DeadLetter::fields_of`]).
    pub fn fields(&self, original: &StreamEntry) -> Vec<(String, String)> {
        self.fields_of(&original.to_pairs(), &original.id)
    }
}
