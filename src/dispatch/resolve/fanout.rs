//! Stage 5: push every claimed device at once, each until its final answer
//! ([`push_until_final`]), and, when the event pushes several devices, record each accepted
//! push in the ledger the moment it is accepted — not when the whole event is done — so a crash
//! while other devices of the call are still retrying never rings a device twice. With one
//! device there is nothing else to wait for: its push is recorded with the event's outcome
//! ([`super::settle`]), many events in one round trip. Also the SLO number: the time from the
//! entry's stream id to the first device that accepted.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::join_all;

use super::super::ledger::Settle;
use super::super::outage::Backoff;
use super::super::push::{push_until_final, DeviceEnd};
use super::super::{sleep_or_stop, Shared};
use super::claim::Claimed;
use super::decide::DeviceReport;
use super::Target;
use crate::domain::{mask_device_token, now_ms};
use crate::event::CallEvent;

/// Push every fresh device of `claimed`; one report per device, in order.
pub(super) async fn fan_out<'t>(
    shared: &Shared,
    event: &CallEvent,
    claimed: &Claimed<'t>,
) -> Vec<DeviceReport> {
    let first_accepted = AtomicBool::new(false);
    let record = records_sent(claimed);
    let push_one = |t: &'t Target| {
        let first_accepted = &first_accepted;
        async move {
            let push = t.binding.push(event.call.clone());
            let (mut end, attempts) = push_until_final(shared, t.provider.as_ref(), push).await;
            if matches!(end, DeviceEnd::Delivered) {
                if !first_accepted.swap(true, Ordering::Relaxed) {
                    let seconds = now_ms().saturating_sub(event.enqueued_at_ms) as f64 / 1000.0;
                    shared.metrics.event_latency(event.kind().as_str(), seconds);
                }
                if record && !record_sent(shared, event, claimed, &t.device).await {
                    // Stopping before the ledger knew: the entry stays pending, and whoever
                    // takes it over pushes this device again (the window SPEC §5 allows).
                    end = DeviceEnd::Aborted { in_flight: true };
                }
            }
            // The label only ever names a device that failed (in the dead letter's detail).
            let b = &t.binding;
            let label = if matches!(end, DeviceEnd::Delivered) {
                String::new()
            } else {
                format!(
                    "{} {} {}",
                    b.platform,
                    b.credential,
                    mask_device_token(&b.device_token)
                )
            };
            DeviceReport {
                end,
                attempts,
                label,
            }
        }
    };
    // Most events go to one device: no futures to join for it.
    let mut fresh = claimed.fresh();
    match (fresh.next(), fresh.next()) {
        (Some(only), None) => vec![push_one(only).await],
        _ => join_all(claimed.fresh().map(push_one)).await,
    }
}

/// Whether the fan-out records accepted pushes itself: with several devices; the push of a
/// single device is recorded with the outcome.
pub(super) fn records_sent(claimed: &Claimed<'_>) -> bool {
    claimed.fresh_count() > 1
}

/// Mark `device` sent, retrying through a Redis outage; false when the daemon stops hard
/// first. Until it lands, a reclaim of the entry would push the device again.
async fn record_sent(
    shared: &Shared,
    event: &CallEvent,
    claimed: &Claimed<'_>,
    device: &str,
) -> bool {
    let mut backoff = Backoff::default();
    loop {
        match shared
            .ledger
            .settle(event.call_sid(), &claimed.me, &[(device, Settle::Sent)])
            .await
        {
            Ok(()) => {
                shared.outage.recovered();
                return true;
            }
            Err(err) => {
                shared
                    .outage
                    .failed("settle_devices", "recording an accepted push", &err);
                if sleep_or_stop(backoff.next(), &shared.hard_stop).await {
                    return false;
                }
            }
        }
    }
}
