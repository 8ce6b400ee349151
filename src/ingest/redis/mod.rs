//! The Redis call queue: the calls stream read through a consumer group.
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>calls` — stream of call events (SPEC §5), added by call servers and [`CallQueue::enqueue`];
//!   read with the consumer group `stream.group`, one consumer name per process.
//! - `<p>results` — stream, one entry per finished event (`call_sid`, `to`, `outcome`, `devices`,
//!   `delivered`), capped with `MAXLEN ~ results.max_len`; written only when `results.enabled`.
//! - `<p>dead` — stream of dead letters (the original fields plus `reason`, `detail`, `attempts`,
//!   `failed_at`, `source_id`), capped with `MAXLEN ~ dead_letters.max_len`.
//!
//! An entry is acknowledged only in [`CallQueue::finish`], by one script (`finish.lua`) that
//! checks the entry is still pending, writes its result and dead letter and acknowledges it, all
//! at once: a crash cannot separate the outcome from the acknowledgement, and when two consumers
//! worked on one entry (a reclaim raced a slow one) only the first records an outcome. Redis
//! Cluster would need the three streams in one slot for that script (a hash tag in the prefix);
//! cluster support is a later issue.
//!
//! While this consumer works on entries, [`CallQueue::touch`] resets their idle time (XCLAIM
//! with JUSTID), so other consumers reclaim only entries nobody is working on.
//!
//! Blocking reads go over their own connection ([`BlockingConnection`]); everything else over
//! the shared one. A blocking read that is dropped half-way (shutdown) may leave entries
//! delivered to this consumer and unacknowledged: [`CallQueue::read_own_pending`] after a
//! restart, or another consumer's [`CallQueue::claim_stale`], picks them up.

mod reply;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{RedisError, Script, Value};

use super::CallQueue;
use crate::backend::BackendError;
use crate::config::Settings;
use crate::dispatch::dedup::redis::RedisSentLedger;
use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult};
use crate::redis_conn::{BlockingConnection, Keys};

/// XAUTOCLAIM round trips per [`CallQueue::claim_stale`] at most, so one call stays short even
/// when the pending list holds many entries that are not idle long enough.
const MAX_CLAIM_ROUNDS: usize = 64;

/// How the queue names itself and caps the streams it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Consumer group (`stream.group`).
    pub group: String,
    /// This process's consumer name (`stream.consumer`, else host name and process id).
    pub consumer: String,
    /// Write results (`results.enabled`).
    pub results_enabled: bool,
    /// `MAXLEN ~` of the results stream (`results.max_len`).
    pub results_max_len: u64,
    /// `MAXLEN ~` of the dead-letter stream (`dead_letters.max_len`).
    pub dead_max_len: u64,
    /// `MAXLEN ~` of the calls stream for entries callpush adds (`stream.max_len`).
    pub calls_max_len: u64,
}

impl QueueOptions {
    /// The options the settings ask for.
    pub fn from_settings(settings: &Settings) -> QueueOptions {
        QueueOptions {
            group: settings.stream.group.clone(),
            consumer: settings
                .stream
                .consumer
                .clone()
                .unwrap_or_else(default_consumer_name),
            results_enabled: settings.results.enabled,
            results_max_len: settings.results.max_len,
            dead_max_len: settings.dead_letters.max_len,
            calls_max_len: settings.stream.max_len,
        }
    }
}

/// `<host name>-<process id>`: stable for one process, distinct between replicas, so a restart
/// with a configured name finds its own pending entries and others are claimed when idle.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "callpush".into());
    format!("{host}-{}", std::process::id())
}

/// The calls stream in Redis (see the module docs for the keys).
pub struct RedisCallQueue {
    conn: ConnectionManager,
    blocking: BlockingConnection,
    keys: Keys,
    options: QueueOptions,
    finish: Script,
}

impl RedisCallQueue {
    /// A queue using `conn` for short commands and `blocking` for blocking reads.
    pub fn new(
        conn: ConnectionManager,
        blocking: BlockingConnection,
        keys: Keys,
        options: QueueOptions,
    ) -> RedisCallQueue {
        RedisCallQueue {
            conn,
            blocking,
            keys,
            options,
            finish: Script::new(include_str!("finish.lua")),
        }
    }

    /// The no-double-ring ledger on this queue's Redis connection and key prefix.
    pub fn sent_ledger(&self) -> RedisSentLedger {
        RedisSentLedger::new(self.conn.clone(), self.keys.clone())
    }

    /// The key names this queue uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This queue's consumer name.
    pub fn consumer(&self) -> &str {
        &self.options.consumer
    }

    /// XREADGROUP from `start` (`>` for new entries, an id for this consumer's pending ones).
    async fn read_group(
        &self,
        mut conn: impl ConnectionLike,
        count: usize,
        block: Option<Duration>,
        start: &str,
    ) -> Result<Vec<reply::RawEntry>, RedisError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.keys.calls).arg(start);
        let value: Value = cmd.query_async(&mut conn).await?;
        reply::read_reply(&value)
    }

    /// Acknowledge entries that were deleted from the stream while pending: there is nothing
    /// left to deliver, and leaving them would make every restart see them again.
    async fn ack(&self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.keys.calls)
            .arg(&self.options.group)
            .arg(ids)
            .query_async::<()>(&mut self.conn.clone())
            .await
    }
}

/// The group or the stream was deleted under us (XGROUP DESTROY, DEL): create it again.
fn is_no_group(err: &RedisError) -> bool {
    err.code() == Some("NOGROUP")
}

#[async_trait::async_trait]
impl CallQueue for RedisCallQueue {
    async fn ensure_group(&self) -> Result<(), BackendError> {
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.calls)
            .arg(&self.options.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
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
                self.ensure_group().await?;
                self.read_group(self.blocking.conn(), max, block, ">")
                    .await?
            }
            other => other?,
        };
        Ok(reply::split(raw).0)
    }

    async fn read_own_pending(&self, max: usize) -> Result<Vec<StreamEntry>, BackendError> {
        let mut out = Vec::new();
        let mut start = "0".to_string();
        while out.len() < max {
            let want = max - out.len();
            let raw = match self.read_group(self.conn.clone(), want, None, &start).await {
                // A new group has no pending entries.
                Err(e) if is_no_group(&e) => {
                    self.ensure_group().await?;
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
                    self.ensure_group().await?;
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
        Ok(out)
    }

    async fn touch(&self, ids: &[String]) -> Result<(), BackendError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Min idle 0 claims them for this consumer whatever their idle time; ids no longer
        // pending are ignored by Redis.
        let touched = redis::cmd("XCLAIM")
            .arg(&self.keys.calls)
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn.clone())
            .await;
        match touched {
            Err(e) if is_no_group(&e) => self.ensure_group().await,
            other => other.map(drop).map_err(BackendError::from),
        }
    }

    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), BackendError> {
        let mut invocation = self.finish.prepare_invoke();
        invocation
            .key(&self.keys.calls)
            .key(&self.keys.results)
            .key(&self.keys.dead)
            .arg(&self.options.group)
            .arg(&entry.id)
            .arg(self.options.results_max_len)
            .arg(self.options.dead_max_len);
        let result_fields = if self.options.results_enabled {
            result.fields()
        } else {
            Vec::new()
        };
        invocation.arg(result_fields.len() * 2);
        for (k, v) in &result_fields {
            invocation.arg(*k).arg(v);
        }
        for (k, v) in dead.map(|d| d.fields(entry)).unwrap_or_default() {
            invocation.arg(k).arg(v);
        }
        let recorded: Result<i64, RedisError> =
            invocation.invoke_async(&mut self.conn.clone()).await;
        match recorded {
            Ok(0) => {
                tracing::debug!(stream_id = %entry.id, "entry finished by another consumer first; outcome not repeated");
                Ok(())
            }
            Ok(_) => Ok(()),
            // The group is gone (and with it the pending entry): once it is back, the entry is
            // read again as new and gets its outcome then.
            Err(e) if is_no_group(&e) => self.ensure_group().await,
            Err(e) => Err(e.into()),
        }
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
}

/// Read up to `count` entries of any stream from `start` on (XRANGE `start` `+`): `-` for the
/// beginning, an id to include it, `(id` to start after it. For the results and dead-letter
/// streams (CLI, admin API, tests).
pub async fn read_stream(
    conn: &mut impl ConnectionLike,
    key: &str,
    start: &str,
    count: usize,
) -> Result<Vec<StreamEntry>, BackendError> {
    let value: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(reply::split(reply::entries(&value)?).0)
}
