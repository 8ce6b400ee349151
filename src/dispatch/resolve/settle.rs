//! Stage 6: after the fan-out, release the claims of devices that failed for good, so a later
//! attempt (a replayed dead letter) may push them, and prune the bindings whose tokens the
//! provider says are dead (race-safe: SPEC §4). Accepted pushes were recorded during the
//! fan-out already. A release that fails is harmless: once this entry is finished, its claims
//! count as stale to every later attempt.

use tracing::{debug, info};

use super::super::ledger::Settle;
use super::super::push::DeviceEnd;
use super::super::Shared;
use super::claim::Claimed;
use super::decide::DeviceReport;
use crate::bindings::Binding;
use crate::domain::mask_device_token;
use crate::event::CallEvent;
use crate::providers::Failure;

/// Release what failed for good and prune dead tokens.
pub(super) async fn settle(
    shared: &Shared,
    event: &CallEvent,
    claimed: &Claimed<'_>,
    ends: &[DeviceReport],
) {
    let released: Vec<(&str, Settle)> = claimed
        .fresh
        .iter()
        .zip(ends)
        .filter(|(_, r)| match r.end {
            // Accepted (recorded already), or possibly rung: the claim stays.
            DeviceEnd::Delivered | DeviceEnd::Aborted { in_flight: true } => false,
            _ => true,
        })
        .map(|(t, _)| (t.device.as_str(), Settle::Release))
        .collect();
    release(shared, event, claimed, &released).await;
    for (target, report) in claimed.fresh.iter().zip(ends) {
        if let DeviceEnd::InvalidToken(failure, judged_at_ms) = &report.end {
            prune(shared, &target.binding, failure, *judged_at_ms).await;
        }
    }
}

/// Release every claim of this attempt (the event ends before anything was pushed).
pub(super) async fn release_all(shared: &Shared, event: &CallEvent, claimed: &Claimed<'_>) {
    let all: Vec<(&str, Settle)> = claimed
        .fresh
        .iter()
        .map(|t| (t.device.as_str(), Settle::Release))
        .collect();
    release(shared, event, claimed, &all).await;
}

async fn release(
    shared: &Shared,
    event: &CallEvent,
    claimed: &Claimed<'_>,
    released: &[(&str, Settle)],
) {
    if released.is_empty() {
        return;
    }
    match shared
        .ledger
        .settle(event.call_sid(), &claimed.me, released)
        .await
    {
        Ok(()) => shared.outage.recovered(),
        Err(err) => {
            shared
                .outage
                .failed("settle_devices", "releasing device claims", &err);
            debug!(error = %err, "cannot release device claims; later attempts will find them stale");
        }
    }
}

async fn prune(shared: &Shared, binding: &Binding, failure: &Failure, judged_at_ms: u64) {
    match shared.store.prune(binding, judged_at_ms).await {
        Ok(true) => {
            shared.metrics.pruned(binding.platform, &failure.reason);
            info!(
                platform = %binding.platform,
                credential = %binding.credential,
                device = %mask_device_token(&binding.device_token),
                reason = %failure.reason,
                "binding pruned: the provider says the device token is dead"
            )
        }
        Ok(false) => debug!(
            device = %mask_device_token(&binding.device_token),
            "binding kept: re-registered after the provider's verdict"
        ),
        Err(err) => {
            shared.outage.failed("prune", "pruning a binding", &err);
            debug!(error = %err, "cannot prune binding; it will be tried again on the next push")
        }
    }
}
