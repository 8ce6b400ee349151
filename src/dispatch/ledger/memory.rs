//! The ledger in this process's memory, for one process alone (unit tests, `callpush dev`): the
//! same values and compare-and-set rules as the Redis ledger, under one lock. Calls past their
//! expiry are dropped whenever the ledger has doubled since the last sweep, so memory stays
//! bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Acked, Claim, ClaimRequest, Holder, SentLedger, Settle};
use crate::backend::BackendError;
use crate::domain::now_ms;

/// A ledger in memory (see the module docs).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    inner: Mutex<MemoryCalls>,
}

#[derive(Debug, Default)]
struct MemoryCalls {
    /// call_sid → (expire_at_ms, device → stored value, as in Redis).
    calls: HashMap<String, (u64, HashMap<String, String>)>,
    /// Sweep expired calls when there are more than this many.
    sweep_at: usize,
}

impl MemoryLedger {
    /// How many calls are remembered now.
    pub fn calls(&self) -> usize {
        self.inner.lock().expect("ledger lock").calls.len()
    }
}

#[async_trait::async_trait]
impl SentLedger for MemoryLedger {
    async fn claim(
        &self,
        call_sid: &str,
        me: &Holder,
        requests: &[ClaimRequest<'_>],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError> {
        let mut inner = self.inner.lock().expect("ledger lock");
        if inner.calls.len() >= inner.sweep_at {
            let now = now_ms();
            inner.calls.retain(|_, (expiry, _)| *expiry > now);
            inner.sweep_at = (inner.calls.len() * 2).max(1024);
        }
        let (expiry, call) = inner.calls.entry(call_sid.to_string()).or_default();
        *expiry = (*expiry).max(expire_at_ms);
        let mine = me.encode();
        Ok(requests
            .iter()
            .map(|r| {
                let expected = r.take_over.map(Holder::encode);
                match call.get(r.device) {
                    Some(current) if Some(current) != expected.as_ref() => Claim::parse(current),
                    _ => {
                        call.insert(r.device.to_string(), mine.clone());
                        Claim::Fresh
                    }
                }
            })
            .collect())
    }

    async fn settle(
        &self,
        call_sid: &str,
        me: &Holder,
        settled: &[(&str, Settle)],
    ) -> Result<(), BackendError> {
        let mut inner = self.inner.lock().expect("ledger lock");
        let Some((_, call)) = inner.calls.get_mut(call_sid) else {
            return Ok(());
        };
        let mine = me.encode();
        for (device, how) in settled {
            match how {
                Settle::Sent => {
                    call.insert(device.to_string(), super::sent_value(&me.entry));
                }
                Settle::Release => {
                    if call.get(*device) == Some(&mine) {
                        call.remove(*device);
                    }
                }
            }
        }
        Ok(())
    }

    async fn ack(
        &self,
        call_sid: &str,
        device: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Acked, BackendError> {
        let mut inner = self.inner.lock().expect("ledger lock");
        let Some((expiry, call)) = inner.calls.get_mut(call_sid) else {
            return Ok(Acked::NotPushed);
        };
        let sent = match call.get(device) {
            Some(sent) if *expiry > now_ms && sent.starts_with("sent") => sent.clone(),
            _ => return Ok(Acked::NotPushed),
        };
        let field = format!("ack:{device}");
        let first = if record {
            call.insert(field, now_ms.to_string()).is_none()
        } else {
            !call.contains_key(&field)
        };
        Ok(if first {
            Acked::parse(&["first".into(), sent])
        } else {
            Acked::Again
        })
    }
}
