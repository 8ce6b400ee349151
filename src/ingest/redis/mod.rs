//! The Redis call queue: the calls stream read through a consumer group.
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>calls` — stream of call events (SPEC §5), added by call servers and [`CallQueue::enqueue`];
//!   read with the consumer group `stream.group`, one consumer name per process.
//! - `<p>results` — stream, one entry per finished event (`call_sid`, `to`, `outcome`, `devices`,
//!   `delivered`), capped with `MAXLEN ~ results.max_len`; written only when `results.enabled`.
//! - `<p>once:<key>` — string, a marker [`CallQueue::enqueue_once`] sets with the entry it adds
//!   (`enqueue_once.lua`), expiring after the event's ttl (the Twilio webhook's message ids and
//!   idempotency tokens).
//! - `<p>dead` — stream of dead letters (the original fields, within the bounds of
//!   `crate::outcome`, plus `reason`, `detail`, `attempts`, `failed_at`, `source_id` and, when
//!   the bounds left something out, `truncated`), capped with `MAXLEN ~ dead_letters.max_len`.
//!
//! An entry is acknowledged only in [`CallQueue::finish`] (or [`CallQueue::finish_many`], many
//! entries in one call), by one script (`finish.lua`) that checks each entry is still pending,
//! writes its dead letter and result and acknowledges it, in one step per entry: a crash cannot
//! separate an outcome from its acknowledgement, and when two consumers worked on one entry (a
//! reclaim raced a slow one) only the first records an outcome. Entries of one call share its
//! round trip, not its fate: each gets its own answer (`finish`). On a
//! cluster the three streams (and the once-markers) of a shard share its hash tag, so every
//! script here touches one slot; [`ShardedQueue`] reads several shards as one queue, each shard
//! behind a circuit of its own (`shard`, `health`), so one shard's failure stays its own.
//!
//! The group's consumers that hold nothing and have been idle for
//! `stream.consumer_idle_delete_ms` are deleted during the reclaim sweep (`consumers`).
//!
//! While this consumer works on entries, [`CallQueue::touch`] resets their idle time (XCLAIM
//! with JUSTID, by `touch.lua`, only for entries still pending with this consumer), so other
//! consumers reclaim only entries nobody is working on, and an entry reclaimed from a
//! consumer that was cut off from Redis is never taken back by it.
//!
//! The group is created at id `0` when the daemon starts and finds none, so events added before
//! the first start are processed. A group that disappears while the daemon runs (`XGROUP
//! DESTROY`, the stream deleted) is created again at the newest id this process has read (or,
//! before it read anything, where the group stood when the process started): what was added
//! since is processed, and the retained history is not delivered all over again (docs/runbook.md, "The consumer group
//! disappeared").
//!
//! Blocking reads go over their own connection ([`BlockingConnection`]), touches over another
//! ([`HeartbeatConnection`], with a long response timeout, so a burst that fills the shared
//! pipeline cannot make them fail and lose entries in flight to another daemon); everything
//! else over the shared one. A blocking read that is dropped half-way (shutdown) may leave entries
//! delivered to this consumer and unacknowledged: [`CallQueue::read_own_pending`] after a
//! restart, or another consumer's [`CallQueue::claim_stale`], picks them up.

mod consumers;
mod finish;
mod group;
mod health;
mod options;
mod range;
mod reply;
mod shard;
mod shards;

pub use options::{default_consumer_name, QueueOptions};
pub use range::{decode_entries, read_range, read_stream};
pub use shards::{ShardedQueue, SHARD_BLOCK};

use group::{is_no_group, StreamId};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::redis_conn::RedisConn;
use redis::{RedisError, RedisWrite, Script, ToRedisArgs, Value};

use super::{finish_through_many, CallQueue, Finish};
use crate::backend::BackendError;
use crate::domain::now_ms;
use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult, Field};
use crate::redis_conn::{BlockingConnection, HeartbeatConnection, Keys};

/// XAUTOCLAIM round trips per [`CallQueue::claim_stale`] at most, so one call stays short even
/// when the pending list holds many entries that are not idle long enough.
const MAX_CLAIM_ROUNDS: usize = 64;

/// The calls stream in Redis (see the module docs for the keys).
pub struct RedisCallQueue {
    conn: RedisConn,
    blocking: BlockingConnection,
    heartbeat: HeartbeatConnection,
    keys: Keys,
    options: QueueOptions,
    finish: Script,
    touch: Script,
    enqueue_once: Script,
    forget_idle: Script,
    /// When this process last swept the group for idle consumers ([`consumers`]).
    last_sweep: Mutex<Option<Instant>>,
    /// Where a group that disappeared while running is created again: the newest id read.
    resume_from: Mutex<StreamId>,
}

impl RedisCallQueue {
    /// A queue using `conn` for short commands, `blocking` for blocking reads and `heartbeat`
    /// for touches.
    pub fn new(
        conn: impl Into<RedisConn>,
        blocking: BlockingConnection,
        heartbeat: HeartbeatConnection,
        keys: Keys,
        options: QueueOptions,
    ) -> RedisCallQueue {
        RedisCallQueue {
            conn: conn.into(),
            blocking,
            heartbeat,
            keys,
            options,
            finish: Script::new(include_str!("finish.lua")),
            touch: Script::new(include_str!("touch.lua")),
            enqueue_once: Script::new(include_str!("enqueue_once.lua")),
            forget_idle: Script::new(include_str!("forget_idle.lua")),
            last_sweep: Mutex::new(None),
            resume_from: Mutex::new(StreamId(now_ms(), 0)),
        }
    }

    /// How long one touch may take (the heartbeat connection's response timeout).
    pub(super) fn touch_bound(&self) -> Duration {
        self.heartbeat.timeout()
    }

    /// The shared connection, for what lives beside the queue (the push ledger).
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The key names this queue uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

#[async_trait::async_trait]
impl CallQueue for RedisCallQueue {
    fn consumer(&self) -> &str {
        &self.options.consumer
    }

    async fn ensure_group(&self) -> Result<(), BackendError> {
        self.create_group("0").await?;
        // Where the group stands now is where it would be created again if it disappeared
        // before this process read anything.
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.keys.calls)
            .query_async(&mut self.conn.clone())
            .await?;
        if let Some(at) = reply::group_last_delivered(&groups, &self.options.group)
            .as_deref()
            .and_then(StreamId::parse)
        {
            *self.resume_from.lock().expect("resume lock") = at;
        }
        Ok(())
    }

    async fn read_new(
        &self,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // BLOCK 0 would wait forever, and a BLOCK longer than the connection allows would be cut
        // short by the client: no BLOCK for zero, and at most the connection's maximum.
        let block = (!block.is_zero()).then(|| block.min(self.blocking.max_block()));
        let raw = match self.read_group(self.blocking.conn(), max, block, ">").await {
            Err(e) if is_no_group(&e) => {
                self.recreate_group().await?;
                self.read_group(self.blocking.conn(), max, block, ">")
                    .await?
            }
            other => other?,
        };
        let entries = reply::split(raw).0;
        self.note_read(&entries);
        Ok(entries)
    }

    async fn read_own_pending(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut out = Vec::new();
        let mut start = after.to_string();
        while out.len() < max {
            let want = max - out.len();
            let raw = match self.read_group(self.conn.clone(), want, None, &start).await {
                // A new group has no pending entries.
                Err(e) if is_no_group(&e) => {
                    self.recreate_group().await?;
                    return Ok(out);
                }
                other => other?,
            };
            let read = raw.len();
            let Some((last, _)) = raw.last() else {
                break;
            };
            start = last.clone();
            let (live, deleted) = reply::split(raw);
            self.ack(&deleted).await?;
            out.extend(live);
            if read < want {
                break;
            }
        }
        self.note_read(&out);
        Ok(out)
    }

    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut out = Vec::new();
        let mut cursor = "0-0".to_string();
        for _ in 0..MAX_CLAIM_ROUNDS {
            if out.len() >= max {
                break;
            }
            let claimed: Result<Value, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(&self.keys.calls)
                .arg(&self.options.group)
                .arg(&self.options.consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - out.len())
                .query_async(&mut self.conn.clone())
                .await;
            let value = match claimed {
                Err(e) if is_no_group(&e) => {
                    self.recreate_group().await?;
                    break;
                }
                other => other?,
            };
            let (next, raw, mut deleted) = reply::autoclaim_reply(&value)?;
            let (live, nil_fields) = reply::split(raw);
            deleted.extend(nil_fields);
            self.ack(&deleted).await?;
            out.extend(live);
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        self.note_read(&out);
        self.forget_idle_consumers().await;
        Ok(out)
    }

    async fn touch(&self, ids: &[String]) -> Result<usize, BackendError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.touch.key(&self.keys.calls);
        invocation
            .arg(&self.options.group)
            .arg(&self.options.consumer);
        for id in ids {
            invocation.arg(id);
        }
        match invocation
            .invoke_async::<usize>(&mut self.heartbeat.conn())
            .await
        {
            Err(e) if is_no_group(&e) => {
                self.recreate_group().await?;
                Ok(ids.len())
            }
            other => Ok(other?.min(ids.len())),
        }
    }

    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XPENDING")
                .arg(&self.keys.calls)
                .arg(&self.options.group)
                .arg(*id)
                .arg(*id)
                .arg(1);
        }
        let replies: Vec<Value> = match pipe.query_async(&mut self.conn.clone()).await {
            // No group, nothing pending.
            Err(e) if is_no_group(&e) => return Ok(vec![None; ids.len()]),
            other => other?,
        };
        Ok(replies
            .iter()
            .map(reply::pending_owner)
            .collect::<Result<_, _>>()?)
    }

    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), BackendError> {
        finish_through_many(self, entry, result, dead).await
    }

    async fn finish_many(&self, items: &[Finish<'_>]) -> Vec<Result<(), BackendError>> {
        let items: Vec<(&str, Finish)> = items.iter().map(|f| (f.entry.id.as_str(), *f)).collect();
        self.finish_ids(&items).await
    }

    async fn enqueue(&self, fields: &[(String, String)]) -> Result<String, BackendError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.keys.calls)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.options.calls_max_len)
            .arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        Ok(cmd.query_async(&mut self.conn.clone()).await?)
    }

    async fn enqueue_once(
        &self,
        once_keys: &[String],
        ttl_ms: u64,
        fields: &[(String, String)],
    ) -> Result<Option<String>, BackendError> {
        let mut invocation = self.enqueue_once.key(&self.keys.calls);
        for key in once_keys {
            invocation.key(self.keys.once(key));
        }
        invocation
            .arg(ttl_ms.max(1))
            .arg(self.options.calls_max_len);
        for (k, v) in fields {
            invocation.arg(k).arg(v);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }
}

/// A results-stream field as a command argument, written straight into the command.
impl ToRedisArgs for Field<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match *self {
            Field::Text(text) => text.write_redis_args(out),
            Field::Count(n) => n.write_redis_args(out),
        }
    }
}
