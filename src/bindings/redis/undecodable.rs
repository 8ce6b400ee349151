//! Stored bindings that do not decode: written by another version of callpush (a rolling
//! upgrade or a downgrade), by hand, or damaged. They are isolated, never fatal: the listing
//! skips them and goes on with the identity's other bindings, each is counted
//! (`callpush_bindings_undecodable_total`, through [`Undecodable::count`]) and logged at most
//! once an hour per key, and the record is left where it is — for an operator to read, for the
//! identity's next registration (which drops entries it cannot decode, `upsert.lua`), or for
//! the keys' TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::backend::BackendError;
use crate::log_throttle::LogThrottle;

/// How often one key's undecodable binding is logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(3600);

/// The undecodable bindings seen: a count, and when each was last logged.
#[derive(Debug)]
pub struct Undecodable {
    seen: AtomicU64,
    logged: LogThrottle<(String, String)>,
}

impl Default for Undecodable {
    fn default() -> Undecodable {
        Undecodable {
            seen: AtomicU64::new(0),
            logged: LogThrottle::new(LOG_EVERY),
        }
    }
}

impl Undecodable {
    /// Note that `identity`'s binding `binding_id` did not decode (`error`): count it, and log
    /// it unless this key was logged within the hour.
    pub fn note(&self, identity: &str, binding_id: &str, error: &BackendError) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        if self.should_log(identity, binding_id, Instant::now()) {
            warn!(identity, binding_id, error = %error,
                "a stored binding does not decode (written by another version, or by hand); \
                 skipped, the identity's other bindings are used; logged once an hour per binding");
        }
    }

    /// Undecodable bindings seen since start.
    pub fn count(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    fn should_log(&self, identity: &str, binding_id: &str, now: Instant) -> bool {
        let key = (identity.to_string(), binding_id.to_string());
        self.logged.should_log(key, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_one_counts_and_each_key_logs_once_an_hour() {
        let u = Undecodable::default();
        let t0 = Instant::now();
        assert!(u.should_log("alice", "BS1", t0));
        assert!(!u.should_log("alice", "BS1", t0 + Duration::from_secs(3599)));
        assert!(u.should_log("alice", "BS2", t0));
        assert!(u.should_log("alice", "BS1", t0 + LOG_EVERY));
        u.note("bob", "BS3", &BackendError::Corrupt("x".into()));
        u.note("bob", "BS3", &BackendError::Corrupt("x".into()));
        assert_eq!(u.count(), 2);
    }
}
