//! The in-memory backend (`callpush dev`, tests): the calls queue ([`MemoryCallQueue`]), the
//! binding store ([`MemoryBindingStore`]) and the push ledger
//! ([`crate::dispatch::ledger::MemoryLedger`]) behind the same traits as Redis, keeping the
//! semantics the pipeline relies on: consumer-group pending entries, acknowledgement, reclaim of
//! idle entries, the atomic finish (result, dead letter and acknowledgement only while the
//! entry is pending), capped results and dead-letter streams, bindings with a TTL, the
//! per-identity cap and race-safe pruning.
//!
//! **Not durable, one process only.** Nothing survives a restart: bindings, queued calls, dead
//! letters and the ledger are gone when the process exits, and no other process (a call
//! server's `XADD`, `callpush dlq`) can reach them. Use Redis (`callpush dev --redis`, `serve`)
//! for anything that must outlive the process. Expired bindings are dropped lazily (on the
//! identity's next registration) rather than by a timer, and `max_len` caps are exact rather
//! than Redis's approximate `MAXLEN ~`.

mod bindings;
mod queue;

pub use bindings::MemoryBindingStore;
pub use queue::{MemoryCallQueue, MemoryLimits};

#[cfg(test)]
mod tests;
