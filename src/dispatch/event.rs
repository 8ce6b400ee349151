//! One event from entry to outcome: parse, check the deadline, resolve the callee's bindings,
//! fan out to every device concurrently (each with its own retries), prune dead tokens, and
//! decide the event's single outcome.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::{debug, info, warn};

use super::retry::NextAttempt;
use super::Shared;
use crate::bindings::{mask_device_token as mask_token, Binding};
use crate::event::{CallEvent, StreamEntry};
use crate::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use crate::providers::{now_ms, Failure, Outcome, Provider, Push, PushKind};

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
    Aborted,
}

/// What to do with the entry.
pub(super) enum Resolution {
    /// Record the result (and the dead letter) and acknowledge.
    Final(EventResult, Option<DeadLetter>),
    /// Leave the entry pending (store unavailable, stopping): it is reclaimed later.
    LeavePending,
}

pub(super) async fn resolve(shared: &Shared, entry: &StreamEntry) -> Resolution {
    let event = match CallEvent::parse(entry) {
        Ok(event) => event,
        Err(err) => {
            info!(stream_id = %entry.id, error = %err, "malformed call event dead-lettered");
            let result = EventResult {
                call_sid: entry.field("call_sid").unwrap_or_default().to_string(),
                to: entry.field("to").unwrap_or_default().to_string(),
                outcome: EventOutcome::Malformed,
                devices: 0,
                delivered: 0,
            };
            let dead = dead_letter(DeadReason::Malformed, err.to_string(), 0);
            return Resolution::Final(result, Some(dead));
        }
    };
    let result = |outcome, devices, delivered| EventResult {
        call_sid: event.call_sid().to_string(),
        to: event.to().to_string(),
        outcome,
        devices,
        delivered,
    };
    let now = now_ms();
    if now >= event.deadline_ms() {
        let detail = format!(
            "deadline passed {} ms before the event was read",
            now - event.deadline_ms()
        );
        return Resolution::Final(
            result(EventOutcome::Expired, 0, 0),
            Some(dead_letter(DeadReason::Expired, detail, 0)),
        );
    }
    if event.kind() == PushKind::Incoming && !shared.limits.allow_call(&event.call.callee) {
        info!(stream_id = %entry.id, "callee over its call rate limit; event dead-lettered");
        let detail =
            "the callee received more incoming calls than limits.calls_per_identity_per_min";
        return Resolution::Final(
            result(EventOutcome::DeadLettered, 0, 0),
            Some(dead_letter(DeadReason::RateLimited, detail.into(), 0)),
        );
    }
    let bindings = match shared.store.list(event.to()).await {
        Ok(b) => b,
        Err(err) => {
            warn!(stream_id = %entry.id, error = %err, "cannot resolve bindings; event left pending");
            return Resolution::LeavePending;
        }
    };
    let targets: Vec<(Binding, Arc<dyn Provider>)> = bindings
        .into_iter()
        .filter(|b| event.credential.as_ref().is_none_or(|c| *c == b.credential))
        .filter_map(|b| {
            let provider = shared.providers.get(&b.credential)?.clone();
            Some((b, provider))
        })
        .filter(|(_, p)| event.kind() == PushKind::Incoming || p.sends_cancel())
        .collect();
    if targets.is_empty() {
        return Resolution::Final(result(EventOutcome::NoBindings, 0, 0), None);
    }
    let devices = targets.len();
    let ends = join_all(targets.iter().map(|(binding, provider)| {
        let push = Push {
            call: event.call.clone(),
            device_token: Arc::from(binding.device_token.as_str()),
        };
        push_until_final(shared, provider.as_ref(), push)
    }))
    .await;

    let mut delivered = 0;
    let mut pruned = 0;
    let mut attempts = 0;
    let mut expired = false;
    let mut rejected = false;
    let mut details = Vec::new();
    for ((binding, _), (end, tries)) in targets.iter().zip(ends) {
        attempts += tries;
        let mut note = |failure: &Failure| {
            details.push(format!(
                "{} {} {}: {}",
                binding.platform,
                binding.credential,
                mask_token(&binding.device_token),
                failure.detail
            ))
        };
        match end {
            DeviceEnd::Delivered => delivered += 1,
            DeviceEnd::Aborted => return Resolution::LeavePending,
            DeviceEnd::InvalidToken(failure, judged_at_ms) => {
                pruned += 1;
                prune(shared, binding, &failure, judged_at_ms).await;
            }
            DeviceEnd::Rejected(failure) => {
                rejected = true;
                note(&failure);
            }
            DeviceEnd::Exhausted(failure) => note(&failure),
            DeviceEnd::Expired(failure) => {
                expired = true;
                note(&failure.unwrap_or_else(|| {
                    Failure::new("deadline", "the deadline passed before an attempt")
                }));
            }
        }
    }
    if delivered > 0 {
        return Resolution::Final(result(EventOutcome::Delivered, devices, delivered), None);
    }
    if pruned == devices {
        return Resolution::Final(result(EventOutcome::NoBindings, devices, 0), None);
    }
    let (outcome, reason) = if expired {
        (EventOutcome::Expired, DeadReason::Expired)
    } else if rejected {
        (EventOutcome::DeadLettered, DeadReason::ProviderRejected)
    } else {
        (EventOutcome::DeadLettered, DeadReason::RetriesExhausted)
    };
    Resolution::Final(
        result(outcome, devices, 0),
        Some(dead_letter(reason, details.join("; "), attempts)),
    )
}

fn dead_letter(reason: DeadReason, detail: String, attempts: u32) -> DeadLetter {
    DeadLetter {
        reason,
        detail,
        attempts,
        failed_at_ms: now_ms(),
    }
}

async fn prune(shared: &Shared, binding: &Binding, failure: &Failure, judged_at_ms: u64) {
    match shared.store.prune(binding, judged_at_ms).await {
        Ok(true) => info!(
            platform = %binding.platform,
            credential = %binding.credential,
            device = %mask_token(&binding.device_token),
            reason = %failure.reason,
            "binding pruned: the provider says the device token is dead"
        ),
        Ok(false) => debug!(
            device = %mask_token(&binding.device_token),
            "binding kept: re-registered after the provider's verdict"
        ),
        Err(err) => {
            warn!(error = %err, "cannot prune binding; it will be tried again on the next push")
        }
    }
}

/// Push to one device until a final answer: delivered, dead token, rejected, out of attempts,
/// or out of time. Holds a worker slot only while a request is in flight, never while waiting
/// to retry. Returns how the device ended and how many attempts were made.
async fn push_until_final(
    shared: &Shared,
    provider: &dyn Provider,
    push: Push,
) -> (DeviceEnd, u32) {
    let deadline = push.call.deadline_ms;
    let mut attempt = 0u32;
    let mut last: Option<Failure> = None;
    loop {
        let now = now_ms();
        if now >= deadline {
            return (DeviceEnd::Expired(last), attempt);
        }
        let turn = tokio::select! {
            turn = shared.limits.wait_for_credential(provider.credential(), deadline) => turn,
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted, attempt),
        };
        if !turn {
            let failure = last.unwrap_or_else(|| {
                Failure::new(
                    "rate_limited",
                    "the credential's rate limit left no slot before the deadline",
                )
            });
            return (DeviceEnd::Expired(Some(failure)), attempt);
        }
        let permit = tokio::select! {
            permit = shared.pushes.acquire() => permit.expect("the push semaphore is never closed"),
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted, attempt),
        };
        attempt += 1;
        let left = Duration::from_millis(deadline - now);
        let answer = tokio::select! {
            answer = tokio::time::timeout(left, provider.send(&push)) => answer,
            _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted, attempt),
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
        };
        let jitter: f64 = rand::random();
        match shared
            .retry
            .next(attempt, retry_after, now_ms(), deadline, jitter)
        {
            NextAttempt::After(wait) => {
                debug!(attempt, ?wait, reason = %failure.reason, "push will be retried");
                last = Some(failure);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.hard_stop.cancelled() => return (DeviceEnd::Aborted, attempt),
                }
            }
            NextAttempt::Exhausted => return (DeviceEnd::Exhausted(failure), attempt),
            NextAttempt::PastDeadline => return (DeviceEnd::Expired(Some(failure)), attempt),
        }
    }
}
