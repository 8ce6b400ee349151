//! The dead-letter stream in Redis: paged reads, replay (`replay.lua`) and purge. The keys are
//! listed in the module docs of [`crate::dlq`].
//!
//! Paging: each page is one call of `scan.lua`, which runs `XRANGE <p>dead <start> <end> COUNT
//! PAGE` inside Redis and applies the field filters (reason, to, call_sid) there. It returns the
//! first matches in full (as many as the caller still shows or acts on) and only counts the
//! others (per reason, first and last id), so `dlq list --reason R` on a million entries moves
//! a hundred entries and a few counters over the network, not the stream. The range comes from
//! `since`/`until`/`after`, and each next page starts after the last id read (`(id`): memory
//! holds one page and one batch whatever the stream's length, and entries deleted behind the
//! cursor (a replay in progress) never shift what is read next. Each page is a short script
//! (a few milliseconds for [`PAGE`] entries), so Redis is never blocked for long.
//!
//! Shards (`stream.shards`): each shard has its own dead-letter stream (`<p>{<tag>}dead`), in
//! the slot of its calls stream, so a replay (dead → calls, one script) stays in one slot. Each
//! shard is one [`RedisSource`]; [`super::DeadLetters`] lists every shard and merges by id
//! (entry time, `super::merge`), and replays or purges shard after shard.

use redis::{Script, Value};

use super::filter::Filter;
use super::page::{Page, Pager};
use super::source::{PerEntry, Read, Source};
use super::{DeadEntry, ReplayOptions, PAGE};
use crate::ingest::redis::read_range;
use crate::redis_conn::{Keys, RedisConn};

/// The dead-letter stream of one shard of a Redis (or cluster) and key prefix; a replay goes
/// back to the calls stream of the same shard (one slot), which is the shard of its `to`.
pub(super) struct RedisSource {
    conn: RedisConn,
    keys: Keys,
    calls_max_len: u64,
    scan: Script,
    replay: Script,
}

impl RedisSource {
    pub(super) fn new(conn: RedisConn, keys: Keys, calls_max_len: u64) -> RedisSource {
        RedisSource {
            conn,
            keys,
            calls_max_len,
            scan: Script::new(include_str!("scan.lua")),
            replay: Script::new(include_str!("replay.lua")),
        }
    }
}

#[async_trait::async_trait]
impl Source for RedisSource {
    /// The next page of `pager`'s range, filtered in Redis (`scan.lua`): up to `want` matches in
    /// full, the other matches only counted.
    async fn read_page(&self, pager: &Pager, filter: &Filter, want: usize) -> Read<Page> {
        let any = |f: &Option<String>| f.clone().unwrap_or_default();
        let value: Value = self
            .scan
            .key(&self.keys.dead)
            .arg(&pager.start)
            .arg(&pager.end)
            .arg(PAGE)
            .arg(want)
            .arg(any(&filter.reason))
            .arg(any(&filter.to))
            .arg(any(&filter.call_sid))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Page::decode(&value)
    }

    /// One dead letter by id.
    async fn read_one(&self, id: &str) -> Read<Option<DeadEntry>> {
        let mut conn = self.conn.clone();
        let found = read_range(&mut conn, &self.keys.dead, id, id, 1).await?;
        Ok(found.into_iter().next().map(DeadEntry::from))
    }

    /// One script call for the batch; per entry, whether it was replayed (else it was gone).
    async fn replay(&self, batch: &[DeadEntry], options: &ReplayOptions) -> PerEntry {
        let mut invocation = self.replay.prepare_invoke();
        invocation
            .key(&self.keys.dead)
            .key(&self.keys.calls)
            .arg(self.calls_max_len)
            .arg(if options.keep { "1" } else { "0" });
        for entry in batch {
            let fields = entry.replay_fields(options.ttl_ms);
            invocation.arg(&entry.id).arg(fields.len() * 2);
            for (k, v) in fields {
                invocation.arg(k).arg(v);
            }
        }
        let added: Vec<String> = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(added.iter().map(|id| !id.is_empty()).collect())
    }

    /// XDEL each entry (pipelined); per entry, whether it was still there.
    async fn purge(&self, batch: &[DeadEntry]) -> PerEntry {
        let mut pipe = redis::pipe();
        for entry in batch {
            pipe.cmd("XDEL").arg(&self.keys.dead).arg(&entry.id);
        }
        let deleted: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(deleted.into_iter().map(|n| n > 0).collect())
    }
}
