//! Backoff between attempts of one push: exponential with full jitter, at least the provider's
//! `Retry-After` (read as at most an hour, `crate::providers::answer::MAX_RETRY_AFTER`), and
//! never past the event's deadline: a wait that would end at or past it ends the push instead.

use std::time::Duration;

use crate::config::RetrySettings;

/// The retry policy of the worker pool.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    base: Duration,
    max: Duration,
    /// Attempts per device, the first included.
    pub max_attempts: u32,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Wait this long, then try again.
    After(Duration),
    /// `retry.max_attempts` reached.
    Exhausted,
    /// The next attempt would start at or past the deadline.
    PastDeadline,
}

impl RetryPolicy {
    /// The policy of the `[retry]` settings.
    pub fn new(settings: &RetrySettings) -> Self {
        RetryPolicy {
            base: Duration::from_millis(settings.base_ms),
            max: Duration::from_millis(settings.max_ms),
            max_attempts: settings.max_attempts,
        }
    }

    /// The ceiling of the backoff after `attempt` attempts (1-based): base · 2^(attempt-1),
    /// capped at max.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Decide the next step after `attempt` attempts failed transiently, `now_ms` and
    /// `deadline_ms` in ms since the epoch. `jitter` is a number in [0, 1) (full jitter: the wait
    /// is a uniform draw below the ceiling); `retry_after` is a floor.
    pub fn next(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        now_ms: u64,
        deadline_ms: u64,
        jitter: f64,
    ) -> NextAttempt {
        if attempt >= self.max_attempts {
            return NextAttempt::Exhausted;
        }
        let backoff = self.ceiling(attempt).mul_f64(jitter.clamp(0.0, 1.0));
        let wait = retry_after.map_or(backoff, |floor| floor.max(backoff));
        // Compared as durations: a wait's milliseconds may not fit in a u64.
        let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        if wait >= left {
            return NextAttempt::PastDeadline;
        }
        NextAttempt::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&RetrySettings {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts: 6,
        })
    }

    #[test]
    fn ceiling_doubles_up_to_max() {
        let p = policy();
        let ms: Vec<u128> = (1..=7).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(p.ceiling(200), Duration::from_millis(2_000));
    }

    #[test]
    fn full_jitter_stays_below_the_ceiling() {
        let p = policy();
        assert_eq!(
            p.next(3, None, 0, 60_000, 0.0),
            NextAttempt::After(Duration::ZERO)
        );
        assert_eq!(
            p.next(3, None, 0, 60_000, 0.5),
            NextAttempt::After(Duration::from_millis(200))
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = policy();
        assert_eq!(
            p.next(1, Some(Duration::from_secs(1)), 0, 60_000, 0.9),
            NextAttempt::After(Duration::from_secs(1))
        );
    }

    #[test]
    fn never_past_the_deadline_nor_the_attempt_cap() {
        let p = policy();
        assert_eq!(
            p.next(1, Some(Duration::from_secs(5)), 1_000, 4_000, 0.1),
            NextAttempt::PastDeadline
        );
        assert_eq!(p.next(6, None, 0, 60_000, 0.1), NextAttempt::Exhausted);
    }

    #[test]
    fn a_wait_whose_milliseconds_overflow_is_past_the_deadline() {
        // 18446744073709552 s: its milliseconds, truncated to a u64, would read as 384 ms.
        let huge = Duration::from_secs(18_446_744_073_709_552);
        assert_eq!(
            policy().next(1, Some(huge), 1_000, 61_000, 0.5),
            NextAttempt::PastDeadline
        );
        assert_eq!(
            policy().next(1, Some(Duration::MAX), 1_000, 61_000, 0.5),
            NextAttempt::PastDeadline
        );
    }
}
