//! One event from entry to outcome: parse, check the deadline, resolve the callee's bindings,
//! claim the devices in the ledger (`dedup`: devices an earlier attempt pushed are skipped),
//! fan out to the rest concurrently (each with its own retries), settle the claims, prune dead
//! tokens, and decide the event's single outcome.
//!
//! Outcomes beyond SPEC §5's obvious ones: `duplicate` when an earlier attempt of the same call
//! (a redelivered entry, or the same `call_sid` added twice) had claimed every device — `devices`
//! counts them and `delivered` the ones known to be delivered; when it claimed only some, the
//! rest are pushed and the outcome counts the earlier deliveries too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use futures::FutureExt;
use tracing::{debug, info};

use super::dedup::{device_key, Claim, Settle, CLAIM_MARGIN_MS};
use super::push::{push_until_final, DeviceEnd};
use super::Shared;
use crate::bindings::Binding;
use crate::domain::mask_device_token as mask_token;
use crate::domain::{now_ms, Push, PushKind};
use crate::event::{stream_id_ms, CallEvent, StreamEntry};
use crate::metrics::RateScope;
use crate::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use crate::providers::{Failure, Provider};

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
        shared.metrics.rate_limited(RateScope::Callee);
        let detail =
            "the callee received more incoming calls than limits.calls_per_identity_per_min";
        return Resolution::Final(
            result(EventOutcome::DeadLettered, 0, 0),
            Some(dead_letter(DeadReason::RateLimited, detail.into(), 0)),
        );
    }
    let bindings = match shared.store.list(event.to()).await {
        Ok(b) => {
            shared.outage.recovered();
            b
        }
        Err(err) => {
            shared
                .outage
                .failed("list_bindings", "resolving bindings", &err);
            debug!(stream_id = %entry.id, error = %err, "cannot resolve bindings; event left pending");
            return Resolution::LeavePending;
        }
    };
    let targets: Vec<Target> = bindings
        .into_iter()
        .filter(|b| event.credential.as_ref().is_none_or(|c| *c == b.credential))
        .filter_map(|b| {
            let provider = shared.providers.get(&b.credential)?.clone();
            let device = device_key(event.kind(), &b.credential, &b.device_token);
            Some(Target {
                binding: b,
                provider,
                device,
            })
        })
        .filter(|t| event.kind() == PushKind::Incoming || t.provider.sends_cancel())
        .collect();
    if targets.is_empty() {
        return Resolution::Final(result(EventOutcome::NoBindings, 0, 0), None);
    }
    let devices = targets.len();

    // Claim every device before sending anything: a device an earlier attempt claimed is
    // possibly rung already and is never pushed again for this call.
    let keys: Vec<String> = targets.iter().map(|t| t.device.clone()).collect();
    let claims = match shared
        .ledger
        .claim(
            event.call_sid(),
            &keys,
            event.deadline_ms() + CLAIM_MARGIN_MS,
        )
        .await
    {
        Ok(claims) => {
            shared.outage.recovered();
            claims
        }
        Err(err) => {
            shared
                .outage
                .failed("claim_devices", "claiming devices", &err);
            debug!(stream_id = %entry.id, error = %err, "cannot claim devices; event left pending");
            return Resolution::LeavePending;
        }
    };
    let earlier_sent = claims.iter().filter(|c| **c == Claim::Sent).count();
    let fresh: Vec<&Target> = targets
        .iter()
        .zip(&claims)
        .filter(|(_, c)| **c == Claim::Fresh)
        .map(|(t, _)| t)
        .collect();
    let skipped = devices - fresh.len();
    if fresh.is_empty() {
        info!(
            stream_id = %entry.id,
            devices,
            "every device was pushed by an earlier attempt; not pushed again"
        );
        return Resolution::Final(result(EventOutcome::Duplicate, devices, earlier_sent), None);
    }
    if skipped > 0 {
        info!(stream_id = %entry.id, skipped, "devices pushed by an earlier attempt are skipped");
    }
    // The SLO number: from the entry's stream-id time to the first device that accepted.
    let first_accepted = AtomicBool::new(false);
    let stream_ms = stream_id_ms(&entry.id);
    let ends = join_all(fresh.iter().map(|t| {
        let push = Push {
            call: event.call.clone(),
            device_token: Arc::from(t.binding.device_token.as_str()),
        };
        push_until_final(shared, t.provider.as_ref(), push).inspect(|(end, _)| {
            if matches!(end, DeviceEnd::Delivered) && !first_accepted.swap(true, Ordering::Relaxed)
            {
                if let Some(at) = stream_ms {
                    let seconds = now_ms().saturating_sub(at) as f64 / 1000.0;
                    shared.metrics.event_latency(event.kind().as_str(), seconds);
                }
            }
        })
    }))
    .await;
    settle(shared, event.call_sid(), &fresh, &ends).await;

    let mut delivered = earlier_sent;
    let mut pruned = 0;
    let mut attempts = 0;
    let mut expired = false;
    let mut rejected = false;
    let mut details = Vec::new();
    for (target, (end, tries)) in fresh.iter().zip(ends) {
        let binding = &target.binding;
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
            DeviceEnd::Aborted { .. } => return Resolution::LeavePending,
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
    if pruned == fresh.len() {
        // Every device this attempt tried is gone; the others were pushed by an earlier one.
        let outcome = if skipped > 0 {
            EventOutcome::Duplicate
        } else {
            EventOutcome::NoBindings
        };
        return Resolution::Final(result(outcome, devices, 0), None);
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

/// One device the event goes to.
struct Target {
    binding: Binding,
    provider: Arc<dyn Provider>,
    /// The device's key in the ledger.
    device: String,
}

/// Promote delivered devices to `sent` and release the ones that failed for good, so a later
/// attempt (a replayed dead letter) may push them. A device whose request was cut off in flight
/// keeps its claim: it may have rung. If Redis fails here, the claims stay `sending`, the safe
/// side: a missed ring on a replay rather than a double ring.
async fn settle(shared: &Shared, call_sid: &str, fresh: &[&Target], ends: &[(DeviceEnd, u32)]) {
    let settled: Vec<(String, Settle)> = fresh
        .iter()
        .zip(ends)
        .filter_map(|(t, (end, _))| {
            let how = match end {
                DeviceEnd::Delivered => Settle::Sent,
                DeviceEnd::Aborted { in_flight: true } => return None,
                _ => Settle::Release,
            };
            Some((t.device.clone(), how))
        })
        .collect();
    match shared.ledger.settle(call_sid, &settled).await {
        Ok(()) => shared.outage.recovered(),
        Err(err) => {
            shared
                .outage
                .failed("settle_devices", "settling device claims", &err);
            debug!(error = %err, "cannot settle device claims; they stay `sending` until they expire");
        }
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

async fn prune(shared: &Shared, binding: &Binding, failure: &Failure, judged_at_ms: u64) {
    match shared.store.prune(binding, judged_at_ms).await {
        Ok(true) => {
            shared.metrics.pruned(binding.platform, &failure.reason);
            info!(
                platform = %binding.platform,
                credential = %binding.credential,
                device = %mask_token(&binding.device_token),
                reason = %failure.reason,
                "binding pruned: the provider says the device token is dead"
            )
        }
        Ok(false) => debug!(
            device = %mask_token(&binding.device_token),
            "binding kept: re-registered after the provider's verdict"
        ),
        Err(err) => {
            shared.outage.failed("prune", "pruning a binding", &err);
            debug!(error = %err, "cannot prune binding; it will be tried again on the next push")
        }
    }
}
