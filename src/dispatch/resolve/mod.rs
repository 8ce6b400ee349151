//! One event from its stream entry to its outcome, in stages, each in its own file:
//!
//! 1. parse the entry and check its deadline (here);
//! 2. [`targets`]: the callee's bindings, as the devices this event goes to;
//! 3. [`claim`]: claim every device in the push ledger; devices another attempt delivered, or
//!    is still pushing, are skipped, while a claim left by an attempt that died is taken over;
//! 4. the callee's call limit, charged once the event is sure to push (here);
//! 5. [`fanout`]: push every claimed device concurrently, each with its own retries, recording
//!    each accepted push in the ledger the moment it is accepted;
//! 6. [`settle`]: how the claims end (released for devices that failed for good, sent for the
//!    device of a single-device event), settled with the outcome; prune dead tokens;
//! 7. [`decide`]: the event's one outcome, a pure function of how the devices ended.
//!
//! Each I/O stage ends with a lap of the event's [`StageClock`] (`callpush_stage_seconds`).
//!
//! Stages 2, 3 and 5–6 do I/O; stage 7 decides from their results alone, so its table is
//! unit-tested without Redis or providers.

mod claim;
mod decide;
mod fanout;
mod settle;
mod targets;

use std::sync::Arc;

use tracing::info;

use super::ledger::Settlement;
use super::outage::{Backoff, StoreFailure};
use super::{sleep_or_stop, Shared};
use crate::domain::{now_ms, PushKind};
use crate::event::{CallEvent, StreamEntry};
use crate::metrics::{RateScope, Stage, StageClock};
use crate::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};

pub(super) use claim::{serve as serve_claims, ClaimAsk};
pub(super) use decide::Decision;
pub(super) use targets::{serve as serve_lookups, Lookup, Target};

/// What to do with the entry.
#[derive(Debug)]
// Moved once per event and the small variant is the rare one: boxing would only add an
// allocation per event.
#[allow(clippy::large_enum_variant)]
pub(super) enum Resolution {
    /// Settle the claims, then record the result (and the dead letter) and acknowledge.
    Final(EventResult, Option<DeadLetter>, Option<Settlement>),
    /// Leave the entry pending (store unavailable, stopping): it is tried again later.
    LeavePending,
}

/// Take one entry through every stage to its resolution.
#[cfg(test)]
pub(super) async fn resolve(shared: &Shared, entry: &StreamEntry) -> Resolution {
    resolve_timed(shared, entry, &mut shared.metrics.stages.clock()).await
}

/// [`resolve`], lapping `clock` at the end of each I/O stage.
pub(super) async fn resolve_timed(
    shared: &Shared,
    entry: &StreamEntry,
    clock: &mut StageClock<'_>,
) -> Resolution {
    let event = match CallEvent::parse(entry) {
        Ok(event) => event,
        Err(err) => {
            info!(error = %err, "malformed call event dead-lettered");
            let result = EventResult {
                call_sid: entry.field("call_sid").unwrap_or_default().into(),
                to: entry.field("to").unwrap_or_default().into(),
                outcome: EventOutcome::Malformed,
                devices: 0,
                delivered: 0,
            };
            let dead = dead_letter(DeadReason::Malformed, err.to_string(), 0);
            return Resolution::Final(result, Some(dead), None);
        }
    };
    let now = now_ms();
    if now >= event.deadline_ms() {
        let detail = format!(
            "deadline passed {} ms before the event was read",
            now - event.deadline_ms()
        );
        return final_of(
            &event,
            Decision::dead(EventOutcome::Expired, DeadReason::Expired, detail),
            None,
        );
    }
    let mut backoff = Backoff::default();
    let targets = loop {
        match targets::resolve(shared, &event).await {
            Err(StoreFailure::Unavailable) if wait_out(shared, &event, &mut backoff).await => {}
            // Shared with the claim stage, which claims their devices.
            Ok(targets) => break Arc::new(targets),
            Err(failure) => return store_failed(&event, failure),
        }
    };
    clock.lap(Stage::Resolve);
    if targets.is_empty() {
        return final_of(
            &event,
            Decision::result(EventOutcome::NoBindings, 0, 0),
            None,
        );
    }
    backoff.reset();
    let claimed = loop {
        match claim::claim(shared, &event, &entry.id, &targets).await {
            Err(StoreFailure::Unavailable) if wait_out(shared, &event, &mut backoff).await => {}
            Ok(claimed) => break claimed,
            Err(failure) => return store_failed(&event, failure),
        }
    };
    clock.lap(Stage::Claim);
    let devices = targets.len();
    if claimed.fresh_count() == 0 {
        info!(
            devices,
            "every device was pushed by an earlier attempt; not pushed again"
        );
        let decision = Decision::result(EventOutcome::Duplicate, devices, claimed.earlier_sent);
        return final_of(&event, decision, None);
    }
    if claimed.skipped() > 0 {
        info!(
            skipped = claimed.skipped(),
            "devices an earlier attempt delivered or is pushing are skipped"
        );
    }
    // Charged only now: an event left pending by an outage, a redelivery with nothing left to
    // send and a call to nobody never count against the callee.
    if event.kind() == PushKind::Incoming && !shared.limits.allow_call(&event.call.callee).await {
        info!("callee over its call rate limit; event dead-lettered");
        shared.metrics.rate_limited(RateScope::Callee);
        let released = settle::release_all(&event, claimed);
        let detail =
            "the callee received more incoming calls than limits.calls_per_identity_per_min";
        return final_of(
            &event,
            Decision::dead(
                EventOutcome::DeadLettered,
                DeadReason::RateLimited,
                detail.into(),
            ),
            Some(released),
        );
    }
    let ends = fanout::fan_out(shared, &event, &claimed).await;
    clock.lap(Stage::Push);
    let decision = decide::decide(devices, claimed.earlier_sent, claimed.skipped(), &ends);
    let settlement = settle::settle(shared, &event, claimed, &ends).await;
    if matches!(decision, Decision::LeavePending) {
        settle::settle_now(shared, &settlement).await;
    }
    final_of(&event, decision, Some(settlement))
}

/// Wait before asking the store again for an event it did not answer (an outage, a hung
/// node): the event keeps its slot and stays in flight (touched), so it goes on as soon as the
/// store answers instead of after a reclaim. False — leave the entry pending — when the wait
/// would reach the event's deadline or the daemon stops hard.
async fn wait_out(shared: &Shared, event: &CallEvent, backoff: &mut Backoff) -> bool {
    let wait = backoff.next();
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    if now_ms().saturating_add(wait_ms) >= event.deadline_ms() {
        return false;
    }
    !sleep_or_stop(wait, &shared.hard_stop).await
}

/// What a failed store request means for the event: it stays pending while the store is
/// unavailable, and ends as a `store_error` dead letter when the store refused it for good
/// (nothing was claimed then, so there is nothing to settle).
fn store_failed(event: &CallEvent, failure: StoreFailure) -> Resolution {
    match failure {
        StoreFailure::Unavailable => Resolution::LeavePending,
        StoreFailure::Refused(detail) => final_of(
            event,
            Decision::dead(EventOutcome::DeadLettered, DeadReason::StoreError, detail),
            None,
        ),
    }
}

/// The resolution a decision stands for, with how this attempt's claims end.
fn final_of(event: &CallEvent, decision: Decision, settlement: Option<Settlement>) -> Resolution {
    match decision {
        Decision::LeavePending => Resolution::LeavePending,
        Decision::Final {
            outcome,
            devices,
            delivered,
            dead,
        } => Resolution::Final(
            EventResult {
                call_sid: event.call.call_sid.clone(),
                to: event.call.callee.clone(),
                outcome,
                devices,
                delivered,
            },
            dead.map(|(reason, detail, attempts)| dead_letter(reason, detail, attempts)),
            settlement,
        ),
    }
}

fn dead_letter(reason: DeadReason, detail: String, attempts: u32) -> DeadLetter {
    DeadLetter {
        reason,
        detail,
        attempts,
        failed_at_ms: now_ms(),
    }
}
