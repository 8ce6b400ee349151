//! Stage 7: the event's one outcome (SPEC §5), decided from how its devices ended and nothing
//! else — a pure function, so the whole table is unit-tested below.
//!
//! Beyond SPEC §5's obvious cases: one accepted device is enough for `delivered` (it counts
//! devices an earlier attempt delivered too); every device this attempt tried had a dead token
//! → `no_bindings`, or `duplicate` when an earlier attempt reached the others; otherwise the
//! dead letter's reason is `expired` if any device ran into the deadline, `provider_rejected`
//! if any was refused for good, else `retries_exhausted`. An attempt cut short by the daemon
//! stopping hard decides nothing: the entry stays pending for another consumer.

use super::super::push::DeviceEnd;
use crate::outcome::{DeadReason, EventOutcome};
use crate::providers::Failure;

/// How one device of this attempt ended, with what names it in a dead letter's detail.
#[derive(Debug)]
pub(in crate::dispatch) struct DeviceReport {
    pub(in crate::dispatch) end: DeviceEnd,
    /// Push attempts made to the device.
    pub(in crate::dispatch) attempts: u32,
    /// `<platform> <credential> <masked token>`; empty for a device that accepted (only failures
    /// are named).
    pub(in crate::dispatch) label: String,
}

/// What the event comes to.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::dispatch) enum Decision {
    /// Its result, and its dead letter: (reason, detail, attempts).
    Final {
        outcome: EventOutcome,
        devices: usize,
        delivered: usize,
        dead: Option<(DeadReason, String, u32)>,
    },
    /// Nothing yet: leave the entry pending.
    LeavePending,
}

impl Decision {
    /// A result without a dead letter.
    pub(super) fn result(outcome: EventOutcome, devices: usize, delivered: usize) -> Decision {
        Decision::Final {
            outcome,
            devices,
            delivered,
            dead: None,
        }
    }

    /// A dead-lettered event that pushed nothing.
    pub(super) fn dead(outcome: EventOutcome, reason: DeadReason, detail: String) -> Decision {
        Decision::Final {
            outcome,
            devices: 0,
            delivered: 0,
            dead: Some((reason, detail, 0)),
        }
    }
}

/// Decide from `ends` (this attempt's devices), with `devices` targets in all, of which
/// `earlier_sent` an earlier attempt delivered and `skipped` this attempt did not push.
pub(super) fn decide(
    devices: usize,
    earlier_sent: usize,
    skipped: usize,
    ends: &[DeviceReport],
) -> Decision {
    if ends
        .iter()
        .any(|r| matches!(r.end, DeviceEnd::Aborted { .. }))
    {
        return Decision::LeavePending;
    }
    let delivered = earlier_sent
        + ends
            .iter()
            .filter(|r| matches!(r.end, DeviceEnd::Delivered))
            .count();
    if delivered > 0 {
        return Decision::result(EventOutcome::Delivered, devices, delivered);
    }
    let pruned = ends
        .iter()
        .filter(|r| matches!(r.end, DeviceEnd::InvalidToken(..)))
        .count();
    if pruned == ends.len() {
        // Every device this attempt tried is gone; the others were pushed by an earlier one.
        let outcome = if skipped > 0 {
            EventOutcome::Duplicate
        } else {
            EventOutcome::NoBindings
        };
        return Decision::result(outcome, devices, 0);
    }
    let mut expired = false;
    let mut rejected = false;
    let mut details = Vec::new();
    for r in ends {
        let failure = match &r.end {
            DeviceEnd::Rejected(f) => {
                rejected = true;
                f.clone()
            }
            DeviceEnd::Exhausted(f) => f.clone(),
            DeviceEnd::Expired(f) => {
                expired = true;
                f.clone().unwrap_or_else(|| {
                    Failure::new("deadline", "the deadline passed before an attempt")
                })
            }
            _ => continue,
        };
        details.push(format!("{}: {}", r.label, failure.detail));
    }
    let (outcome, reason) = if expired {
        (EventOutcome::Expired, DeadReason::Expired)
    } else if rejected {
        (EventOutcome::DeadLettered, DeadReason::ProviderRejected)
    } else {
        (EventOutcome::DeadLettered, DeadReason::RetriesExhausted)
    };
    Decision::Final {
        outcome,
        devices,
        delivered: 0,
        dead: Some((
            reason,
            details.join("; "),
            ends.iter().map(|r| r.attempts).sum(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(end: DeviceEnd, attempts: u32) -> DeviceReport {
        DeviceReport {
            end,
            attempts,
            label: "fcm CR1 abcdefgh…".into(),
        }
    }

    fn failure(reason: &str) -> Failure {
        Failure::new(reason, format!("FCM {reason}"))
    }

    fn dead_reason(d: &Decision) -> Option<DeadReason> {
        match d {
            Decision::Final { dead, .. } => dead.as_ref().map(|(r, _, _)| *r),
            Decision::LeavePending => None,
        }
    }

    fn outcome(d: &Decision) -> Option<(EventOutcome, usize, usize)> {
        match d {
            Decision::Final {
                outcome,
                devices,
                delivered,
                ..
            } => Some((*outcome, *devices, *delivered)),
            Decision::LeavePending => None,
        }
    }

    use DeviceEnd::*;
    use EventOutcome as O;

    #[test]
    fn the_outcome_table() {
        let dead = || InvalidToken(failure("UNREGISTERED"), 1);
        // (case, delivered earlier, skipped, this attempt's ends, result, dead-letter reason)
        type Case = (
            &'static str,
            usize,
            usize,
            Vec<DeviceEnd>,
            Option<(O, usize, usize)>,
            Option<DeadReason>,
        );
        let cases: Vec<Case> = vec![
            (
                "one accepted is enough",
                0,
                0,
                vec![Delivered, Exhausted(failure("UNAVAILABLE"))],
                Some((O::Delivered, 2, 1)),
                None,
            ),
            (
                "earlier deliveries count",
                1,
                1,
                vec![Rejected(failure("SENDER_ID_MISMATCH"))],
                Some((O::Delivered, 2, 1)),
                None,
            ),
            (
                "all dead tokens",
                0,
                0,
                vec![dead(), dead()],
                Some((O::NoBindings, 2, 0)),
                None,
            ),
            (
                "dead tokens, the rest pushed earlier",
                0,
                1,
                vec![dead()],
                Some((O::Duplicate, 2, 0)),
                None,
            ),
            (
                "any expiry wins",
                0,
                0,
                vec![Rejected(failure("BadTopic")), Expired(None)],
                Some((O::Expired, 2, 0)),
                Some(DeadReason::Expired),
            ),
            (
                "rejection over exhaustion",
                0,
                0,
                vec![Rejected(failure("BadTopic")), Exhausted(failure("x"))],
                Some((O::DeadLettered, 2, 0)),
                Some(DeadReason::ProviderRejected),
            ),
            (
                "exhausted",
                0,
                0,
                vec![Exhausted(failure("UNAVAILABLE")), dead()],
                Some((O::DeadLettered, 2, 0)),
                Some(DeadReason::RetriesExhausted),
            ),
            (
                "a hard stop decides nothing",
                0,
                0,
                vec![Delivered, Aborted { in_flight: true }],
                None,
                None,
            ),
            (
                "even before the request left",
                0,
                0,
                vec![Aborted { in_flight: false }],
                None,
                None,
            ),
        ];
        for (name, earlier, skipped, ends, want, reason) in cases {
            let devices = ends.len() + skipped;
            let ends: Vec<_> = ends.into_iter().map(|e| report(e, 2)).collect();
            let got = decide(devices, earlier, skipped, &ends);
            assert_eq!(outcome(&got), want, "{name}");
            assert_eq!(dead_reason(&got), reason, "{name}");
        }
    }

    #[test]
    fn the_dead_letter_names_each_failed_device_and_sums_attempts() {
        let ends = [
            report(Rejected(failure("BadTopic")), 1),
            report(Exhausted(failure("UNAVAILABLE")), 6),
            report(InvalidToken(failure("UNREGISTERED"), 1), 1),
        ];
        let Decision::Final {
            dead: Some((_, detail, attempts)),
            ..
        } = decide(3, 0, 0, &ends)
        else {
            panic!("a dead letter");
        };
        assert_eq!(attempts, 8);
        assert_eq!(
            detail,
            "fcm CR1 abcdefgh…: FCM BadTopic; fcm CR1 abcdefgh…: FCM UNAVAILABLE"
        );
    }

    #[test]
    fn an_expiry_before_any_attempt_says_so() {
        let Decision::Final {
            dead: Some((_, detail, _)),
            ..
        } = decide(1, 0, 0, &[report(Expired(None), 0)])
        else {
            panic!("a dead letter");
        };
        assert!(
            detail.ends_with("the deadline passed before an attempt"),
            "{detail}"
        );
    }
}
