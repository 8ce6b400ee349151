//! The ledger in Redis.
//!
//! Key (`<p>` is `redis.key_prefix`):
//! - `<p>sent:{<call_sid>}` — hash: device key (`<kind>:<credential>:<token digest>`, see
//!   [`super::device_key`]) → `sending|<since ms>|<instance>|<entry id>|<consumer>` (claimed:
//!   the push is in flight, or its holder died) or `sent|<entry id>` (a provider accepted the
//!   push of that stream entry; `sent` alone before device acks, SPEC §11); and
//!   `ack:<device key>` → the time of the device's first ack (`acks`). Expires
//!   [`super::CLAIM_MARGIN_MS`] after the latest deadline of the call's events; only
//!   lengthened, never shortened. The hash tag keeps one call in one cluster slot, and both
//!   scripts touch that key alone.
//!
//! Claiming is one script round trip for all devices of an event: a device is claimed only
//! when it is free or still holds exactly the stale value the caller names, so two attempts
//! racing for one device never both win. The claims of many events go in one round trip
//! ([`SentLedger::claim_many`]), as do the settlements of many events
//! ([`SentLedger::settle_many`]): one pipeline on one server; each call keeps its own answer,
//! so one call's refused command fails that call alone.

mod lean;

use crate::redis_conn::RedisConn;
use std::sync::atomic::{AtomicU8, Ordering};

use redis::{Script, Value};
use tracing::warn;

use super::{Acked, Claim, ClaimCall, ClaimRequest, Holder, SentLedger, Settle, Settlement};
use crate::backend::BackendError;
use crate::domain::now_ms;
use crate::redis_conn::wire::Commands;
use crate::redis_conn::{exec_each, invoke_each, Keys, ScriptCall};

/// The Redis-backed ledger (see the module docs for its key).
pub struct RedisSentLedger {
    conn: RedisConn,
    keys: Keys,
    claim: Script,
    settle: Script,
    ack: Script,
    /// Whether the common claims and `sent` marks go as plain commands ([`lean`]): [`UNKNOWN`]
    /// until the server's version is read, and again after the plain commands failed (a
    /// failover to an older server); [`SCRIPTS`] for good with
    /// [`RedisSentLedger::scripts_only`].
    way: AtomicU8,
    scripts_only: bool,
}

const UNKNOWN: u8 = 0;
const LEAN: u8 = 1;
const SCRIPTS: u8 = 2;

impl RedisSentLedger {
    /// A ledger over `conn`, with the key names of `keys`. On Redis 7.0 and later the common
    /// claims and `sent` marks are plain commands in a transaction; before, scripts.
    pub fn new(conn: impl Into<RedisConn>, keys: Keys) -> RedisSentLedger {
        RedisSentLedger {
            conn: conn.into(),
            keys,
            claim: Script::new(include_str!("claim.lua")),
            settle: Script::new(include_str!("settle.lua")),
            ack: Script::new(include_str!("ack.lua")),
            way: AtomicU8::new(UNKNOWN),
            scripts_only: false,
        }
    }

    /// A ledger that uses its scripts for everything, as it does on Redis before 7.0 (public
    /// so the tests run both ways on one server).
    pub fn scripts_only(conn: impl Into<RedisConn>, keys: Keys) -> RedisSentLedger {
        RedisSentLedger {
            scripts_only: true,
            ..RedisSentLedger::new(conn, keys)
        }
    }

    /// Whether the server takes the plain-command forms; its version is read when not known (a
    /// failed read is tried again next time, and this call uses the scripts).
    async fn lean(&self) -> bool {
        if self.scripts_only {
            return false;
        }
        match self.way.load(Ordering::Relaxed) {
            LEAN => return true,
            SCRIPTS => return false,
            _ => {}
        }
        let info = redis::cmd("INFO")
            .arg("server")
            .query_async::<Value>(&mut self.conn.clone())
            .await;
        let Ok(info) = info else {
            return false;
        };
        let lean = lean::supported(&info);
        self.way
            .store(if lean { LEAN } else { SCRIPTS }, Ordering::Relaxed);
        lean
    }

    /// The plain commands failed: read the version again next time, use the scripts now. Safe
    /// whatever part of them ran: a claim this attempt made itself is stale to the script path
    /// ([`super::liveness`]: same entry) and taken over, and a `sent` mark is set again.
    fn lean_failed(&self, err: &BackendError) {
        warn!(error = %err, "the push ledger's plain commands failed; using its scripts, and reading the server's version again");
        self.way.store(UNKNOWN, Ordering::Relaxed);
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
        let call = ClaimCall {
            call_sid,
            me,
            requests,
            expire_at_ms,
        };
        self.claim_many_scripted(&[call])
            .await
            .pop()
            .unwrap_or(Ok(Vec::new()))
    }

    async fn claim_many(&self, calls: &[ClaimCall<'_>]) -> Vec<Result<Vec<Claim>, BackendError>> {
        let only_free = calls
            .iter()
            .all(|c| c.requests.iter().all(|r| r.take_over.is_none()));
        if !(only_free && self.lean().await) {
            return self.claim_many_scripted(calls).await;
        }
        let mut answers = self.claim_many_lean(calls).await;
        // A server that refused the plain commands (an older one after a failover, an ACL)
        // gets the same claims as scripts; one that did not answer is not asked again now.
        let refused: Vec<usize> = (0..answers.len())
            .filter(|i| matches!(&answers[*i], Err(e) if e.store_answered()))
            .collect();
        if let Some(Err(err)) = refused.first().map(|i| &answers[*i]) {
            self.lean_failed(err);
            let again: Vec<ClaimCall> = refused.iter().map(|i| calls[*i]).collect();
            for (i, answer) in refused
                .into_iter()
                .zip(self.claim_many_scripted(&again).await)
            {
                answers[i] = answer;
            }
        }
        answers
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
        let call = self.settle_call(call_sid, me, settled.iter().copied());
        call.invoke::<()>(&self.conn, &self.settle).await?;
        Ok(())
    }

    async fn settle_many(&self, batch: &[&Settlement]) -> Vec<Result<(), BackendError>> {
        let mut answers: Vec<Result<(), BackendError>> = batch.iter().map(|_| Ok(())).collect();
        let todo: Vec<usize> = (0..batch.len())
            .filter(|i| !batch[*i].devices.is_empty())
            .collect();
        let all_sent = |i: &usize| {
            batch[*i]
                .devices
                .iter()
                .all(|(_, how)| *how == Settle::Sent)
        };
        let (marks, scripted): (Vec<usize>, Vec<usize>) =
            if todo.iter().any(all_sent) && self.lean().await {
                todo.into_iter().partition(all_sent)
            } else {
                (Vec::new(), todo)
            };
        let calls: Vec<ScriptCall> = scripted
            .iter()
            .map(|i| self.settlement_call(batch[*i]))
            .collect();
        let marked = async {
            if let Some(wire) = self.conn.wire() {
                if marks.is_empty() {
                    return Vec::new();
                }
                // ~300 bytes a mark (key, device key, entry id): room for all of them at once.
                let mut out = Commands::with_capacity(marks.len() * 320);
                let keys: Vec<_> = marks
                    .iter()
                    .map(|i| self.keys.sent_parts(&batch[*i].call_sid))
                    .collect();
                lean::marks_sent_wire(
                    &mut out,
                    marks.iter().zip(&keys).map(|(i, key)| {
                        let s = batch[*i];
                        (&key[..], s.me.entry.as_str(), s.devices.as_slice())
                    }),
                );
                return match wire.send(out).await {
                    Ok(replies) => lean::read_marks_wire(&mut replies.iter(), marks.len()),
                    Err(e) => marks.iter().map(|_| Err(e.clone().into())).collect(),
                };
            }
            let blocks = marks
                .iter()
                .map(|i| {
                    let s = batch[*i];
                    lean::mark_sent(&self.keys.sent(&s.call_sid), &s.me.entry, &s.devices)
                })
                .collect();
            exec_each(&self.conn, blocks)
                .await
                .into_iter()
                .map(|answer| answer.map(drop).map_err(BackendError::from))
                .collect::<Vec<Result<(), BackendError>>>()
        };
        let settled = invoke_each::<()>(&self.conn, &self.settle, calls);
        let (marked, settled) = futures::join!(marked, settled);
        for (i, answer) in scripted.into_iter().zip(settled) {
            answers[i] = answer.map_err(BackendError::from);
        }
        let mut refused = Vec::new();
        for (i, answer) in marks.into_iter().zip(marked) {
            match answer {
                Err(e) if e.store_answered() => {
                    if refused.is_empty() {
                        self.lean_failed(&e);
                    }
                    refused.push(i);
                }
                other => answers[i] = other.map(drop),
            }
        }
        // The `sent` marks a server refused as plain commands, as scripts.
        let again: Vec<ScriptCall> = refused
            .iter()
            .map(|i| self.settlement_call(batch[*i]))
            .collect();
        let settled = invoke_each::<()>(&self.conn, &self.settle, again).await;
        for (i, answer) in refused.into_iter().zip(settled) {
            answers[i] = answer.map_err(BackendError::from);
        }
        answers
    }

    async fn ack(
        &self,
        call_sid: &str,
        device: &str,
        now_ms: u64,
        record: bool,
    ) -> Result<Acked, BackendError> {
        let answer: Vec<String> = self
            .ack
            .key(self.keys.sent(call_sid))
            .arg(device)
            .arg(now_ms)
            .arg(if record { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Acked::parse(&answer))
    }
}

/// The second round trip of one call's first claim ([`lean::follow_up`]).
struct FollowUp<'a> {
    call: &'a ClaimCall<'a>,
    ttl_ms: u64,
    /// Whether the hash was there before: its life is lengthened to this event's.
    lengthen: bool,
    /// The devices read ([`lean::FirstClaim::to_read`]).
    devices: Vec<&'a str>,
}

impl RedisSentLedger {
    /// The claims of many calls, each call a transaction of plain commands (only free devices),
    /// each answered on its own; the calls that need a second round trip (a device found held,
    /// a hash there before: [`lean::follow_up`]) share one. A device found held whose claim
    /// vanished before it was read (its holder released it in between), or claimed in a hash
    /// that expired in between, is claimed again by the script.
    async fn claim_many_lean(
        &self,
        calls: &[ClaimCall<'_>],
    ) -> Vec<Result<Vec<Claim>, BackendError>> {
        let now = now_ms();
        let ttl_ms = |c: &ClaimCall| c.expire_at_ms.saturating_sub(now).max(1);
        let asked: Vec<&ClaimCall> = calls.iter().filter(|c| !c.requests.is_empty()).collect();
        let firsts: Vec<Result<lean::FirstClaim, BackendError>> = match self.conn.wire() {
            Some(wire) => {
                let mut out = Commands::with_capacity(asked.len() * 384);
                let keys: Vec<_> = asked
                    .iter()
                    .map(|c| self.keys.sent_parts(c.call_sid))
                    .collect();
                let mut since = vec![[0u8; 20]; asked.len()];
                let holders: Vec<_> = asked
                    .iter()
                    .zip(since.iter_mut())
                    .map(|(c, since)| c.me.encode_parts(since))
                    .collect();
                lean::claims_free_wire(
                    &mut out,
                    asked
                        .iter()
                        .zip(keys.iter().zip(&holders))
                        .map(|(c, (key, me))| (&key[..], &me[..], c.requests, ttl_ms(c))),
                );
                let devices: Vec<usize> = asked.iter().map(|c| c.requests.len()).collect();
                match wire.send(out).await {
                    Ok(replies) => lean::read_claims_wire(&mut replies.iter(), &devices),
                    Err(e) => asked.iter().map(|_| Err(e.clone().into())).collect(),
                }
            }
            None => {
                let blocks = asked
                    .iter()
                    .map(|c| {
                        lean::claim_free(
                            &self.keys.sent(c.call_sid),
                            &c.me.encode(),
                            c.requests,
                            ttl_ms(c),
                        )
                    })
                    .collect();
                exec_each(&self.conn, blocks)
                    .await
                    .into_iter()
                    .zip(&asked)
                    .map(|(reply, c)| lean::read_claims(reply?, c.requests.len()))
                    .collect()
            }
        };
        let follow_ups: Vec<FollowUp> = asked
            .iter()
            .zip(&firsts)
            .filter_map(|(c, first)| {
                let first = first.as_ref().ok().filter(|f| f.needs_follow_up())?;
                Some(FollowUp {
                    call: c,
                    ttl_ms: ttl_ms(c),
                    lengthen: !first.new_hash,
                    devices: first.to_read(c.requests),
                })
            })
            .collect();
        let mut read = self.follow_up(&follow_ups).await.into_iter();
        let mut firsts = firsts.into_iter();
        let mut answers = Vec::with_capacity(calls.len());
        for c in calls {
            if c.requests.is_empty() {
                answers.push(Ok(Vec::new()));
                continue;
            }
            let claims = firsts
                .next()
                .unwrap_or_else(|| Err(BackendError::Corrupt("a claim went unanswered".into())))
                .and_then(|first| {
                    let read = match first.needs_follow_up() {
                        true => Some(read.next().unwrap_or_else(|| Ok(Vec::new()))?),
                        false => None,
                    };
                    Ok(first.claims(read, c.me))
                });
            answers.push(self.claim_vanished(c, claims).await);
        }
        answers
    }

    /// The second round trips of `follow_ups`, all in one, each answered on its own: the
    /// stored value of each device it reads.
    async fn follow_up(
        &self,
        follow_ups: &[FollowUp<'_>],
    ) -> Vec<Result<Vec<Option<Vec<u8>>>, BackendError>> {
        if follow_ups.is_empty() {
            return Vec::new();
        }
        let Some(wire) = self.conn.wire() else {
            let blocks = follow_ups
                .iter()
                .map(|f| {
                    let key = self.keys.sent(f.call.call_sid);
                    lean::follow_up(&key, f.ttl_ms, f.lengthen, &f.devices)
                })
                .collect();
            return exec_each(&self.conn, blocks)
                .await
                .into_iter()
                .map(|reply| {
                    let corrupt =
                        || BackendError::Corrupt("a claim's follow-up answered no list".into());
                    let Value::Array(mut replies) = reply? else {
                        return Err(corrupt());
                    };
                    redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))
                        .map_err(|_| corrupt())
                })
                .collect();
        };
        let mut out = Commands::with_capacity(follow_ups.len() * 256);
        for f in follow_ups {
            let key = self.keys.sent_parts(f.call.call_sid);
            lean::follow_up_wire(&mut out, &key, f.ttl_ms, f.lengthen, &f.devices);
        }
        let replies = match wire.send(out).await {
            Ok(replies) => replies,
            Err(e) => return follow_ups.iter().map(|_| Err(e.clone().into())).collect(),
        };
        let mut replies = replies.iter();
        follow_ups
            .iter()
            .map(|f| lean::read_follow_up_wire(&mut replies, f.lengthen, f.devices.len()))
            .collect()
    }

    /// One call's [`lean::claim_free`] claims, with the devices that vanished claimed again.
    async fn claim_vanished(
        &self,
        c: &ClaimCall<'_>,
        claims: Result<Vec<Option<Claim>>, BackendError>,
    ) -> Result<Vec<Claim>, BackendError> {
        let mut claims = claims?;
        let vanished: Vec<ClaimRequest> = c
            .requests
            .iter()
            .zip(&claims)
            .filter(|(_, claim)| claim.is_none())
            .map(|(r, _)| *r)
            .collect();
        let mut again = if vanished.is_empty() {
            Vec::new()
        } else {
            self.claim(c.call_sid, c.me, &vanished, c.expire_at_ms)
                .await?
        }
        .into_iter();
        Ok(claims
            .iter_mut()
            .map(|claim| {
                claim
                    .take()
                    .or_else(|| again.next())
                    .unwrap_or(Claim::Held(None))
            })
            .collect())
    }

    /// The `settle.lua` call settling `devices` of `call_sid` for `me`.
    fn settle_call<'d>(
        &self,
        call_sid: &str,
        me: &Holder,
        devices: impl Iterator<Item = (&'d str, Settle)>,
    ) -> ScriptCall {
        let mut call = ScriptCall::new(&self.settle, self.keys.sent(call_sid));
        call.arg(me.encode());
        for (device, how) in devices {
            call.arg(device).arg(settle_word(how, me));
        }
        call
    }

    /// [`RedisSentLedger::settle_call`] of one settlement.
    fn settlement_call(&self, s: &Settlement) -> ScriptCall {
        let devices = s.devices.iter().map(|(d, how)| (d.as_str(), *how));
        self.settle_call(&s.call_sid, &s.me, devices)
    }

    /// The claims of many calls, one script call each, each answered on its own.
    async fn claim_many_scripted(
        &self,
        calls: &[ClaimCall<'_>],
    ) -> Vec<Result<Vec<Claim>, BackendError>> {
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
        let mut states = invoke_each::<Vec<String>>(&self.conn, &self.claim, script_calls)
            .await
            .into_iter();
        calls
            .iter()
            .map(|c| {
                if c.requests.is_empty() {
                    return Ok(Vec::new());
                }
                let got = states.next().unwrap_or_else(|| Ok(Vec::new()))?;
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
}

fn settle_word(how: Settle, me: &Holder) -> String {
    match how {
        Settle::Sent => super::sent_value(&me.entry),
        Settle::Release => "release".into(),
    }
}
