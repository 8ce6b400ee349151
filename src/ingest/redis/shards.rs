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
//! - **Failures stay in their shard.** Every call to a shard goes through the shard's circuit
//!   (`health`): a shard whose command fails, or does not answer within a bound (1 s for a
//!   short command, the BLOCK time plus 1 s for a blocking read), is skipped by every operation
//!   for a pause and probed again, while the others go on. A read keeps what the healthy shards
//!   returned; a finish, touch or owner lookup answers for the other shards' entries at once;
//!   a shard whose consumer group could not be created is skipped until it can be, not the
//!   daemon stopped. The operation fails only when no shard answered.
//! - **Late reads are kept, never dropped.** `XREADGROUP` makes entries pending with this
//!   consumer as soon as the server sends them, so a read of new entries that outlives its
//!   bound (250 ms beyond its BLOCK time) is left to finish in the background: the shard counts
//!   as down and is not read again meanwhile, and the next read hands out what the late read
//!   brought (`shard::Shard::read`). A shard that hangs costs the others one wait of that bound
//!   when it starts hanging, and its own entries ring as soon as it answers. Reads of this
//!   consumer's own pending entries and reclaims (`XAUTOCLAIM`) are cut off at 1 s instead:
//!   what such a read took stays pending here and the periodic [`CallQueue::claim_stale`]
//!   reclaims it after `stream.claim_idle_ms` (`XAUTOCLAIM` hands entries to the consumer that
//!   asks, also when it holds them already).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::health::ANSWER_BOUND;
use super::shard::{split, Gathered, Shard};
use super::{finish_through_many, CallQueue, Finish, RedisCallQueue};
use crate::backend::BackendError;
use crate::event::StreamEntry;
use crate::outcome::{DeadLetter, EventResult};
use crate::redis_conn::slots::shard_of;

/// The longest a read blocks on the shards together; bounds the wait of an event that
/// arrives on an idle shard while the read blocks.
pub const SHARD_BLOCK: Duration = Duration::from_millis(200);

/// How long a read of new entries waits for one shard (beyond its BLOCK time) before the
/// others go on without it. Short, since nothing is lost by it: the read is not dropped, its
/// entries are handed out by a later read (`Shard::read`).
const READ_BOUND: Duration = Duration::from_millis(250);

/// The calls streams of every shard, read as one queue.
pub struct ShardedQueue {
    shards: Vec<Shard>,
    next: AtomicUsize,
    /// A shard answered again after it was down ([`CallQueue::take_recovered`]).
    came_back: Arc<AtomicBool>,
}

impl ShardedQueue {
    /// One queue over `shards` (in shard order; at least one).
    pub fn new(shards: Vec<RedisCallQueue>) -> ShardedQueue {
        assert!(!shards.is_empty(), "a sharded queue needs a shard");
        let came_back = Arc::new(AtomicBool::new(false));
        ShardedQueue {
            shards: shards
                .into_iter()
                .enumerate()
                .map(|(i, queue)| Shard::new(i, queue, came_back.clone()))
                .collect(),
            next: AtomicUsize::new(0),
            came_back,
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
        &self.shards[i].queue
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
        self.shards[0].queue.consumer()
    }

    fn take_recovered(&self) -> bool {
        self.came_back.swap(false, Ordering::AcqRel)
    }

    /// Every shard at once; fine when at least one has its group (the others are tried again
    /// by the calls that come to them).
    async fn ensure_group(&self) -> Result<(), BackendError> {
        let calls = (0..self.shards.len())
            .map(|i| self.shards[i].call(Some(ANSWER_BOUND), |_| async { Ok(Vec::new()) }));
        let mut gathered = Gathered::default();
        for (i, reply) in futures::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            gathered.add(i, reply);
        }
        gathered.finish().map(|_| ())
    }

    async fn read_new(
        &self,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut gathered = Gathered::default();
        let order: Vec<usize> = self.rotation().collect();
        for &i in &order {
            let want = max - gathered.entries.len();
            if want == 0 {
                break;
            }
            let reply = self.shards[i].read(want, Duration::ZERO, READ_BOUND).await;
            gathered.add(i, reply);
        }
        if !gathered.entries.is_empty() || block.is_zero() || !gathered.answered {
            return gathered.finish();
        }
        // Nothing waiting anywhere: block on every shard that answered at once, the free slots
        // split between them (the first shards of this rotation get the remainder).
        let up: Vec<usize> = order
            .into_iter()
            .filter(|&i| self.shards[i].health.is_up())
            .collect();
        let n = up.len().max(1);
        let block = block.min(SHARD_BLOCK);
        let reads = up.iter().enumerate().filter_map(|(k, &i)| {
            let count = max / n + usize::from(k < max % n);
            (count > 0).then_some((i, count))
        });
        let reads = reads.map(|(i, count)| async move {
            (
                i,
                self.shards[i].read(count, block, block + READ_BOUND).await,
            )
        });
        for (i, reply) in futures::future::join_all(reads).await {
            gathered.add(i, reply);
        }
        gathered.finish()
    }

    async fn read_own_pending(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let (first, mut cursor) = split(after).unwrap_or((0, "0"));
        let mut gathered = Gathered::default();
        for i in first..self.shards.len() {
            let want = max - gathered.entries.len();
            if want == 0 {
                break;
            }
            let reply = self.shards[i]
                .call(Some(ANSWER_BOUND), |q| q.read_own_pending(cursor, want))
                .await;
            gathered.add(i, reply);
            cursor = "0";
        }
        gathered.finish()
    }

    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut gathered = Gathered::default();
        // Only shards that answer: the periodic sweep runs in the reader's loop, and a probe of
        // a hung shard here would hold every read for its bound. Reads probe a shard that is
        // down; the sweep takes it up again once it answers.
        for i in self.rotation().filter(|i| self.shards[*i].health.is_up()) {
            let want = max - gathered.entries.len();
            if want == 0 {
                break;
            }
            let reply = self.shards[i]
                .call(Some(ANSWER_BOUND), |q| q.claim_stale(min_idle, want))
                .await;
            gathered.add(i, reply);
        }
        if !gathered.answered && self.shards.iter().all(|s| !s.health.is_up()) {
            // Nothing asked: no shard is up, so the sweep waits for the reads to bring one back.
            return Ok(Vec::new());
        }
        gathered.finish()
    }

    /// The shards at once: under load a touch waits for a busy server, and one shard's wait
    /// must not delay the touches of the others until their entries look idle. A touch waits
    /// as long as the heartbeat connection's response timeout (a slow answer is waited for, not
    /// taken for a hang), and no longer. The entries of a shard that failed or was skipped are not
    /// counted as lost: whether they are is unknown until it answers.
    async fn touch(&self, ids: &[String]) -> Result<usize, BackendError> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let groups = self.by_shard(&refs);
        let known: usize = groups.iter().map(Vec::len).sum();
        let touches = groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(i, group)| async move {
                let raw: Vec<String> = group.iter().map(|(_, id)| id.to_string()).collect();
                let shard = &self.shards[i];
                // Cut off at the heartbeat's own timeout: the cluster client would try a
                // touch to a hung node again and again, and every other shard's next touch
                // would wait for it past `claim_idle`.
                shard
                    .call(Some(shard.queue.touch_bound()), |q| async move {
                        q.touch(&raw).await
                    })
                    .await
            });
        let mut lost = ids.len() - known;
        let mut answered = known == 0;
        let mut error = None;
        for reply in futures::future::join_all(touches).await {
            match reply.into_result() {
                Ok(n) => {
                    answered = true;
                    lost += n;
                }
                Err(e) => error = Some(e),
            }
        }
        match (answered, error) {
            (false, Some(e)) => Err(e),
            _ => Ok(lost),
        }
    }

    /// The shards asked at once. An owner that cannot be looked up is not guessed: a shard that
    /// fails fails the lookup (of one event's claims, which live in one shard as a rule).
    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError> {
        let mut out = vec![None; ids.len()];
        let lookups = self
            .by_shard(ids)
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(i, group)| async move {
                let raw: Vec<&str> = group.iter().map(|(_, id)| *id).collect();
                let reply = self.shards[i]
                    .call(Some(ANSWER_BOUND), |q| async move { q.owners(&raw).await })
                    .await;
                (group, reply)
            });
        for (group, reply) in futures::future::join_all(lookups).await {
            let owners = reply.into_result()?;
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
        finish_through_many(self, entry, result, dead).await
    }

    /// One script call per shard, the shards at once (on a cluster, each on its own node); the
    /// items of a shard that fails, hangs or is down get its error, the others their answers.
    async fn finish_many(&self, items: &[Finish<'_>]) -> Vec<Result<(), BackendError>> {
        let mut answers: Vec<Result<(), BackendError>> = vec![Ok(()); items.len()];
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
        let calls = groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(i, group)| async move {
                let shard_items: Vec<(&str, Finish)> =
                    group.iter().map(|(_, id, f)| (*id, *f)).collect();
                let reply = self.shards[i]
                    .call(Some(ANSWER_BOUND), |q| async move {
                        let answers = q.finish_ids(&shard_items).await;
                        // Every entry failing for a reason that may pass is the shard failing.
                        match answers
                            .iter()
                            .find(|a| !matches!(a, Err(e) if e.is_transient()))
                        {
                            None => Err(answers
                                .into_iter()
                                .next()
                                .and_then(Result::err)
                                .expect("an answer per entry")),
                            Some(_) => Ok(answers),
                        }
                    })
                    .await;
                (group, reply)
            });
        for (group, reply) in futures::future::join_all(calls).await {
            match reply.into_result() {
                Ok(shard_answers) => {
                    for ((pos, _, _), answer) in group.iter().zip(shard_answers) {
                        answers[*pos] = answer;
                    }
                }
                Err(e) => {
                    for (pos, _, _) in &group {
                        answers[*pos] = Err(e.clone());
                    }
                }
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
