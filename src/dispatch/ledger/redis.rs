//! The ledger in Redis.
//!
//! Key (`<p>` is `redis.key_prefix`):
//! - `<p>sent:{<call_sid>}` — hash: device key (`<kind>:<credential>:<token digest>`, see
//!   [`super::device_key`]) → `sending|<since ms>|<instance>|<entry id>|<consumer>` (claimed:
//!   the push is in flight, or its holder died) or `sent` (a provider accepted it). Expires
//!   [`super::CLAIM_MARGIN_MS`] after the latest deadline of the call's events; only
//!   lengthened, never shortened. The hash tag keeps one call in one cluster slot, and both
//!   scripts touch that key alone.
//!
//! Claiming is one script round trip for all devices of an event: a device is claimed only
//! when it is free or still holds exactly the stale value the caller names, so two attempts
//! racing for one device never both win. The claims of many events go in one round trip
//! ([`SentLedger::claim_many`]), as do the settlements of many events
//! ([`SentLedger::settle_many`]): one pipeline on one server.

use crate::redis_conn::RedisConn;
use redis::Script;

use super::{Claim, ClaimCall, ClaimRequest, Holder, SentLedger, Settle, Settlement};
use crate::backend::BackendError;
use crate::domain::now_ms;
use crate::redis_conn::{invoke_many, Keys, ScriptCall};

/// The Redis-backed ledger (see the module docs for its key).
pub struct RedisSentLedger {
    conn: RedisConn,
    keys: Keys,
    claim: Script,
    settle: Script,
}

impl RedisSentLedger {
    /// A ledger over `conn`, with the key names of `keys`.
    pub fn new(conn: impl Into<RedisConn>, keys: Keys) -> RedisSentLedger {
        RedisSentLedger {
            conn: conn.into(),
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
        me: &Holder,
        requests: &[ClaimRequest<'_>],
        expire_at_ms: u64,
    ) -> Result<Vec<Claim>, BackendError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ttl_ms = expire_at_ms.saturating_sub(now_ms()).max(1);
        let mut invocation = self.claim.key(self.keys.sent(call_sid));
        invocation.arg(ttl_ms).arg(me.encode());
        for r in requests {
            invocation
                .arg(r.device)
                .arg(r.take_over.map(Holder::encode).unwrap_or_default());
        }
        let states: Vec<String> = invocation.invoke_async(&mut self.conn.clone()).await?;
        if states.len() != requests.len() {
            return Err(BackendError::Corrupt(format!(
                "the claim script answered {} states for {} devices",
                states.len(),
                requests.len()
            )));
        }
        Ok(states.iter().map(|s| Claim::parse(s)).collect())
    }

    async fn claim_many(&self, calls: &[ClaimCall<'_>]) -> Result<Vec<Vec<Claim>>, BackendError> {
        let now = now_ms();
        let script_calls: Vec<ScriptCall> = calls
            .iter()
            .filter(|c| !c.requests.is_empty())
            .map(|c| {
                let mut call = ScriptCall::new(&self.claim, self.keys.sent(c.call_sid));
                call.arg(c.expire_at_ms.saturating_sub(now).max(1))
                    .arg(c.me.encode());
                for r in c.requests {
                    call.arg(r.device)
                        .arg(r.take_over.map(Holder::encode).unwrap_or_default());
                }
                call
            })
            .collect();
        let mut states = invoke_many::<Vec<String>>(&self.conn, &self.claim, script_calls)
            .await?
            .into_iter();
        calls
            .iter()
            .map(|c| {
                if c.requests.is_empty() {
                    return Ok(Vec::new());
                }
                let got = states.next().unwrap_or_default();
                if got.len() != c.requests.len() {
                    return Err(BackendError::Corrupt(format!(
                        "the claim script answered {} states for {} devices",
                        got.len(),
                        c.requests.len()
                    )));
                }
                Ok(got.iter().map(|s| Claim::parse(s)).collect())
            })
            .collect()
    }

    async fn settle(
        &self,
        call_sid: &str,
        me: &Holder,
        settled: &[(&str, Settle)],
    ) -> Result<(), BackendError> {
        if settled.is_empty() {
            return Ok(());
        }
        let mut invocation = self.settle.key(self.keys.sent(call_sid));
        invocation.arg(me.encode());
        for (device, how) in settled {
            invocation.arg(*device).arg(settle_word(*how));
        }
        invocation
            .invoke_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn settle_many(&self, batch: &[&Settlement]) -> Result<(), BackendError> {
        let calls: Vec<ScriptCall> = batch
            .iter()
            .filter(|s| !s.devices.is_empty())
            .map(|s| {
                let mut call = ScriptCall::new(&self.settle, self.keys.sent(&s.call_sid));
                call.arg(s.me.encode());
                for (device, how) in &s.devices {
                    call.arg(device).arg(settle_word(*how));
                }
                call
            })
            .collect();
        invoke_many::<()>(&self.conn, &self.settle, calls).await?;
        Ok(())
    }
}

fn settle_word(how: Settle) -> &'static str {
    match how {
        Settle::Sent => "sent",
        Settle::Release => "release",
    }
}
