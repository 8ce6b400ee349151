//! The ledger's two common operations as plain commands in a transaction (`MULTI`/`EXEC`), for
//! Redis 7.0 and later (`PEXPIRE … NX|GT`): a first claim of free devices, and the `sent` mark.
//!
//! Measured (docs/benchmarks.md): a script call costs Redis ~16 µs beyond the hash commands it
//! runs, and every event made two (`claim.lua`, `settle.lua`); these commands cost 1–2 µs each.
//! What each keeps of its script:
//! - claim: `HSETNX` claims a free device, for every device, and `PEXPIRE NX` gives a new hash
//!   its life, in one transaction, so no other client sees a hash without an expiry. That is
//!   all most events need: every device free, the hash new. Only a hash that was there before
//!   (another event of the call claimed in it) or a device found held needs more, in a second
//!   round trip ([`follow_up`]): `PEXPIRE GT` lengthens the hash's life to this event's
//!   deadline if that is later (it never shortens it), and `HMGET` reads who holds the held
//!   devices — and, when the hash was there before, reads back the devices this claim took:
//!   a hash that expired between the two round trips took them with it, and they are claimed
//!   again (as vanished) instead of pushed unrecorded. A holder read a moment after the claim
//!   is as good as one read with it (a claim released in between reads as vanished, which
//!   the script claims again). Take-overs (a compare-and-set on the stale value) stay with
//!   the script.
//! - `sent`: `HSET` of `sent` is true whoever holds the claim by then (a provider accepted the
//!   push), and `PEXPIRE NX` gives a hash that expired in between a life of
//!   [`CLAIM_MARGIN_MS`] instead of none (the script wrote nothing then; a `sent` mark that
//!   outlives its call by a minute is harmless). Releases (a compare) stay with the script.
//!
//! When the plain commands fail (a failover to an older server, an ACL that refuses them), the
//! ledger does the same work with its scripts and reads the server's version again next time
//! (`RedisSentLedger::lean_failed` says why that is safe whatever part of them ran).

use redis::{Cmd, Value};

use crate::redis_conn::wire::{server_error, Commands, Items, Reply};

use super::super::{Claim, ClaimRequest, Holder, Settle, CLAIM_MARGIN_MS};
use crate::backend::BackendError;

/// Whether an `INFO server` answer (one server's text, or one per node of a cluster) says Redis
/// 7.0 or later on every server it names.
pub(super) fn supported(info: &Value) -> bool {
    let mut texts = Vec::new();
    collect_text(info, &mut texts);
    let majors: Vec<u32> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|line| line.strip_prefix("redis_version:"))
        .filter_map(|version| version.trim().split('.').next()?.parse().ok())
        .collect();
    !majors.is_empty() && majors.iter().all(|major| *major >= 7)
}

fn collect_text(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|item| collect_text(item, out))
        }
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            collect_text(k, out);
            collect_text(v, out);
        }),
        _ => {}
    }
}

/// Claim the free devices of `requests` on the ledger hash `key` for `me` (its encoded value),
/// giving a new hash `ttl_ms` to live: `devices + 1` commands.
pub(super) fn claim_free(key: &str, me: &str, requests: &[ClaimRequest], ttl_ms: u64) -> Vec<Cmd> {
    let mut cmds = Vec::with_capacity(requests.len() + 1);
    for r in requests {
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(key).arg(r.device).arg(me);
        cmds.push(cmd);
    }
    let mut expire = redis::cmd("PEXPIRE");
    expire.arg(key).arg(ttl_ms).arg("NX");
    cmds.push(expire);
    cmds
}

/// The [`claim_free`]s of many calls in one `MULTI` … `EXEC` written into `out` (the wire
/// connection's batch): per call its `HSETNX`s and its `PEXPIRE … NX`, which run together, and
/// one `MULTI` and `EXEC` for them all; [`read_claims_wire`] reads each call's answers. A command
/// refused as it runs (`WRONGTYPE`) fails only its own call; one refused as it is queued (`OOM`)
/// fails them all, as it would each call's own transaction.
pub(super) fn claims_free_wire<'a>(
    out: &mut Commands,
    calls: impl Iterator<Item = (&'a [&'a [u8]], &'a [&'a [u8]], &'a [ClaimRequest<'a>], u64)>,
) {
    out.command(1).arg("MULTI");
    for (key, me, requests, ttl_ms) in calls {
        for r in requests {
            out.command(4)
                .arg("HSETNX")
                .arg_parts(key)
                .arg(r.device)
                .arg_parts(me);
        }
        out.command(4)
            .arg("PEXPIRE")
            .arg_parts(key)
            .arg_u64(ttl_ms)
            .arg("NX");
    }
    out.command(1).arg("EXEC");
}

/// What a first claim's transaction answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FirstClaim {
    /// Per device: claimed now (true), or found held.
    pub(super) took: Vec<bool>,
    /// Whether the hash got its life from this claim (it had none: it is new).
    pub(super) new_hash: bool,
}

impl FirstClaim {
    /// Whether the claim needs its [`follow_up`]: a device was found held, or the hash was
    /// there before (its life may be shorter than this event needs).
    pub(super) fn needs_follow_up(&self) -> bool {
        !self.new_hash || self.took.iter().any(|took| !took)
    }

    /// The devices of `requests` the follow-up reads: the held ones, and the ones this claim
    /// took when the hash was there before.
    pub(super) fn to_read<'a>(&self, requests: &[ClaimRequest<'a>]) -> Vec<&'a str> {
        requests
            .iter()
            .zip(&self.took)
            .filter(|(_, took)| !self.new_hash || !**took)
            .map(|(r, _)| r.device)
            .collect()
    }

    /// The claims, once the follow-up read `read` (one per device of [`FirstClaim::to_read`],
    /// `None` without a follow-up): a device this claim took is still fresh when it holds
    /// `me`, vanished (`None`) when it is gone with its hash; a held device is its holder's,
    /// or vanished when released in between.
    pub(super) fn claims(
        &self,
        read: Option<Vec<Option<Vec<u8>>>>,
        me: &Holder,
    ) -> Vec<Option<Claim>> {
        // Only a hash that was there before has devices of this claim read back.
        let mine = (!self.new_hash).then(|| me.encode());
        let mut read = read.unwrap_or_default().into_iter();
        self.took
            .iter()
            .map(|took| match (took, &mine) {
                (true, None) => Some(Claim::Fresh),
                (true, Some(mine)) => match read.next().flatten() {
                    Some(stored) if stored == mine.as_bytes() => Some(Claim::Fresh),
                    other => other.map(|stored| Claim::parse(&String::from_utf8_lossy(&stored))),
                },
                (false, _) => read
                    .next()
                    .flatten()
                    .map(|stored| Claim::parse(&String::from_utf8_lossy(&stored))),
            })
            .collect()
    }
}

/// The claims of each call of one [`claims_free_wire`] transaction (`devices`: how many
/// devices each call claimed), read from its replies: the transaction's error for every call
/// when it was refused (`EXECABORT`), else each call's own answers or the error one of its
/// commands was refused with.
pub(super) fn read_claims_wire(
    replies: &mut Items<'_>,
    devices: &[usize],
) -> Vec<Result<FirstClaim, BackendError>> {
    let queued = devices.iter().map(|d| d + 1).sum();
    let mut items = match batch_exec(replies, queued) {
        Ok(items) => items,
        Err(e) => return devices.iter().map(|_| Err(e.clone())).collect(),
    };
    devices
        .iter()
        .map(|&d| {
            let ints = per_call(&mut items, d + 1).map(|item| match item {
                Some(Reply::Int(n)) => Ok(n),
                Some(Reply::Error(line)) => Err(server_error(line).into()),
                Some(other) => Err(corrupt_claims(d, &format!("{other:?}"))),
                None => Err(corrupt_claims(d, "too few replies")),
            });
            first_claim(ints, d)
        })
        .collect()
}

/// The items of the `EXEC` that ends one transaction of `queued` commands (after `MULTI` and
/// their `QUEUED`s), or why there are none: `EXECABORT` (a command refused as it was queued),
/// or an answer that is not a list.
fn batch_exec<'a>(replies: &mut Items<'a>, queued: usize) -> Result<Items<'a>, BackendError> {
    let exec = replies.nth(queued + 1).ok_or_else(|| {
        BackendError::Corrupt("a transaction answered too few replies".to_string())
    })?;
    match exec.ok()? {
        Reply::Array(items) => Ok(items),
        other => Err(BackendError::Corrupt(format!(
            "a transaction's EXEC answered {other:?}"
        ))),
    }
}

/// The next `count` replies of `items`, one call's (`None` past the end), taken off `items`
/// whatever they say, so the next call reads its own even when a reader stops early.
fn per_call<'a>(
    items: &mut Items<'a>,
    count: usize,
) -> impl Iterator<Item = Option<Reply<'a>>> + 'a {
    let mine = items.clone();
    for _ in 0..count {
        items.next();
    }
    let mut mine = mine.take(count);
    (0..count).map(move |_| mine.next())
}

/// What a [`claim_free`] transaction answered: as [`read_claims_wire`].
pub(super) fn read_claims(reply: Value, devices: usize) -> Result<FirstClaim, BackendError> {
    let corrupt = |what: &str| corrupt_claims(devices, what);
    let Value::Array(items) = reply else {
        return Err(corrupt("no list"));
    };
    let ints = items.iter().map(|item| match item {
        Value::Int(n) => Ok(*n),
        other => Err(corrupt(&format!("{other:?}"))),
    });
    first_claim(ints, devices)
}

/// The claim of `devices` from its transaction's integer answers (`HSETNX` each, `PEXPIRE`).
fn first_claim(
    ints: impl Iterator<Item = Result<i64, BackendError>>,
    devices: usize,
) -> Result<FirstClaim, BackendError> {
    let mut took = Vec::with_capacity(devices);
    let mut new_hash = None;
    let mut replies = 0;
    for n in ints {
        let n = n?;
        match replies < devices {
            true => took.push(n == 1),
            false => new_hash = Some(n == 1),
        }
        replies += 1;
    }
    match new_hash {
        Some(new_hash) if replies == devices + 1 => Ok(FirstClaim { took, new_hash }),
        _ => Err(corrupt_claims(devices, &format!("{replies} replies"))),
    }
}

fn corrupt_claims(devices: usize, what: &str) -> BackendError {
    BackendError::Corrupt(format!(
        "a claim transaction for {devices} devices answered {what}"
    ))
}

/// The second round trip of a claim that needs one ([`FirstClaim::needs_follow_up`]) on the
/// ledger hash `key`: `PEXPIRE GT` to `ttl_ms` when the hash was there before (`lengthen`),
/// then `HMGET` of `devices` ([`FirstClaim::to_read`]). The lengthening goes first, so a
/// device read back as this claim's was in the hash the expiry was set on.
pub(super) fn follow_up(key: &str, ttl_ms: u64, lengthen: bool, devices: &[&str]) -> Vec<Cmd> {
    let mut cmds = Vec::with_capacity(2);
    if lengthen {
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(key).arg(ttl_ms).arg("GT");
        cmds.push(expire);
    }
    let mut read = redis::cmd("HMGET");
    read.arg(key).arg(devices);
    cmds.push(read);
    cmds
}

/// [`follow_up`] written into `out` as plain commands (one connection keeps their order).
pub(super) fn follow_up_wire(
    out: &mut Commands,
    key: &[&[u8]],
    ttl_ms: u64,
    lengthen: bool,
    devices: &[&str],
) {
    if lengthen {
        out.command(4)
            .arg("PEXPIRE")
            .arg_parts(key)
            .arg_u64(ttl_ms)
            .arg("GT");
    }
    out.command(2 + devices.len()).arg("HMGET").arg_parts(key);
    for device in devices {
        out.arg(device);
    }
}

/// What one [`follow_up_wire`] read, taken from `replies`: the stored value of each device.
pub(super) fn read_follow_up_wire(
    replies: &mut Items<'_>,
    lengthen: bool,
    devices: usize,
) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
    if lengthen {
        replies
            .next()
            .ok_or_else(|| corrupt_claims(devices, "no expiry reply"))?
            .ok()?;
    }
    match replies.next().map(Reply::ok).transpose()? {
        Some(Reply::Array(stored)) if stored.remaining() == devices => Ok(stored
            .map(|s| match s {
                Reply::Bulk(held) => Some(held.to_vec()),
                _ => None,
            })
            .collect()),
        other => Err(corrupt_claims(devices, &format!("{other:?} to HMGET"))),
    }
}

/// Mark `devices` (all [`Settle::Sent`]) sent by the stream entry `entry` on the ledger hash
/// `key`.
pub(super) fn mark_sent(key: &str, entry: &str, devices: &[(String, Settle)]) -> Vec<Cmd> {
    let mut hset = redis::cmd("HSET");
    hset.arg(key);
    let sent = super::super::sent_value(entry);
    for (device, _) in devices {
        hset.arg(device).arg(&sent);
    }
    let mut expire = redis::cmd("PEXPIRE");
    expire.arg(key).arg(CLAIM_MARGIN_MS).arg("NX");
    vec![hset, expire]
}

/// The `sent` marks of many events in one transaction: `MULTI`, then for each event its `HSET`
/// (every device of the event `sent|<entry>`) and `PEXPIRE … NX` (a hash that expired since the
/// claim is not left without an expiry), then one `EXEC`, which [`read_marks_wire`] reads. One
/// transaction, not one per event: each event's two commands still run together, and a command
/// refused as it runs (`WRONGTYPE`) fails only its own event; a command refused as it is queued
/// (`OOM`) fails them all, as it would each event's own transaction.
pub(super) fn marks_sent_wire<'a>(
    out: &mut Commands,
    marks: impl Iterator<Item = (&'a [&'a [u8]], &'a str, &'a [(String, Settle)])>,
) {
    out.command(1).arg("MULTI");
    for (key, entry, devices) in marks {
        let sent = super::super::sent_value_parts(entry);
        out.command(2 + 2 * devices.len())
            .arg("HSET")
            .arg_parts(key);
        for (device, _) in devices {
            out.arg(device).arg_parts(&sent);
        }
        out.command(4)
            .arg("PEXPIRE")
            .arg_parts(key)
            .arg_u64(CLAIM_MARGIN_MS)
            .arg("NX");
    }
    out.command(1).arg("EXEC");
}

/// Whether each of the `marks` events of one [`marks_sent_wire`] transaction was marked: the
/// transaction's error for all of them when it was refused (`EXECABORT`), else each event's own
/// (the error of its `HSET` or its `PEXPIRE`).
pub(super) fn read_marks_wire(
    replies: &mut Items<'_>,
    marks: usize,
) -> Vec<Result<(), BackendError>> {
    let mut items = match batch_exec(replies, 2 * marks) {
        Ok(items) => items,
        Err(e) => return (0..marks).map(|_| Err(e.clone())).collect(),
    };
    (0..marks)
        .map(|_| {
            for reply in per_call(&mut items, 2) {
                reply
                    .ok_or_else(|| {
                        BackendError::Corrupt("EXEC answered fewer replies than commands".into())
                    })?
                    .ok()?;
            }
            Ok(())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_version_decides_and_every_node_must_have_it() {
        let info = |v: &str| {
            text(&format!(
                "# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n"
            ))
        };
        assert!(supported(&info("7.0.15")));
        assert!(supported(&info("8.2.1")));
        assert!(!supported(&info("6.2.14")));
        let cluster = |a: &str, b: &str| {
            Value::Map(vec![
                (text("127.0.0.1:7000"), info(a)),
                (text("127.0.0.1:7001"), info(b)),
            ])
        };
        assert!(supported(&cluster("7.2.4", "7.0.15")));
        assert!(
            !supported(&cluster("7.2.4", "6.2.14")),
            "one old node decides"
        );
        assert!(!supported(&text("no version here")));
    }

    #[test]
    fn claim_replies_read_as_claimed_held_and_whether_the_hash_is_new() {
        let reply = Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(1)]);
        let first = read_claims(reply, 2).unwrap();
        assert_eq!(
            first,
            FirstClaim {
                took: vec![true, false],
                new_hash: true
            }
        );
        assert!(read_claims(Value::Array(vec![Value::Int(1)]), 4).is_err());
        assert!(read_claims(Value::Nil, 1).is_err());
        let bad = Value::Array(vec![Value::Nil, Value::Int(1)]);
        assert!(read_claims(bad, 1).is_err());
    }

    #[test]
    fn a_claim_needs_a_follow_up_only_for_a_held_device_or_an_older_hash() {
        let requests = [
            ClaimRequest {
                device: "a",
                take_over: None,
            },
            ClaimRequest {
                device: "b",
                take_over: None,
            },
        ];
        let claim = |took: Vec<bool>, new_hash| FirstClaim { took, new_hash };
        let me = Holder {
            consumer: "c2".into(),
            instance: "i-2".into(),
            entry: "2-0".into(),
            since_ms: 2,
        };
        let all_new = claim(vec![true, true], true);
        assert!(!all_new.needs_follow_up());
        assert_eq!(
            all_new.claims(None, &me),
            vec![Some(Claim::Fresh), Some(Claim::Fresh)]
        );
        let one_held = claim(vec![true, false], true);
        assert!(one_held.needs_follow_up());
        assert_eq!(one_held.to_read(&requests), vec!["b"]);
        let held = "sending|1|i-1|1-0|c1";
        let claims = one_held.claims(Some(vec![Some(held.into())]), &me);
        assert_eq!(claims[0], Some(Claim::Fresh));
        assert!(matches!(&claims[1], Some(Claim::Held(Some(h))) if h.entry == "1-0"));
        assert_eq!(one_held.claims(Some(vec![None]), &me)[1], None, "released");

        // The hash was there before: what this claim took is read back.
        let older = claim(vec![true, false], false);
        assert!(older.needs_follow_up());
        assert_eq!(older.to_read(&requests), vec!["a", "b"]);
        let read = vec![Some(me.encode().into_bytes()), Some(b"sent|1-0".to_vec())];
        assert_eq!(
            older.claims(Some(read), &me),
            vec![Some(Claim::Fresh), Some(Claim::Sent)]
        );
        // It expired in between: what this claim took vanished with it, or another took it.
        let read = vec![None, Some(held.into())];
        let claims = older.claims(Some(read), &me);
        assert_eq!(claims[0], None);
        assert!(matches!(&claims[1], Some(Claim::Held(Some(_)))));
    }
}
