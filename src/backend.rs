//! What the storage traits share — the calls queue ([`crate::ingest::CallQueue`]), the binding
//! store ([`crate::bindings::BindingStore`]) and the push ledger
//! ([`crate::dispatch::ledger::SentLedger`]): one error for "the backend failed", so callers
//! decide once what an outage means (leave the entry pending, answer 503) whichever store it
//! came from.

/// A storage backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Redis failed or could not be reached: worth retrying later.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The backend holds or answered something callpush cannot read (a corrupt binding record,
    /// a script reply of the wrong shape): retrying will not help.
    #[error("unexpected data in the store: {0}")]
    Corrupt(String),
}
