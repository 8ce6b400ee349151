//! Whether one shard of a [`super::ShardedQueue`] answers: a small circuit per shard, so a shard
//! that fails or hangs is skipped for a while instead of holding the others up.
//!
//! A shard is *up* until a command to it fails or does not answer within its bound
//! ([`ANSWER_BOUND`] for a short command; a blocking read gets its BLOCK time on top). It is
//! then *down*: skipped by every operation for a pause of [`FIRST_PAUSE`], doubling with each
//! failed probe up to [`LONGEST_PAUSE`]. Once the pause is over, the next operation probes it
//! (one at a time: the others keep skipping it while the probe is out); an answer brings it back
//! up. Reads do not probe a hung shard this way: their read that outlived its bound is still
//! out and is the probe (`shard::Shard::read`), and the periodic reclaim skips a shard that is
//! down. So a shard whose server hangs costs the other shards one wait of a read's bound when
//! it starts hanging (and a short command's bound per probe of the finish or owner lookups of
//! its own entries), and a shard that answers with an error (a `WRONGTYPE` key) costs them
//! nothing.
//!
//! The transitions are logged once each (down: a warning; up again: info), not per skipped
//! call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::BackendError;

/// How long a short command to a shard may take before the shard counts as hanging. A healthy
/// Redis answers in well under a millisecond, one under a burst in tens of milliseconds; a
/// command cut off here is safe to drop (see the module docs of `shards`).
pub(super) const ANSWER_BOUND: Duration = Duration::from_secs(1);
/// The first pause of a shard that failed.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two probes of a shard that keeps failing: how long a shard that
/// recovered may stay skipped at most.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// One shard's state.
#[derive(Debug, Default)]
pub(super) struct Health {
    down: Mutex<Option<Down>>,
}

#[derive(Debug)]
struct Down {
    /// The error that took it down, or the last failed probe's: what a skipped call answers.
    error: BackendError,
    failures: u32,
    /// Skipped until then; a probe is let through after it.
    until: Instant,
}

fn pause(failures: u32) -> Duration {
    let doubled = FIRST_PAUSE.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(LONGEST_PAUSE)
}

impl Health {
    /// `Ok` when a call may go to the shard at `now` (it is up, or this call is its probe);
    /// else why it is skipped: transient whatever the error it is down with (the call was not
    /// refused, it was not made), which the message quotes.
    pub(super) fn admit(&self, now: Instant) -> Result<(), BackendError> {
        let mut down = self.down.lock().expect("health lock");
        match down.as_mut() {
            None => Ok(()),
            Some(d) if now < d.until => Err(skipped(&d.error)),
            Some(d) => {
                // This call probes; the others skip the shard until it answers or fails.
                d.until = now + pause(d.failures + 1).max(ANSWER_BOUND);
                Ok(())
            }
        }
    }

    /// The shard answered: up again.
    /// True when it was down until now.
    pub(super) fn answered(&self, shard: usize, stream: &str) -> bool {
        let mut down = self.down.lock().expect("health lock");
        let Some(d) = down.take() else {
            return false;
        };
        tracing::info!(
            shard,
            stream,
            failures = d.failures,
            "a shard of the calls stream answers again"
        );
        true
    }

    /// A call to the shard failed at `now` with `error`: down for a pause.
    pub(super) fn failed(&self, shard: usize, stream: &str, error: &BackendError, now: Instant) {
        let mut down = self.down.lock().expect("health lock");
        let failures = down.as_ref().map_or(0, |d| d.failures) + 1;
        let until = now + pause(failures);
        if down.is_none() {
            tracing::warn!(
                shard,
                stream,
                %error,
                "a shard of the calls stream fails; the other shards go on, and it is tried again"
            );
        } else {
            tracing::debug!(shard, stream, %error, failures, "the shard still fails");
        }
        *down = Some(Down {
            error: error.clone(),
            failures,
            until,
        });
    }

    /// Whether the shard is up (not down, nor being probed).
    pub(super) fn is_up(&self) -> bool {
        self.down.lock().expect("health lock").is_none()
    }
}

/// The error of a call not made because its shard is down with `error`.
fn skipped(error: &BackendError) -> BackendError {
    let io = std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("the shard is skipped while it fails ({error})"),
    );
    BackendError::Redis(io.into())
}

/// The error of a shard that did not answer within `bound`: transient, like a timeout of the
/// connection's own.
pub(super) fn no_answer(bound: Duration) -> BackendError {
    let io = std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the shard did not answer within {} ms", bound.as_millis()),
    );
    BackendError::Redis(io.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Fate;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failed_shard_is_skipped_then_probed_once_with_a_growing_pause() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(h.admit(t0).is_ok());
        let broken = BackendError::Corrupt("WRONGTYPE".into());
        h.failed(1, "calls", &broken, t0);
        assert!(!h.is_up());
        let skipped = h.admit(t0 + ms(499)).unwrap_err();
        assert_eq!(skipped.fate(), Fate::Transient, "not asked, not refused");
        assert!(skipped.to_string().contains("WRONGTYPE"), "{skipped}");
        // The pause is over: one call probes, the others still skip.
        assert!(h.admit(t0 + ms(500)).is_ok());
        assert!(h.admit(t0 + ms(600)).is_err());
        // The probe failed: the next pause is twice as long.
        let t1 = t0 + ms(1_500);
        h.failed(1, "calls", &no_answer(ANSWER_BOUND), t1);
        assert!(h.admit(t1 + ms(999)).is_err());
        assert!(h.admit(t1 + ms(1_000)).is_ok());
        h.answered(1, "calls");
        assert!(h.is_up());
        assert!(h.admit(t1 + ms(1_001)).is_ok());
    }

    #[test]
    fn the_pause_doubles_up_to_five_seconds() {
        let pauses: Vec<u128> = (1..=6).map(|f| pause(f).as_millis()).collect();
        assert_eq!(pauses, [500, 1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(pause(u32::MAX), LONGEST_PAUSE);
    }
}
