//! The ledger in Redis.
//!
//! Key (`<p>` is `redis.key_prefix`):
//! - `<p>sent:{<call_sid>}` — hash: device key (`<kind>:<credential>:<token digest>`, see
//!   [`super::device_key`]) → `sending` (claimed, push in flight or the claimer died) or `sent`
//!   (delivered). Expires [`super::CLAIM_MARGIN_MS`] after the latest deadline of the call's
//!   events; only lengthened, never shortened. The hash tag keeps one call in one cluster slot.
//!
//! Claiming is one script round trip for all devices of an event (HSETNX per device, so two
//! attempts racing for one device never both win); settling is one more.

use redis::aio::ConnectionManager;
use redis::Script;

use super::{Claim, SentLedger, Settle};
use crate::backend::BackendError;
use crate::domain::now_ms;
use crate::redis_conn::Keys;

/// The Redis-backed ledger (see the module docs for its key).
pub struct RedisSentLedger {
    conn: ConnectionManager,
    keys: Keys,
    claim: Script,
    settle: Script,
}

impl RedisSentLedger {
    /// A ledger over `conn`, with the key names of `keys`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> RedisSentLedger {
        RedisSentLedger {
            conn,
            keys,
            claim: Script::new(include_str!("claim.lua")),
            settle: Script::new(include_str!("settle.lua")),
        }
    }
}

#[async_trait::async_trait]
impl SentLedger for RedisSentLedger {
    async fn claim(
        &self,
        call_sid: &str,
        devices: &[String],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let ttl_ms = expire_at_ms.saturating_sub(now_ms()).max(1);
        let mut invocation = self.claim.key(self.keys.sent(call_sid));
        invocation.arg(ttl_ms);
        for device in devices {
            invocation.arg(device);
        }
        let states: Vec<Option<String>> = invocation.invoke_async(&mut self.conn.clone()).await?;
        if states.len() != devices.len() {
            return Err(BackendError::Corrupt(format!(
                "{} states for {} devices",
                states.len(),
                devices.len()
            )));
        }
        states
            .into_iter()
            .map(|state| match state.as_deref() {
                Some("fresh") => Ok(Claim::Fresh),
                Some("sent") => Ok(Claim::Sent),
                // Released between our HSETNX and HGET cannot happen inside one script; a nil
                // is treated like a claim in progress, the safe side.
                Some("sending") | None => Ok(Claim::Sending),
                Some(other) => Err(BackendError::Corrupt(format!("unknown state {other:?}"))),
            })
            .collect()
    }

    async fn settle(
        &self,
        call_sid: &str,
        settled: &[(String, Settle)],
    ) -> Result<(), BackendError> {
        if settled.is_empty() {
            return Ok(());
        }
        let mut invocation = self.settle.key(self.keys.sent(call_sid));
        for (device, how) in settled {
            invocation.arg(device).arg(match how {
                Settle::Sent => "sent",
                Settle::Release => "release",
            });
        }
        invocation
            .invoke_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
