//! The binding feed's outbox on a Redis Cluster: how a change and its feed event stay one step
//! when the feed stream lives in another slot than the identity's keys.
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>binding-events:outbox:{<tag>}` — stream, one per cluster slot, where `<tag>` is the
//!   shortest hash tag of that slot ([`slot_tag`]). The script that changes an identity's
//!   bindings adds its events to the outbox of the identity's slot, so the change and its events
//!   are one script: a crash can no longer leave a change without its event.
//! - `<p>binding-events:outbox-lease` — string with a PX expiry: the daemon that sweeps.
//!
//! Right after the script the store forwards the events it just added to `<p>binding-events`
//! (`XADD` each, then `XDEL` them from the outbox), so the feed is as prompt as on one server.
//! A crash (or an unreachable feed node) between the script and the forward leaves them in the
//! outbox; one daemon at a time ([`SWEEP_EVERY`], under the lease) reads every outbox for
//! entries older than [`SWEEP_AFTER`] and forwards them. A crash between the feed's `XADD` and
//! the outbox's `XDEL` forwards an event twice: on a cluster the feed is at least once, and each
//! event carries `event_id` = `<outbox entry id>@<slot>`, the same on every copy, for a backend
//! to drop repeats. An emptied outbox stays (an empty stream, at most one per slot) so its ids
//! keep growing and an `event_id` is never reused.

use std::sync::OnceLock;
use std::time::Duration;

use redis::Script;

use crate::backend::BackendError;
use crate::bindings::feed::FEED_MAX_LEN;
use crate::redis_conn::slots::{crc16, key_slot, SLOTS};
use crate::redis_conn::{query_each, RedisConn};

/// How often the holder of the lease sweeps the outboxes.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How old an outbox entry must be before the sweep forwards it: far longer than a forward
/// right after its script takes, so the sweep only picks up what a crash left behind.
pub const SWEEP_AFTER: Duration = Duration::from_secs(10);
/// Entries forwarded per outbox per sweep (the rest on the next sweep).
const SWEEP_PAGE: usize = 500;
/// Outboxes read at once by a sweep.
const SWEEP_BATCH: usize = 1024;

/// Events a feeding script added to an outbox: (entry id, the event's fields).
pub type Added = Vec<(String, Vec<String>)>;

/// The shortest hash tag (`0`, `1`, …, `a`, … in base 36) whose slot is `slot`; computed for all
/// 16384 slots once.
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); SLOTS as usize];
        let mut missing = SLOTS as usize;
        for n in 0u64.. {
            let tag = base36(n);
            let slot = (crc16(tag.as_bytes()) % SLOTS) as usize;
            if tags[slot].is_empty() {
                tags[slot] = tag;
                missing -= 1;
                if missing == 0 {
                    break;
                }
            }
        }
        tags
    });
    &tags[slot as usize % SLOTS as usize]
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The outboxes of one feed (see the module docs).
pub struct Outbox {
    feed_key: String,
    lease_key: String,
    holder: String,
    lease: Script,
}

impl Outbox {
    /// The outboxes of the feed stream `feed_key` (`<p>binding-events`).
    pub fn new(feed_key: &str) -> Outbox {
        Outbox {
            feed_key: feed_key.to_string(),
            lease_key: format!("{feed_key}:outbox-lease"),
            holder: crate::bindings::new_binding_id(),
            lease: Script::new(include_str!("lease.lua")),
        }
    }

    /// The outbox in the slot of `key` (an identity's key).
    pub fn key_near(&self, key: &str) -> String {
        self.key_of_slot(key_slot(key))
    }

    fn key_of_slot(&self, slot: u16) -> String {
        format!("{}:outbox:{{{}}}", self.feed_key, slot_tag(slot))
    }

    /// Add `added` (entries of `outbox`) to the feed, each with its `event_id`, then remove them
    /// from the outbox.
    pub async fn forward(
        &self,
        conn: &RedisConn,
        outbox: &str,
        added: Added,
    ) -> Result<(), BackendError> {
        if added.is_empty() {
            return Ok(());
        }
        let slot = key_slot(outbox);
        let mut pipe = redis::pipe();
        for (id, fields) in &added {
            pipe.cmd("XADD")
                .arg(&self.feed_key)
                .arg("MAXLEN")
                .arg("~")
                .arg(FEED_MAX_LEN)
                .arg("*")
                .arg(fields)
                .arg("event_id")
                .arg(format!("{id}@{slot}"))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn.clone()).await?;
        let mut xdel = redis::cmd("XDEL");
        xdel.arg(outbox);
        for (id, _) in &added {
            xdel.arg(id);
        }
        xdel.query_async::<()>(&mut conn.clone()).await?;
        Ok(())
    }

    /// When this daemon holds the sweep lease (taking it if free), forward every outbox entry
    /// older than `older_than`; how many were forwarded. An outbox that cannot be read or
    /// forwarded does not stop the others: the first such error is returned after them.
    pub async fn sweep(
        &self,
        conn: &RedisConn,
        older_than: Duration,
    ) -> Result<usize, BackendError> {
        let lease_ms = SWEEP_EVERY.as_millis() as u64 * 3;
        let held: i64 = self
            .lease
            .key(&self.lease_key)
            .arg(&self.holder)
            .arg(lease_ms)
            .invoke_async(&mut conn.clone())
            .await?;
        if held != 1 {
            return Ok(0);
        }
        let before = crate::domain::now_ms().saturating_sub(older_than.as_millis() as u64);
        let slots: Vec<u16> = (0..SLOTS).collect();
        let (mut forwarded, mut failed) = (0, None);
        for batch in slots.chunks(SWEEP_BATCH) {
            let reads = batch
                .iter()
                .map(|&slot| {
                    let mut cmd = redis::cmd("XRANGE");
                    cmd.arg(self.key_of_slot(slot))
                        .arg("-")
                        .arg(before)
                        .arg("COUNT")
                        .arg(SWEEP_PAGE);
                    cmd
                })
                .collect();
            let answers = query_each::<Added>(conn, reads).await;
            for (&slot, answer) in batch.iter().zip(answers) {
                // A node that fails keeps its own outboxes for the next sweep; the others'
                // are forwarded all the same.
                let moved = match answer {
                    Ok(added) => {
                        let n = added.len();
                        self.forward(conn, &self.key_of_slot(slot), added)
                            .await
                            .map(|()| n)
                    }
                    Err(e) => Err(e.into()),
                };
                match moved {
                    Ok(n) => forwarded += n,
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
        }
        match failed {
            None => Ok(forwarded),
            Some(e) => Err(e),
        }
    }

    /// Give up the sweep lease (a daemon stopping).
    pub async fn release(&self, conn: &RedisConn) -> Result<(), BackendError> {
        self.lease
            .key(&self.lease_key)
            .arg(&self.holder)
            .arg(0)
            .invoke_async::<i64>(&mut conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_short_tag_of_its_own() {
        for slot in 0..SLOTS {
            let tag = slot_tag(slot);
            assert!(tag.len() <= 4, "slot {slot}: {tag:?}");
            assert_eq!(key_slot(&format!("x:outbox:{{{tag}}}")), slot);
        }
        // `CLUSTER KEYSLOT 0` is 13907 and `CLUSTER KEYSLOT 1` is 9842 (redis-cli).
        assert_eq!(slot_tag(13907), "0");
        assert_eq!(slot_tag(9842), "1");
    }

    #[test]
    fn the_outbox_sits_in_the_slot_of_the_identity() {
        let outbox = Outbox::new("cp:binding-events");
        for key in ["cp:id:{alice}:b", "cp:id}:{=}}alice:u", "cp:id:{bob}:b"] {
            assert_eq!(key_slot(&outbox.key_near(key)), key_slot(key), "{key}");
        }
    }
}
