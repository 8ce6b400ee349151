//! The in-memory backend (`callpush dev`, tests): the calls queue ([`MemoryCallQueue`]), the
//! binding store ([`MemoryBindingStore`]) and the push ledger
//! ([`crate::dispatch::ledger::MemoryLedger`]) behind the same traits as Redis, keeping the
//! semantics the pipeline relies on: consumer-group pending entries, acknowledgement, reclaim of
//! idle entries, the atomic finish (result, dead letter and acknowledgement only while the
//! entry is pending), capped results and dead-letter streams, bindings with a TTL, the
//! per-identity cap and race-safe pruning.
//!
//! **What it does not promise.** Not durable: bindings, queued calls, results, dead letters and
//! the ledger are gone when the process exits. One process only: no other process reaches the
//! stores directly (a call server's `XADD`, `callpush bindings`); they go through the daemon's
//! HTTP API (`POST /v1/calls`, and `/v1/dead-letters…`, which `callpush dlq --admin` uses — the
//! dead letters are listed and replayed in memory through [`crate::dlq::DeadLetters::in_memory`]).
//! No memory bound beyond the stream caps and `bindings.max_per_identity`: the binding store
//! grows with the identities seen (idempotency keys and ledger entries expire). Expired bindings are dropped
//! lazily (on the identity's next registration) rather than by a timer, and `max_len` caps are
//! exact rather than Redis's approximate `MAXLEN ~`. Use Redis (`callpush dev --redis`, `serve`)
//! for anything that must outlive the process or be shared.

mod bindings;
mod queue;

pub use bindings::MemoryBindingStore;
pub use queue::{MemoryCallQueue, MemoryLimits};

#[cfg(test)]
mod tests;
