//! What the storage traits share — the calls queue ([`crate::ingest::CallQueue`]), the binding
//! store ([`crate::bindings::BindingStore`]) and the push ledger
//! ([`crate::dispatch::ledger::SentLedger`]): one error for "the backend failed", and the one
//! place that decides what a failure means ([`BackendError::fate`]), whichever store it came
//! from.
//!
//! | the store's complaint | fate | why |
//! |---|---|---|
//! | connection refused, reset or closed; timeouts; no connection to a cluster node | transient | the server is down, hung or out of reach: the entry waits |
//! | `LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `MOVED`, `ASK` | transient | a restart, a long script, a resharding or a failover in progress |
//! | `NOSCRIPT` | transient | the server forgot a script (restart, `SCRIPT FLUSH`): it is loaded again |
//! | `NOGROUP` | transient | the consumer group is created again by the queue |
//! | `OOM` | transient | the server is full, not the entry wrong: dead-lettering every call while an operator frees memory would lose them all |
//! | `NOPERM`, `NOAUTH`, `WRONGPASS`, authentication failures | transient | a configuration outage (an ACL or a password changed): every entry would fail alike, so they wait for the fix instead of being dead-lettered |
//! | `WRONGTYPE`, `CROSSSLOT`, `EXECABORT`, `ERR` (script errors such as "too many results to unpack", wrong arguments) | permanent | this entry's command is refused as it is: sending it again gives the same answer |
//! | a reply callpush cannot read, data that does not decode ([`BackendError::Corrupt`]) | permanent | the same data decodes no better later |
//! | anything else (a code this table does not know) | transient | the safe side: an entry that waits is never lost, and the outage is logged and counted |
//!
//! A transient failure leaves the entries it touched pending (they are tried again, or reclaimed
//! after `stream.claim_idle_ms`); a permanent one ends the entry it belongs to with an outcome
//! (a dead letter whose detail names the store's complaint), so no entry is retried forever.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A storage backend could not do what was asked. Cloned when one failure answers for many
/// entries (a batch whose round trip failed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// Redis failed, refused the command or could not be reached ([`BackendError::fate`] says
    /// whether trying again can help).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The backend holds or answered something callpush cannot read (a corrupt binding record,
    /// a script reply of the wrong shape): retrying will not help.
    #[error("unexpected data in the store: {0}")]
    Corrupt(String),
}

/// What a store failure means for the entry it happened to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The store is down, busy or being reconfigured: try again later.
    Transient,
    /// The store refuses this entry's command as it is: trying again gives the same answer.
    Permanent,
}

impl BackendError {
    /// Whether trying again can help (the module docs have the table).
    pub fn fate(&self) -> Fate {
        match self {
            BackendError::Redis(e) => redis_fate(e),
            BackendError::Corrupt(_) => Fate::Permanent,
        }
    }

    /// True for [`Fate::Transient`].
    pub fn is_transient(&self) -> bool {
        self.fate() == Fate::Transient
    }

    /// Whether the store answered (with an error, or with something callpush cannot read),
    /// as opposed to not answering at all: the command reached a server that refused this
    /// form of it, so another form of the same work may be taken.
    pub fn store_answered(&self) -> bool {
        match self {
            BackendError::Redis(e) => e.code().is_some(),
            BackendError::Corrupt(_) => true,
        }
    }
}

/// The fate of one Redis error (the module docs have the table).
pub fn redis_fate(err: &RedisError) -> Fate {
    match err.kind() {
        ErrorKind::Io
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::AuthenticationFailed
        | ErrorKind::Parse => Fate::Transient,
        ErrorKind::UnexpectedReturnType => Fate::Permanent,
        ErrorKind::Server(kind) => match kind {
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::NoScript
            | ServerErrorKind::NoPerm => Fate::Transient,
            ServerErrorKind::ResponseError
            | ServerErrorKind::ExecAbort
            | ServerErrorKind::CrossSlot => Fate::Permanent,
            _ => code_fate(err.code()),
        },
        _ => code_fate(err.code()),
    }
}

/// The fate of an error the client has no kind for, by the code Redis put first in its answer.
fn code_fate(code: Option<&str>) -> Fate {
    match code {
        Some("WRONGTYPE") => Fate::Permanent,
        // BUSY, OOM, NOAUTH, WRONGPASS, NOGROUP, UNKILLABLE and codes unknown to this table.
        _ => Fate::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> RedisError {
        // As the client reads it off the wire.
        let wire = format!("-{code} {detail}\r\n");
        redis::parse_redis_value(wire.as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[test]
    fn the_table() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let transient = [
            io,
            timeout,
            server("LOADING", "Redis is loading the dataset in memory"),
            server("BUSY", "Redis is busy running a script"),
            server("TRYAGAIN", "Multiple keys request during rehashing of slot"),
            server("CLUSTERDOWN", "The cluster is down"),
            server("MASTERDOWN", "Link with MASTER is down"),
            server("READONLY", "You can't write against a read only replica."),
            server("NOSCRIPT", "No matching script."),
            server("NOGROUP", "No such key or consumer group"),
            server("OOM", "command not allowed when used memory > 'maxmemory'."),
            server(
                "NOPERM",
                "this user has no permissions to run the 'evalsha' command",
            ),
            server("NOAUTH", "Authentication required."),
            server("SOMETHINGNEW", "a code this table does not know"),
        ];
        for e in transient {
            assert_eq!(redis_fate(&e), Fate::Transient, "{e}");
        }
        let permanent = [
            server(
                "WRONGTYPE",
                "Operation against a key holding the wrong kind of value",
            ),
            server("CROSSSLOT", "Keys in request don't hash to the same slot"),
            server(
                "EXECABORT",
                "Transaction discarded because of previous errors.",
            ),
            server(
                "ERR",
                "user_script:22: too many results to unpack script: 1f0c…",
            ),
        ];
        for e in permanent {
            assert_eq!(redis_fate(&e), Fate::Permanent, "{e}");
        }
        assert_eq!(
            BackendError::Corrupt("binding JSON".into()).fate(),
            Fate::Permanent
        );
    }
}
