//! Redis outages as the worker pool sees them: logged once when the first command fails and
//! once when one succeeds again — not once per event, however many events are in flight — while
//! every caller backs off on its own. A failure that is not an outage — the store refusing one
//! entry's command for good ([`crate::backend::Fate::Permanent`]) — is that entry's alone: it
//! is logged with the entry and ends it as a dead letter ([`StoreFailure::Refused`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, Fate};
use crate::metrics::Metrics;

use tracing::{error, info, warn};

/// Longest wait between two tries of one caller.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Outages that start within this long after the last one logged are counted, not logged: with
/// one node of a cluster hung, commands to the healthy nodes succeed between the failures, and
/// each success would otherwise end an outage that the next failure starts again.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(30);

/// The current outage: when it started, how many failures it has seen, and whether its start
/// was logged (then so is its end).
#[derive(Debug, Clone, Copy)]
struct Current {
    since: Instant,
    failures: u64,
    logged: bool,
}

/// The process-wide outage state.
pub(crate) struct Outage {
    /// The current outage, if any, and when an outage was last logged.
    state: Mutex<(Option<Current>, Option<Instant>)>,
    /// Every failure counts in `callpush_redis_errors_total{op}`, though only the first logs.
    metrics: Arc<Metrics>,
}

impl Outage {
    /// No outage yet; failures count in `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Outage {
        Outage {
            state: Mutex::default(),
            metrics,
        }
    }

    /// Note a failed Redis command (`op`: a short metric label; `what`: for the log); logs when
    /// it starts an outage.
    pub(crate) fn failed(&self, op: &'static str, what: &str, err: &dyn std::fmt::Display) {
        self.metrics.redis_error(op);
        let mut state = self.state.lock().expect("outage lock");
        let (current, last_logged) = &mut *state;
        match current.as_mut() {
            Some(outage) => outage.failures += 1,
            None => {
                let now = Instant::now();
                let logged = last_logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
                *current = Some(Current {
                    since: now,
                    failures: 1,
                    logged,
                });
                if logged {
                    *last_logged = Some(now);
                    error!(error = %err, "{what} failed; retrying until Redis answers");
                }
            }
        }
    }

    /// Note a successful Redis command; logs when it ends an outage whose start was logged.
    pub(crate) fn recovered(&self) {
        let mut state = self.state.lock().expect("outage lock");
        if let Some(outage) = state.0.take() {
            if outage.logged {
                info!(failures = outage.failures, down_for = ?outage.since.elapsed(), "Redis answers again");
            }
        }
    }
}

/// How one event's store request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreFailure {
    /// The store did not answer, or is busy or being reconfigured: the event stays pending and
    /// is tried again.
    Unavailable,
    /// The store refused this event's request for good: the event ends as a dead letter
    /// (`store_error`) with this detail, which names the store's complaint.
    Refused(String),
}

impl Outage {
    /// Judge the answers one round trip gave many events (`op`: a short metric label; `what`:
    /// for the log and the dead letter's detail): a success ends an outage, a transient failure
    /// starts or continues one, and a permanent one is logged and counted as that event's.
    pub(crate) fn judge_all<T>(
        &self,
        op: &'static str,
        what: &str,
        answers: Vec<Result<T, BackendError>>,
    ) -> Vec<Result<T, StoreFailure>> {
        if answers.iter().any(Result::is_ok) {
            self.recovered();
        }
        answers
            .into_iter()
            .map(|answer| answer.map_err(|err| self.judge_failure(op, what, &err)))
            .collect()
    }

    /// [`Outage::judge_all`] of one answer.
    pub(crate) fn judge<T>(
        &self,
        op: &'static str,
        what: &str,
        answer: Result<T, BackendError>,
    ) -> Result<T, StoreFailure> {
        self.judge_all(op, what, vec![answer])
            .pop()
            .expect("one answer judged")
    }

    fn judge_failure(&self, op: &'static str, what: &str, err: &BackendError) -> StoreFailure {
        match err.fate() {
            Fate::Transient => {
                self.failed(op, what, err);
                StoreFailure::Unavailable
            }
            Fate::Permanent => {
                self.metrics.redis_error(op);
                warn!(error = %err, "{what} was refused by the store for this event; it is dead-lettered");
                StoreFailure::Refused(format!("{what}: {err}"))
            }
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
        let registry = prometheus::Registry::new();
        let o = Outage::new(Metrics::new(&registry, []).unwrap());
        o.failed("read_stream", "reading", &"down");
        o.failed("finish", "finishing", &"down");
        assert_eq!(o.state.lock().unwrap().0.map(|c| c.failures), Some(2));
        let errors: u64 = registry
            .gather()
            .iter()
            .filter(|f| f.name() == "callpush_redis_errors_total")
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_counter().get_value() as u64)
            })
            .sum();
        assert_eq!(errors, 2, "every failure counts, though one logs");
        o.recovered();
        assert!(o.state.lock().unwrap().0.is_none());
    }

    #[test]
    fn outages_that_flap_are_logged_once_per_window() {
        let registry = prometheus::Registry::new();
        let o = Outage::new(Metrics::new(&registry, []).unwrap());
        // One hung node among healthy ones: failures and successes alternate.
        for _ in 0..5 {
            o.failed("claim_devices", "claiming devices", &"timed out");
            o.recovered();
        }
        let logged: Vec<bool> = {
            o.failed("claim_devices", "claiming devices", &"timed out");
            vec![o.state.lock().unwrap().0.unwrap().logged]
        };
        assert_eq!(
            logged,
            vec![false],
            "within the window: counted, not logged"
        );
        let first = o.state.lock().unwrap().1.unwrap();
        o.recovered();
        // A window later, the next outage is logged again.
        o.state.lock().unwrap().1 = first.checked_sub(LOG_EVERY);
        o.failed("claim_devices", "claiming devices", &"timed out");
        assert!(o.state.lock().unwrap().0.unwrap().logged);
    }
}
