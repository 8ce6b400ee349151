//! Redis outages as the worker pool sees them: logged once when the first command fails and
//! once when one succeeds again — not once per event, however many events are in flight — while
//! every caller backs off on its own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{error, info};

/// Longest wait between two tries of one caller.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The process-wide outage state.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    /// When the current outage started, and how many failures it has seen.
    state: Mutex<Option<(Instant, u64)>>,
}

impl Outage {
    /// Note a failed Redis command; logs when it starts an outage.
    pub(crate) fn failed(&self, what: &str, err: &dyn std::fmt::Display) {
        let mut state = self.state.lock().expect("outage lock");
        match state.as_mut() {
            Some((_, failures)) => *failures += 1,
            None => {
                *state = Some((Instant::now(), 1));
                error!(error = %err, "{what} failed; retrying until Redis answers");
            }
        }
    }

    /// Note a successful Redis command; logs when it ends an outage.
    pub(crate) fn recovered(&self) {
        let mut state = self.state.lock().expect("outage lock");
        if let Some((since, failures)) = state.take() {
            info!(failures, down_for = ?since.elapsed(), "Redis answers again");
        }
    }
}

/// One caller's backoff between tries: 200 ms doubling up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next try.
    pub(crate) fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(100u64 << self.failures.min(5)).min(MAX_BACKOFF)
    }

    /// Start over after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_starts_over() {
        let mut b = Backoff::default();
        let waits: Vec<u128> = (0..7).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(200));
    }

    #[test]
    fn an_outage_is_counted_until_it_ends() {
        let o = Outage::default();
        o.failed("reading", &"down");
        o.failed("finishing", &"down");
        assert_eq!(o.state.lock().unwrap().map(|(_, n)| n), Some(2));
        o.recovered();
        assert!(o.state.lock().unwrap().is_none());
    }
}
