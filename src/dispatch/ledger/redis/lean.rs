//! The ledger's two common operations as plain commands in a transaction (`MULTI`/`EXEC`), for
//! Redis 7.0 and later (`PEXPIRE … NX|GT`): a first claim of free devices, and the `sent` mark.
//!
//! Measured (docs/benchmarks.md): a script call costs Redis ~16 µs beyond the hash commands it
//! runs, and every event made two (`claim.lua`, `settle.lua`); these commands cost 1–2 µs each.
//! What each keeps of its script:
//! - claim: `HSETNX` claims a free device, for every device, then `PEXPIRE NX` gives a new
//!   hash its life and `PEXPIRE GT` only ever lengthens it — the script's rules, in one
//!   transaction, so no other client sees a hash without an expiry. Who holds a device that
//!   was not free is read afterwards, only for those devices (`HMGET`, [`read_held`]): most
//!   events find every device free, and a holder read a moment later is as good as one read
//!   in the transaction (a claim released in between reads as vanished, which the script
//!   claims again). Take-overs (a compare-and-set on the stale value) stay with the script.
//! - `sent`: `HSET` of `sent` is true whoever holds the claim by then (a provider accepted the
//!   push), and `PEXPIRE NX` gives a hash that expired in between a life of
//!   [`CLAIM_MARGIN_MS`] instead of none (the script wrote nothing then; a `sent` mark that
//!   outlives its call by a minute is harmless). Releases (a compare) stay with the script.
//!
//! When the plain commands fail (a failover to an older server, an ACL that refuses them), the
//! ledger does the same work with its scripts and reads the server's version again next time
//! (`RedisSentLedger::lean_failed` says why that is safe whatever part of them ran).

use redis::{Cmd, Value};

use crate::redis_conn::wire::{Commands, Items, Reply};

use super::super::{Claim, ClaimRequest, Settle, CLAIM_MARGIN_MS};
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
/// giving the hash at least `ttl_ms` to live: `devices + 2` commands.
pub(super) fn claim_free(key: &str, me: &str, requests: &[ClaimRequest], ttl_ms: u64) -> Vec<Cmd> {
    let mut cmds = Vec::with_capacity(requests.len() + 2);
    for r in requests {
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(key).arg(r.device).arg(me);
        cmds.push(cmd);
    }
    for condition in ["NX", "GT"] {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(key).arg(ttl_ms).arg(condition);
        cmds.push(cmd);
    }
    cmds
}

/// [`claim_free`] as one `MULTI` … `EXEC` written into `out` (the wire connection's batch):
/// `devices + 4` commands, whose replies [`read_claims_wire`] reads.
pub(super) fn claim_free_wire(
    out: &mut Commands,
    key: &[&[u8]],
    me: &[&[u8]],
    requests: &[ClaimRequest],
    ttl_ms: u64,
) {
    out.command(1).arg("MULTI");
    for r in requests {
        out.command(4)
            .arg("HSETNX")
            .arg_parts(key)
            .arg(r.device)
            .arg_parts(me);
    }
    for condition in ["NX", "GT"] {
        out.command(4)
            .arg("PEXPIRE")
            .arg_parts(key)
            .arg_u64(ttl_ms)
            .arg(condition);
    }
    out.command(1).arg("EXEC");
}

/// Which devices one [`claim_free_wire`] transaction claimed (true) and which it found held,
/// read from its replies (taken from `replies`, which goes on to the next call's).
pub(super) fn read_claims_wire(
    replies: &mut Items<'_>,
    devices: usize,
) -> Result<Vec<bool>, BackendError> {
    let corrupt = |what: &str| corrupt_claims(devices, what);
    // `MULTI` and each queued command answer first; a refused one makes `EXEC` refuse too.
    let exec = replies
        .nth(devices + 3)
        .ok_or_else(|| corrupt("too few replies"))?;
    let Some(items) = exec_items(exec)? else {
        return Err(corrupt("no list"));
    };
    if items.remaining() != devices + 2 {
        return Err(corrupt(&format!("{} replies", items.remaining())));
    }
    items
        .take(devices)
        .map(|set| match set {
            Reply::Int(n) => Ok(n == 1),
            other => Err(corrupt(&format!("{other:?} for a device"))),
        })
        .collect()
}

/// What a [`claim_free`] transaction answered: as [`read_claims_wire`].
pub(super) fn read_claims(reply: Value, devices: usize) -> Result<Vec<bool>, BackendError> {
    let corrupt = |what: &str| corrupt_claims(devices, what);
    let Value::Array(items) = reply else {
        return Err(corrupt("no list"));
    };
    if items.len() != devices + 2 {
        return Err(corrupt(&format!("{} replies", items.len())));
    }
    items[..devices]
        .iter()
        .map(|set| match set {
            Value::Int(n) => Ok(*n == 1),
            other => Err(corrupt(&format!("{other:?} for a device"))),
        })
        .collect()
}

fn corrupt_claims(devices: usize, what: &str) -> BackendError {
    BackendError::Corrupt(format!(
        "a claim transaction for {devices} devices answered {what}"
    ))
}

/// Read who holds `devices` of the ledger hash `key` (the devices a claim found held): one
/// `HMGET`.
pub(super) fn read_held(key: &str, devices: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(key).arg(devices);
    cmd
}

/// [`read_held`] written into `out`.
pub(super) fn read_held_wire(out: &mut Commands, key: &[&[u8]], devices: &[&str]) {
    out.command(2 + devices.len()).arg("HMGET").arg_parts(key);
    for device in devices {
        out.arg(device);
    }
}

/// The claims of a [`read_held`] answer, one per device asked: `None` for a device held when
/// claimed and free when read (its holder released it in between).
pub(super) fn held_claims<'a>(
    stored: impl Iterator<Item = Option<&'a [u8]>>,
) -> Vec<Option<Claim>> {
    stored
        .map(|held| held.map(|held| Claim::parse(&String::from_utf8_lossy(held))))
        .collect()
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

/// [`mark_sent`] as one `MULTI` … `EXEC` written into `out`: 4 commands, whose `EXEC` reply
/// [`read_exec_wire`] reads.
pub(super) fn mark_sent_wire(
    out: &mut Commands,
    key: &[&[u8]],
    entry: &str,
    devices: &[(String, Settle)],
) {
    let sent = super::super::sent_value_parts(entry);
    out.command(1).arg("MULTI");
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
    out.command(1).arg("EXEC");
}

/// Whether one [`mark_sent_wire`] transaction went through (its `EXEC` refused: the server's
/// error), taken from `replies`.
pub(super) fn read_exec_wire(replies: &mut Items<'_>, commands: usize) -> Result<(), BackendError> {
    let exec = replies.nth(commands + 1).ok_or_else(|| {
        BackendError::Corrupt("a transaction answered too few replies".to_string())
    })?;
    exec_items(exec)?;
    Ok(())
}

/// The items of an `EXEC` reply (`None` when it is not a list), or the error the transaction
/// or one of its commands was refused with (`EXECABORT`, `WRONGTYPE`), as the client reports
/// it.
fn exec_items(exec: Reply<'_>) -> Result<Option<Items<'_>>, BackendError> {
    let Reply::Array(items) = exec.ok()? else {
        return Ok(None);
    };
    for item in items.clone() {
        item.ok()?;
    }
    Ok(Some(items))
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
    fn claim_replies_read_as_claimed_or_held_and_held_claims_as_holder_sent_or_vanished() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Int(0),
            Value::Int(0),
            Value::Int(1),
            Value::Int(0),
        ]);
        assert_eq!(read_claims(reply, 3).unwrap(), vec![true, false, false]);
        assert!(read_claims(Value::Array(vec![Value::Int(1)]), 4).is_err());
        assert!(read_claims(Value::Nil, 1).is_err());
        let bad = Value::Array(vec![Value::Nil, Value::Int(1), Value::Int(0)]);
        assert!(read_claims(bad, 1).is_err());

        let held = "sending|1|i-1|1-0|c1";
        let stored: [Option<&[u8]>; 3] = [Some(held.as_bytes()), Some(b"sent|1-0"), None];
        let claims = held_claims(stored.into_iter());
        assert!(matches!(&claims[0], Some(Claim::Held(Some(h))) if h.entry == "1-0"));
        assert_eq!(claims[1], Some(Claim::Sent));
        assert_eq!(claims[2], None);
    }
}
