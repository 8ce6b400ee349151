//! Credential-wide backoff: a provider answer that says the credential as a whole is over its
//! quota ([`Outcome::OverQuota`]; FCM: the project's messages per minute) pauses every push of
//! that credential until the pause ends, instead of each push retrying on its own and every
//! retry spending a request on a quota that has none left.
//!
//! - [`QuotaGates::pause`]: the answer's pause starts (or extends) the credential's;
//! - [`wait_turn`]: before each request, a push of a paused credential waits for the pause to
//!   end — without a push slot, like a retry's backoff — or, when the pause outlasts its
//!   event's deadline, ends at once as expired: a ring that cannot happen in time should send
//!   the caller on (to voicemail) now, not when the deadline comes.
//!
//! Answers about one device (APNs `429 TooManyRequests`, FCM's per-device rate) stay with that
//! device: they are ordinary retries. The pause is this process's: each daemon of a group
//! learns of the quota from its own first answer.
//!
//! Metrics (emitted here only): `callpush_credential_paused{platform,credential}` is 1 while a
//! pause lasts, `callpush_credential_pauses_total` counts pauses begun or extended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::push::DeviceEnd;
use super::Shared;
use crate::domain::{now_ms, Platform};
use crate::metrics::Metrics;
use crate::providers::{Failure, Provider};

/// The pause of each credential (by SID).
#[derive(Default)]
pub(crate) struct QuotaGates {
    gates: RwLock<HashMap<String, Arc<Gate>>>,
}

/// One credential's pause.
struct Gate {
    platform: Platform,
    /// The pause ends at this time, ms since the epoch (0 or past: not paused).
    until_ms: Arc<AtomicU64>,
    /// The answer that paused it, for the dead letters of pushes it outlasts.
    cause: Mutex<Option<Failure>>,
}

impl QuotaGates {
    /// A gate for each provider's credential, none paused.
    pub(crate) fn new(providers: &HashMap<String, Arc<dyn Provider>>) -> QuotaGates {
        let gates = QuotaGates::default();
        gates.adopt(providers);
        gates
    }

    /// A gate for each of `providers`' credentials (at start and after every reload): a
    /// credential's gate, and its pause, outlive a reload that keeps the credential.
    pub(crate) fn adopt(&self, providers: &HashMap<String, Arc<dyn Provider>>) {
        let mut gates = self.gates.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::take(&mut *gates);
        for (sid, p) in providers {
            let gate = old.get(sid).cloned().unwrap_or_else(|| {
                Arc::new(Gate {
                    platform: p.platform(),
                    until_ms: Arc::new(AtomicU64::new(0)),
                    cause: Mutex::new(None),
                })
            });
            gates.insert(sid.clone(), gate);
        }
    }

    fn gate(&self, credential: &str) -> Option<Arc<Gate>> {
        self.gates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(credential)
            .cloned()
    }

    /// When `credential`'s pause ends, if it is paused at `now_ms`.
    fn paused_until(&self, credential: &str, now_ms: u64) -> Option<u64> {
        let until = self.gate(credential)?.until_ms.load(Ordering::Acquire);
        (until > now_ms).then_some(until)
    }

    /// The answer that paused `credential`, as the failure of a push the pause outlasts.
    fn cause(&self, credential: &str) -> Failure {
        let cause = self
            .gate(credential)
            .and_then(|g| g.cause.lock().unwrap_or_else(|e| e.into_inner()).clone());
        match cause {
            Some(cause) => Failure::new(
                cause.reason,
                format!(
                    "{} (the credential's pause outlasted the deadline)",
                    cause.detail
                ),
            ),
            None => Failure::new(
                "credential_paused",
                "the credential's quota pause outlasted the deadline",
            ),
        }
    }

    /// `credential` is over its quota: pause it for `pause` from now (a pause already longer is
    /// kept). Shows in the metrics until it ends; `stop` ends the watch early.
    pub(crate) fn pause(
        &self,
        credential: &str,
        pause: Duration,
        failure: &Failure,
        metrics: &Arc<Metrics>,
        stop: &CancellationToken,
    ) {
        let Some(gate) = self.gate(credential) else {
            return;
        };
        let now = now_ms();
        let until = now.saturating_add(pause.as_millis() as u64);
        let before = gate.until_ms.fetch_max(until, Ordering::AcqRel);
        if before >= until {
            return;
        }
        let began = before <= now;
        *gate.cause.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure.clone());
        let handles = metrics.credential(credential);
        if let Some(h) = &handles {
            h.pauses.inc();
            h.paused.set(1);
        }
        if !began {
            // The pause was running: its watch follows the extension.
            return;
        }
        warn!(credential, platform = %gate.platform, ?pause, detail = %failure.detail,
            "the provider says the credential is over its quota: its pushes pause");
        let Some(h) = handles else {
            return;
        };
        let stop = stop.clone();
        let credential = credential.to_string();
        let until_ms = gate.until_ms.clone();
        // Clears the gauge when the pause (however often extended) ends.
        tokio::spawn(async move {
            loop {
                let (until, now) = (until_ms.load(Ordering::Acquire), now_ms());
                if until <= now {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(until - now)) => {}
                    _ = stop.cancelled() => return,
                }
            }
            h.paused.set(0);
            info!(credential, "the credential's quota pause ended");
        });
    }
}

/// Before a request of `push`'s credential: wait until its quota pause, if any, ends. Ends the
/// push as expired at once when the pause outlasts `deadline_ms`, and as aborted when the
/// daemon stops hard meanwhile.
pub(super) async fn wait_turn(
    shared: &Shared,
    credential: &str,
    deadline_ms: u64,
) -> Result<(), DeviceEnd> {
    let now = now_ms();
    let Some(until) = shared.quota.paused_until(credential, now) else {
        return Ok(());
    };
    if until >= deadline_ms {
        return Err(DeviceEnd::Expired(Some(shared.quota.cause(credential))));
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(until - now)) => Ok(()),
        _ = shared.hard_stop.cancelled() => Err(DeviceEnd::Aborted { in_flight: false }),
    }
}

/// `provider` answered that its credential is over its quota: pause the credential.
pub(super) fn pause(shared: &Shared, provider: &dyn Provider, pause: Duration, failure: &Failure) {
    shared.quota.pause(
        provider.credential(),
        pause,
        failure,
        &shared.metrics,
        &shared.hard_stop,
    );
}
