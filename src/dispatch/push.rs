//! One push to one device until a final answer: the per-credential rate limit, a push slot
//! of the credential and of the pool while the request is in flight (never while waiting to
//! retry), and deadline-aware retries.
//!
//! The call's deadline is turned into one timer instant at the start, and every wait — for a
//! push slot, for the provider's answer — ends at that instant, however long the waits before
//! it took: an attempt that queued for a slot never runs past the deadline.

use tokio::time::{timeout_at, Instant};
use tracing::debug;

use super::retry::NextAttempt;
use super::Shared;
use crate::domain::{now_ms, Push};
use crate::metrics::RateScope;
use crate::providers::{Failure, Outcome, Provider};

/// How one device's pushes ended.
#[derive(Debug)]
pub(super) enum DeviceEnd {
    Delivered,
    /// The provider said the token is dead at the given time (ms since the epoch).
    InvalidToken(Failure, u64),
    Rejected(Failure),
    Exhausted(Failure),
    /// The deadline came first; the last failure, if any attempt was made.
    Expired(Option<Failure>),
    /// The daemon is stopping hard; the event stays pending for another consumer.
    /// `in_flight`: a request was on its way, so the device may have been rung.
    Aborted {
        in_flight: bool,
    },
}

/// Push to one device until a final answer: delivered, dead token, rejected, out of attempts,
/// or out of time. Holds a worker slot only while a request is in flight, never while waiting
/// to retry. Returns how the device ended and how many attempts were made.
pub(super) async fn push_until_final(
    shared: &Shared,
    provider: &dyn Provider,
    push: Push,
) -> (DeviceEnd, u32) {
    let deadline = push.call.deadline_ms;
    let deadline_at =
        Instant::now() + std::time::Duration::from_millis(deadline.saturating_sub(now_ms()));
    let mut attempt = 0u32;
    let mut last: Option<Failure> = None;
    loop {
        let now = now_ms();
        if now >= deadline {
            return (DeviceEnd::Expired(last), attempt);
        }
        if let Err(end) = super::quota::wait_turn(shared, provider.credential(), deadline).await {
            return (end, attempt);
        }
        let turn = tokio::select! {
            turn = shared.limits.wait_for_credential(provider.credential(), deadline) => turn,
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted { in_flight: false }, attempt),
        };
        if !turn {
            shared.metrics.rate_limited(RateScope::Credential);
            let failure = last.unwrap_or_else(|| {
                Failure::new(
                    "rate_limited",
                    "the credential's rate limit left no slot before the deadline",
                )
            });
            return (DeviceEnd::Expired(Some(failure)), attempt);
        }
        // The credential's slot first: a credential that is slow or hanging waits on its own
        // cap and never holds pool slots the other credentials need.
        let slots = async {
            let own = match shared.credential_slots.get(provider.credential()) {
                Some(s) => Some(
                    s.acquire_owned()
                        .await
                        .expect("slot semaphores are never closed"),
                ),
                None => None,
            };
            let pool = shared
                .pushes
                .acquire()
                .await
                .expect("the push semaphore is never closed");
            (own, pool)
        };
        let permit = tokio::select! {
            permits = timeout_at(deadline_at, slots) => permits,
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted { in_flight: false }, attempt),
        };
        let Ok(permit) = permit else {
            let failure = last.unwrap_or_else(|| {
                Failure::new("deadline", "no push slot was free before the deadline")
            });
            return (DeviceEnd::Expired(Some(failure)), attempt);
        };
        attempt += 1;
        let answer = tokio::select! {
            answer = timeout_at(deadline_at, super::environment::send(shared, provider, &push)) => answer,
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted { in_flight: true }, attempt),
        };
        drop(permit);
        let (failure, retry_after) = match answer {
            Err(_) => {
                let failure = Failure::new(
                    "deadline",
                    "no answer from the provider before the deadline",
                );
                return (DeviceEnd::Expired(Some(failure)), attempt);
            }
            Ok(Outcome::Delivered) => return (DeviceEnd::Delivered, attempt),
            Ok(Outcome::InvalidToken {
                failure,
                judged_at_ms,
            }) => return (DeviceEnd::InvalidToken(failure, judged_at_ms), attempt),
            Ok(Outcome::Rejected(failure)) => return (DeviceEnd::Rejected(failure), attempt),
            Ok(Outcome::Retry {
                failure,
                retry_after,
            }) => (failure, retry_after),
            Ok(Outcome::OverQuota { failure, pause }) => {
                super::quota::pause(shared, provider, pause, &failure);
                (failure, Some(pause))
            }
        };
        let jitter: f64 = rand::random();
        match shared
            .retry
            .next(attempt, retry_after, now_ms(), deadline, jitter)
        {
            NextAttempt::After(wait) => {
                shared.metrics.retry(provider.platform(), &failure.reason);
                debug!(attempt, ?wait, reason = %failure.reason, "push will be retried");
                last = Some(failure);
                // `wait` ends before the deadline (`RetryPolicy::next`); the timer ends there
                // at the latest all the same, like every other wait here.
                let until = deadline_at.min(Instant::now() + wait);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted { in_flight: false }, attempt),
                }
            }
            NextAttempt::Exhausted => return (DeviceEnd::Exhausted(failure), attempt),
            NextAttempt::PastDeadline => return (DeviceEnd::Expired(Some(failure)), attempt),
        }
    }
}
