//! At most one log line per key and period: a prober hammering the Twilio webhook from one
//! address, or one undecodable binding read on every call, logs once a period, not once per
//! request. Bounded: past [`REMEMBERED`] keys, those not logged within the period are
//! forgotten. Imports nothing of callpush's.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most before the stale ones are forgotten.
pub const REMEMBERED: usize = 10_000;

/// When each key was last logged.
#[derive(Debug)]
pub struct LogThrottle<K> {
    every: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> LogThrottle<K> {
    /// A throttle letting each key log once every `every`.
    pub fn new(every: Duration) -> LogThrottle<K> {
        LogThrottle {
            every,
            last: Mutex::default(),
        }
    }

    /// Whether `key` may log at `now` (and, if so, note it).
    pub fn should_log(&self, key: K, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = last.get(&key) {
            if now.saturating_duration_since(*at) < self.every {
                return false;
            }
        }
        if last.len() >= REMEMBERED {
            let every = self.every;
            last.retain(|_, at| now.saturating_duration_since(*at) < every);
        }
        last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_and_period() {
        let t = LogThrottle::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(t.should_log("a", t0));
        assert!(!t.should_log("a", t0 + Duration::from_secs(59)));
        assert!(t.should_log("b", t0 + Duration::from_secs(1)));
        assert!(t.should_log("a", t0 + Duration::from_secs(60)));
    }
}
