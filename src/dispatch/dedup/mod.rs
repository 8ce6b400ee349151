//! No double ring: a ledger of the pushes each call already made, consulted before sending.
//!
//! One call never rings a device twice (SPEC §5), even when its entry is redelivered after a
//! crash, reclaimed from a dead consumer, or added twice by a call server. Before the fan-out,
//! the event *claims* every target device for its call in one round trip; only freshly claimed
//! devices are pushed. Once the event's devices have their final answers, the claims are
//! *settled*: promoted to [`Settle::Sent`] on delivery, released ([`Settle::Release`]) after a
//! final failure so a later attempt (a replayed dead letter) may send.
//!
//! A claim that is still `sending` when another attempt looks (the process died mid-send, or
//! is still working on the entry) counts as possibly rung and is not sent again: callpush
//! prefers a missed ring over a double ring. Claims expire a margin after the event's
//! deadline, when no attempt may send anyway.
//!
//! A device is `(credential, device_token)`, not a binding id: a device deleted and registered
//! again gets a new binding id but is the same phone. `incoming` and `cancel` of one call are
//! separate entries, so the cancel still reaches every device the call rang.
//!
//! [`redis::RedisSentLedger`] is the production ledger (its header documents the key);
//! [`MemoryLedger`] serves one process (unit tests, a future `callpush dev`).

pub mod redis;

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::backend::BackendError;
use crate::domain::PushKind;

/// How long a claim outlives the event's deadline: redeliveries past the deadline end `expired`
/// without sending, and the margin covers clocks of different hosts disagreeing.
pub const CLAIM_MARGIN_MS: u64 = 60_000;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody pushed this device for this call: it is ours to send.
    Fresh,
    /// An earlier attempt claimed it and never settled (it died mid-send or is still sending):
    /// possibly rung, not sent again.
    Sending,
    /// An earlier attempt delivered it.
    Sent,
}

/// How a claimed device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The provider accepted the push: remember it until the claim expires.
    Sent,
    /// A final failure (or the push never left): forget the claim so a later attempt may send.
    Release,
}

/// The key of one device within a call: the push kind, the credential and a digest of the
/// device token (the ledger never stores device tokens).
pub fn device_key(kind: PushKind, credential: &str, device_token: &str) -> String {
    let digest = Sha256::digest(device_token.as_bytes());
    format!(
        "{}:{credential}:{}",
        kind.as_str(),
        hex::encode(&digest[..16])
    )
}

/// Remembers which devices each call already pushed.
#[async_trait::async_trait]
pub trait SentLedger: Send + Sync + 'static {
    /// Claim each of `devices` (from [`device_key`]) for `call_sid`, keeping the claims until
    /// `expire_at_ms` (ms since the epoch) at least. Returns one [`Claim`] per device, in order.
    async fn claim(
        &self,
        call_sid: &str,
        devices: &[String],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError>;

    /// Settle claims this attempt made (see [`Settle`]).
    async fn settle(
        &self,
        call_sid: &str,
        settled: &[(String, Settle)],
    ) -> Result<(), BackendError>;
}

/// A ledger in this process's memory (tests, single-process use). Calls past their expiry are
/// dropped whenever the ledger has doubled since the last sweep, so memory stays bounded.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    inner: Mutex<MemoryCalls>,
}

#[derive(Debug, Default)]
struct MemoryCalls {
    /// call_sid → (expire_at_ms, device → claim).
    calls: HashMap<String, (u64, HashMap<String, Claim>)>,
    /// Sweep expired calls when there are more than this many.
    sweep_at: usize,
}

#[async_trait::async_trait]
impl SentLedger for MemoryLedger {
    async fn claim(
        &self,
        call_sid: &str,
        devices: &[String],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError> {
        let mut inner = self.inner.lock().expect("ledger lock");
        if inner.calls.len() >= inner.sweep_at {
            let now = crate::domain::now_ms();
            inner.calls.retain(|_, (expiry, _)| *expiry > now);
            inner.sweep_at = (inner.calls.len() * 2).max(1024);
        }
        let (expiry, call) = inner.calls.entry(call_sid.to_string()).or_default();
        *expiry = (*expiry).max(expire_at_ms);
        Ok(devices
            .iter()
            .map(|d| match call.get(d) {
                Some(found) => *found,
                None => {
                    call.insert(d.clone(), Claim::Sending);
                    Claim::Fresh
                }
            })
            .collect())
    }

    async fn settle(
        &self,
        call_sid: &str,
        settled: &[(String, Settle)],
    ) -> Result<(), BackendError> {
        let mut inner = self.inner.lock().expect("ledger lock");
        let Some((_, call)) = inner.calls.get_mut(call_sid) else {
            return Ok(());
        };
        for (device, how) in settled {
            match how {
                Settle::Sent => {
                    call.insert(device.clone(), Claim::Sent);
                }
                Settle::Release => {
                    call.remove(device);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_is_taken_once_until_released() {
        let ledger = MemoryLedger::default();
        let devices = vec!["a".to_string(), "b".to_string()];
        let first = ledger.claim("CA1", &devices, u64::MAX).await.unwrap();
        assert_eq!(first, vec![Claim::Fresh, Claim::Fresh]);
        ledger
            .settle(
                "CA1",
                &[("a".into(), Settle::Sent), ("b".into(), Settle::Release)],
            )
            .await
            .unwrap();
        let again = ledger.claim("CA1", &devices, u64::MAX).await.unwrap();
        assert_eq!(again, vec![Claim::Sent, Claim::Fresh]);
        let still = ledger.claim("CA1", &devices, u64::MAX).await.unwrap();
        assert_eq!(still, vec![Claim::Sent, Claim::Sending]);
        let other = ledger.claim("CA2", &devices, u64::MAX).await.unwrap();
        assert_eq!(other, vec![Claim::Fresh, Claim::Fresh]);
    }

    #[tokio::test]
    async fn expired_calls_are_swept() {
        let ledger = MemoryLedger::default();
        let device = vec!["a".to_string()];
        for n in 0..2_000 {
            ledger.claim(&format!("CA{n}"), &device, 1).await.unwrap();
        }
        let kept = ledger.inner.lock().unwrap().calls.len();
        assert!(kept < 1_100, "{kept} calls kept");
    }

    #[test]
    fn device_keys_separate_kinds_and_hide_the_token() {
        let incoming = device_key(PushKind::Incoming, "CR1", "secret-token");
        let cancel = device_key(PushKind::Cancel, "CR1", "secret-token");
        assert_ne!(incoming, cancel);
        assert!(incoming.starts_with("incoming:CR1:"));
        assert!(!incoming.contains("secret-token"));
        assert_eq!(
            incoming,
            device_key(PushKind::Incoming, "CR1", "secret-token")
        );
    }
}
