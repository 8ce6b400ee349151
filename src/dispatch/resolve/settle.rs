//! Stage 6: after the fan-out, say how this attempt's claims end — released for devices that
//! failed for good, so a later attempt (a replayed dead letter) may push them; sent for the one
//! device of a single-device event (the fan-out leaves that to the outcome, see
//! [`super::fanout`]) — and prune the bindings whose tokens the provider says are dead
//! (race-safe: SPEC §4). The [`Settlement`] goes with the event's outcome to the finish stage,
//! which settles the claims of many events in one round trip before it acknowledges them. A
//! release that is lost is harmless: once the entry is finished, its claims count as stale to
//! every later attempt.

use tracing::{debug, info};

use super::super::ledger::{Settle, Settlement};
use super::super::push::DeviceEnd;
use super::super::Shared;
use super::claim::Claimed;
use super::decide::DeviceReport;
use crate::bindings::Device;
use crate::domain::mask_device_token;
use crate::event::CallEvent;
use crate::providers::Failure;

/// How the claims end, and prune dead tokens. The settlement takes over the claims' holder.
pub(super) async fn settle(
    shared: &Shared,
    event: &CallEvent,
    claimed: Claimed<'_>,
    ends: &[DeviceReport],
) -> Settlement {
    let record_sent = !super::fanout::records_sent(&claimed);
    let devices = claimed
        .fresh()
        .zip(ends)
        .filter_map(|(t, r)| match r.end {
            DeviceEnd::Delivered if record_sent => Some((t.device.to_string(), Settle::Sent)),
            // Accepted (recorded already), or possibly rung: the claim stays.
            DeviceEnd::Delivered | DeviceEnd::Aborted { in_flight: true } => None,
            _ => Some((t.device.to_string(), Settle::Release)),
        })
        .collect();
    for (target, report) in claimed.fresh().zip(ends) {
        if let DeviceEnd::InvalidToken(failure, judged_at_ms) = &report.end {
            prune(shared, &target.binding, failure, *judged_at_ms).await;
        }
    }
    settlement(event, claimed, devices)
}

/// Release every claim of this attempt (the event ends before anything was pushed).
pub(super) fn release_all(event: &CallEvent, claimed: Claimed<'_>) -> Settlement {
    let all = claimed
        .fresh()
        .map(|t| (t.device.to_string(), Settle::Release))
        .collect();
    settlement(event, claimed, all)
}

fn settlement(
    event: &CallEvent,
    claimed: Claimed<'_>,
    devices: Vec<(String, Settle)>,
) -> Settlement {
    Settlement {
        call_sid: event.call.call_sid.clone(),
        me: claimed.me,
        devices,
    }
}

/// Settle now, for an event that stays pending (no outcome to go with): best effort.
pub(super) async fn settle_now(shared: &Shared, settlement: &Settlement) {
    if settlement.devices.is_empty() {
        return;
    }
    let settled = shared.ledger.settle_many(&[settlement]).await;
    let judged = shared
        .outage
        .judge_all("settle_devices", "releasing device claims", settled);
    if judged.iter().any(Result::is_err) {
        debug!("cannot release device claims; later attempts will find them stale");
    }
}

async fn prune(shared: &Shared, binding: &Device, failure: &Failure, judged_at_ms: u64) {
    match shared
        .store
        .prune(&binding.to_binding(), judged_at_ms, &failure.reason)
        .await
    {
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
