//! The consumer group the queue reads through: created at `0` at start, created again where
//! this process left off when it disappears under the running daemon (see the module docs of
//! [`super`]), read with XREADGROUP, and acknowledged for entries trimmed while pending.

use std::time::Duration;

use redis::{RedisError, Value};

use super::{reply, RedisCallQueue};
use crate::backend::BackendError;
use crate::event::StreamEntry;
use crate::redis_conn::wire::{Commands, Reply};
use crate::redis_conn::RedisConn;

/// A stream id as numbers, to keep the newest one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamId(pub(super) u64, pub(super) u64);

impl StreamId {
    pub(super) fn parse(id: &str) -> Option<StreamId> {
        let (ms, seq) = id.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl RedisCallQueue {
    /// Remember the newest id of `entries` as where a lost group is created again.
    pub(super) fn note_read(&self, entries: &[StreamEntry]) {
        let newest = entries.iter().filter_map(|e| StreamId::parse(&e.id)).max();
        if let Some(newest) = newest {
            let mut at = self.resume_from.lock().expect("resume lock");
            *at = (*at).max(newest);
        }
    }

    /// The group disappeared under the running daemon: create it again where this process
    /// left off (see the module docs), not at `0`.
    pub(super) async fn recreate_group(&self) -> Result<(), BackendError> {
        let at = *self.resume_from.lock().expect("resume lock");
        tracing::warn!(
            group = %self.options.group,
            stream = %self.keys.calls,
            from = %at,
            "the consumer group is gone; creating it again after the newest entry this daemon read"
        );
        self.create_group(&at.to_string()).await
    }

    /// XGROUP CREATE at `id` (MKSTREAM); an existing group is fine.
    pub(super) async fn create_group(&self, id: &str) -> Result<(), BackendError> {
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.calls)
            .arg(&self.options.group)
            .arg(id)
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }
    /// XREADGROUP from `start` (`>` for new entries, an id for this consumer's pending ones).
    pub(super) async fn read_group(
        &self,
        mut conn: RedisConn,
        count: usize,
        block: Option<Duration>,
        start: &str,
    ) -> Result<Vec<reply::RawEntry>, RedisError> {
        if let Some(wire) = conn.wire() {
            let mut out = Commands::with_capacity(128);
            out.command(if block.is_some() { 11 } else { 9 })
                .arg("XREADGROUP")
                .arg("GROUP")
                .arg(&self.options.group)
                .arg(&self.options.consumer)
                .arg("COUNT")
                .arg_u64(count as u64);
            if let Some(block) = block {
                out.arg("BLOCK").arg_u64(block.as_millis() as u64);
            }
            out.arg("STREAMS").arg(&self.keys.calls).arg(start);
            let replies = wire.send(out).await?;
            let reply = replies.iter().next().unwrap_or(Reply::Nil);
            return reply::read_reply_wire(reply);
        }
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
    pub(super) async fn ack(&self, ids: &[String]) -> Result<(), RedisError> {
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
pub(super) fn is_no_group(err: &RedisError) -> bool {
    err.code() == Some("NOGROUP")
}
