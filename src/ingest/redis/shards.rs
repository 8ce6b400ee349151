//! The calls queue over `stream.shards` streams (`redis_conn::Layout`): one
//! [`RedisCallQueue`] per shard, each with its own keys (`<p>{<tag>}calls`, `…results`,
//! `…dead`, `…once:<key>`, all in the shard's slot) and its own blocking connection.
//!
//! - **Adding**: an event goes to the shard of its `to` (CRC-32 mod shards, SPEC-compatible:
//!   call servers compute the same function, `redis_conn::slots::shard_of`); an event without
//!   `to` goes to shard 0, where it is dead-lettered as malformed.
//! - **Reading**: every daemon reads every shard. A read first takes what is waiting without
//!   blocking, shard after shard from a starting shard that advances by one per read, so under
//!   load every shard in turn gets the first pick and none is starved. When nothing waits, it
//!   blocks on all shards at once for at most [`SHARD_BLOCK`] (each on its own connection,
//!   splitting the free slots between them) and returns what any of them brought: a new event
//!   on an idle shard waits at most that long.
//! - **Ids**: entries carry `<stream id>@<shard>` so finishing, touching and looking up owners
//!   go to the right stream; the stream id stays first, so the event's time still reads from
//!   it, and the dead letter's `source_id` is the plain stream id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{CallQueue, Finish, RedisCallQueue};
use crate::backend::BackendError;
use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult};
use crate::redis_conn::slots::shard_of;

/// The longest a read blocks on the shards together; bounds the wait of an event that
/// arrives on an idle shard while the read blocks.
pub const SHARD_BLOCK: Duration = Duration::from_millis(200);

/// The calls streams of every shard, read as one queue.
pub struct ShardedQueue {
    shards: Vec<RedisCallQueue>,
    next: AtomicUsize,
}

/// `<stream id>@<shard>`.
fn tag(shard: usize, mut entry: StreamEntry) -> StreamEntry {
    entry.id = format!("{}@{shard}", entry.id);
    entry
}

/// The shard and stream id of an id [`tag`] made.
fn split(id: &str) -> Option<(usize, &str)> {
    let (raw, shard) = id.rsplit_once('@')?;
    Some((shard.parse().ok()?, raw))
}

fn tag_all(shard: usize, entries: Vec<StreamEntry>) -> impl Iterator<Item = StreamEntry> {
    entries.into_iter().map(move |e| tag(shard, e))
}

impl ShardedQueue {
    /// One queue over `shards` (in shard order; at least one).
    pub fn new(shards: Vec<RedisCallQueue>) -> ShardedQueue {
        assert!(!shards.is_empty(), "a sharded queue needs a shard");
        ShardedQueue {
            shards,
            next: AtomicUsize::new(0),
        }
    }

    /// The shards in the order this read visits them.
    fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.shards.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(move |k| (start + k) % n)
    }

    fn shard_for(&self, fields: &[(String, String)]) -> &RedisCallQueue {
        let to = fields.iter().find(|(k, _)| k == "to").map(|(_, v)| v);
        let i = to.map_or(0, |to| shard_of(to, self.shards.len() as u32));
        &self.shards[i]
    }

    /// Group `ids` by shard: (shard, position in `ids`, stream id).
    fn by_shard<'a>(&self, ids: &[&'a str]) -> Vec<Vec<(usize, &'a str)>> {
        let mut groups = vec![Vec::new(); self.shards.len()];
        for (pos, id) in ids.iter().enumerate() {
            if let Some((shard, raw)) = split(id).filter(|(s, _)| *s < self.shards.len()) {
                groups[shard].push((pos, raw));
            }
        }
        groups
    }
}

#[async_trait::async_trait]
impl CallQueue for ShardedQueue {
    fn consumer(&self) -> &str {
        self.shards[0].consumer()
    }

    async fn ensure_group(&self) -> Result<(), BackendError> {
        for shard in &self.shards {
            shard.ensure_group().await?;
        }
        Ok(())
    }

    async fn read_new(
        &self,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut out = Vec::new();
        let order: Vec<usize> = self.rotation().collect();
        for &i in &order {
            if out.len() >= max {
                break;
            }
            let got = self.shards[i]
                .read_new(max - out.len(), Duration::ZERO)
                .await?;
            out.extend(tag_all(i, got));
        }
        if !out.is_empty() || block.is_zero() || max == 0 {
            return Ok(out);
        }
        // Nothing waiting anywhere: block on every shard at once, the free slots split
        // between them (the first shards of this rotation get the remainder).
        let n = order.len();
        let block = block.min(SHARD_BLOCK);
        let reads = order.iter().enumerate().filter_map(|(k, &i)| {
            let count = max / n + usize::from(k < max % n);
            (count > 0).then_some((i, count))
        });
        let reads = reads.map(|(i, count)| async move {
            self.shards[i]
                .read_new(count, block)
                .await
                .map(|got| (i, got))
        });
        for (i, got) in futures::future::try_join_all(reads).await? {
            out.extend(tag_all(i, got));
        }
        Ok(out)
    }

    async fn read_own_pending(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let (first, mut cursor) = split(after).unwrap_or((0, "0"));
        let mut out = Vec::new();
        for i in first..self.shards.len() {
            if out.len() >= max {
                break;
            }
            let got = self.shards[i]
                .read_own_pending(cursor, max - out.len())
                .await?;
            out.extend(tag_all(i, got));
            cursor = "0";
        }
        Ok(out)
    }

    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut out = Vec::new();
        for i in self.rotation() {
            if out.len() >= max {
                break;
            }
            let got = self.shards[i]
                .claim_stale(min_idle, max - out.len())
                .await?;
            out.extend(tag_all(i, got));
        }
        Ok(out)
    }

    /// The shards at once: under load a touch waits for a busy server, and one shard's wait
    /// must not delay the touches of the others until their entries look idle.
    async fn touch(&self, ids: &[String]) -> Result<usize, BackendError> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let groups = self.by_shard(&refs);
        let known: usize = groups.iter().map(Vec::len).sum();
        let touches = self
            .shards
            .iter()
            .zip(groups)
            .filter(|(_, group)| !group.is_empty())
            .map(|(shard, group)| async move {
                let raw: Vec<String> = group.iter().map(|(_, id)| id.to_string()).collect();
                shard.touch(&raw).await
            });
        let lost: usize = futures::future::try_join_all(touches)
            .await?
            .into_iter()
            .sum();
        Ok(ids.len() - known + lost)
    }

    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError> {
        let mut out = vec![None; ids.len()];
        for (shard, group) in self.shards.iter().zip(self.by_shard(ids)) {
            let raw: Vec<&str> = group.iter().map(|(_, id)| *id).collect();
            let owners = shard.owners(&raw).await?;
            for ((pos, _), owner) in group.iter().zip(owners) {
                out[*pos] = owner;
            }
        }
        Ok(out)
    }

    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), BackendError> {
        self.finish_many(&[Finish {
            entry,
            result,
            dead,
        }])
        .await
        .pop()
        .unwrap_or(Ok(()))
    }

    /// One script call per shard, the shards at once (on a cluster, each on its own node).
    async fn finish_many(&self, items: &[Finish<'_>]) -> Vec<Result<(), BackendError>> {
        let mut answers: Vec<Result<(), BackendError>> = items.iter().map(|_| Ok(())).collect();
        let mut groups: Vec<Vec<(usize, &str, Finish)>> = vec![Vec::new(); self.shards.len()];
        for (pos, item) in items.iter().enumerate() {
            match split(&item.entry.id).filter(|(s, _)| *s < self.shards.len()) {
                Some((i, raw)) => groups[i].push((pos, raw, *item)),
                None => {
                    answers[pos] = Err(BackendError::Corrupt(format!(
                        "stream id {} names no shard",
                        item.entry.id
                    )))
                }
            }
        }
        let calls = self
            .shards
            .iter()
            .zip(&groups)
            .filter(|(_, group)| !group.is_empty())
            .map(|(shard, group)| async move {
                let ids: Vec<(&str, Finish)> = group.iter().map(|(_, raw, f)| (*raw, *f)).collect();
                (group, shard.finish_ids(&ids).await)
            });
        for (group, answer) in futures::future::join_all(calls).await {
            for (pos, _, _) in group {
                answers[*pos] = answer.clone();
            }
        }
        answers
    }

    async fn enqueue(&self, fields: &[(String, String)]) -> Result<String, BackendError> {
        self.shard_for(fields).enqueue(fields).await
    }

    async fn enqueue_once(
        &self,
        once_keys: &[String],
        ttl_ms: u64,
        fields: &[(String, String)],
    ) -> Result<Option<String>, BackendError> {
        self.shard_for(fields)
            .enqueue_once(once_keys, ttl_ms, fields)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_shard() {
        let e = tag(
            3,
            StreamEntry {
                id: "1700000000000-1".into(),
                fields: Vec::new(),
            },
        );
        assert_eq!(e.id, "1700000000000-1@3");
        assert_eq!(crate::event::stream_id_ms(&e.id), Some(1_700_000_000_000));
        assert_eq!(split(&e.id), Some((3, "1700000000000-1")));
        assert_eq!(split("1700000000000-1"), None);
    }
}
