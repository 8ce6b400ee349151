//! One shard of a [`super::ShardedQueue`] (its keys `<p>{<tag>}calls`, `…results`, `…dead`),
//! and every call to it going through its circuit ([`Health`]): skipped while the shard is
//! down, cut off after a bound, its consumer group created first when this process has not yet
//! managed to.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::health::{no_answer, Health};
use super::{CallQueue, RedisCallQueue};
use crate::backend::BackendError;
use crate::event::StreamEntry;

/// One shard: its queue and whether it answers.
pub(super) struct Shard {
    /// Its position in the queue, for logs.
    index: usize,
    pub(super) queue: Arc<RedisCallQueue>,
    pub(super) health: Health,
    /// Whether this process created (or found) the shard's consumer group; until then, every
    /// call to the shard first tries to, so a shard whose group cannot be created (its key is
    /// another type) is skipped and tried again rather than keeping the daemon from starting.
    grouped: Arc<AtomicBool>,
    /// Reads of new entries that outlived their bound, and what they brought ([`Shard::read`]).
    late: Mutex<Late>,
    /// Set when this shard (or another of its queue) answers again after it was down.
    came_back: Arc<AtomicBool>,
}

/// A read of new entries that did not answer within its bound is not dropped (`XREADGROUP`
/// makes entries pending as soon as the server sends them: a dropped read would strand them
/// until `claim_idle_ms` reclaimed them). It goes on in the background, the shard counts as
/// down meanwhile, and the next read of the shard hands out what it brought.
#[derive(Default)]
struct Late {
    /// The read still out, at most one.
    read: Option<JoinHandle<Result<Vec<StreamEntry>, BackendError>>>,
    /// Entries a late read brought beyond what the read that collected it could take.
    kept: VecDeque<StreamEntry>,
}

/// How a call to one shard went.
pub(super) enum Reply<T> {
    /// The shard answered.
    Answered(T),
    /// The shard failed or did not answer in time.
    Failed(BackendError),
    /// The shard is down and was not asked; why (transient, quoting the error it is down with).
    Skipped(BackendError),
}

impl<T> Reply<T> {
    pub(super) fn into_result(self) -> Result<T, BackendError> {
        match self {
            Reply::Answered(t) => Ok(t),
            Reply::Failed(e) | Reply::Skipped(e) => Err(e),
        }
    }
}

impl Shard {
    /// Shard `index` over `queue`, up, its group not yet created; `came_back` is set whenever
    /// it answers again after it was down.
    pub(super) fn new(index: usize, queue: RedisCallQueue, came_back: Arc<AtomicBool>) -> Shard {
        Shard {
            index,
            queue: Arc::new(queue),
            health: Health::default(),
            grouped: Arc::new(AtomicBool::new(false)),
            late: Mutex::default(),
            came_back,
        }
    }

    /// The shard answered: up, and noted when it was down until now.
    fn answered(&self) {
        if self.health.answered(self.index, &self.queue.keys().calls) {
            self.came_back.store(true, Ordering::Release);
        }
    }

    /// Up to `count` new entries of this shard (blocking up to `block` when there are none),
    /// waiting at most `bound` for the server. What a late read brought is handed out first;
    /// while a read is still out the shard is not read again, and a read that outlives `bound`
    /// is left to finish in the background ([`Late`]): the shard answers for it later.
    pub(super) async fn read(
        &self,
        count: usize,
        block: Duration,
        bound: Duration,
    ) -> Reply<Vec<StreamEntry>> {
        let (mut out, out_already) = {
            let mut late = self.late.lock().expect("late reads lock");
            let take = late.kept.len().min(count);
            let out: Vec<StreamEntry> = late.kept.drain(..take).collect();
            (out, late.read.take())
        };
        let mut handle = match out_already {
            Some(handle) if !handle.is_finished() => {
                self.late.lock().expect("late reads lock").read = Some(handle);
                return self.with_kept(out, no_answer(bound));
            }
            Some(handle) => handle,
            None if out.len() >= count => return Reply::Answered(out),
            None => {
                if let Err(e) = self.health.admit(Instant::now()) {
                    return self.with_kept(out, e);
                }
                let (queue, grouped) = (self.queue.clone(), self.grouped.clone());
                let want = count - out.len();
                tokio::spawn(async move {
                    if !grouped.load(Ordering::Acquire) {
                        queue.ensure_group().await?;
                        grouped.store(true, Ordering::Release);
                    }
                    queue.read_new(want, block).await
                })
            }
        };
        let stream = self.queue.keys().calls.as_str();
        let answer = match tokio::time::timeout(bound, &mut handle).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(BackendError::Corrupt(e.to_string()))),
            Err(_) => {
                self.late.lock().expect("late reads lock").read = Some(handle);
                let e = no_answer(bound);
                self.health.failed(self.index, stream, &e, Instant::now());
                return self.with_kept(out, e);
            }
        };
        match answer {
            Ok(entries) => {
                self.answered();
                let room = count - out.len();
                let mut entries = entries.into_iter();
                out.extend(entries.by_ref().take(room));
                let mut late = self.late.lock().expect("late reads lock");
                late.kept.extend(entries);
                Reply::Answered(out)
            }
            Err(e) => {
                self.health.failed(self.index, stream, &e, Instant::now());
                self.with_kept(out, e)
            }
        }
    }

    /// What a read answers when the shard did not: the kept entries it took, if any.
    fn with_kept(&self, kept: Vec<StreamEntry>, e: BackendError) -> Reply<Vec<StreamEntry>> {
        match kept.is_empty() {
            true => Reply::Failed(e),
            false => Reply::Answered(kept),
        }
    }

    /// Run `op` on this shard through its circuit: skipped while the shard is down, cut off
    /// after `bound` (`None`: the connection's own timeout), the consumer group created first
    /// when this process has not yet; the outcome updates the circuit.
    pub(super) async fn call<'a, T, F, Fut>(&'a self, bound: Option<Duration>, op: F) -> Reply<T>
    where
        F: FnOnce(&'a RedisCallQueue) -> Fut,
        Fut: Future<Output = Result<T, BackendError>> + 'a,
    {
        if let Err(e) = self.health.admit(Instant::now()) {
            return Reply::Skipped(e);
        }
        let work = async {
            if !self.grouped.load(Ordering::Acquire) {
                self.queue.ensure_group().await?;
                self.grouped.store(true, Ordering::Release);
            }
            op(&self.queue).await
        };
        let answer = match bound {
            Some(bound) => tokio::time::timeout(bound, work)
                .await
                .unwrap_or_else(|_| Err(no_answer(bound))),
            None => work.await,
        };
        let stream = self.queue.keys().calls.as_str();
        match answer {
            Ok(t) => {
                self.answered();
                Reply::Answered(t)
            }
            Err(e) => {
                self.health.failed(self.index, stream, &e, Instant::now());
                Reply::Failed(e)
            }
        }
    }
}

/// `<stream id>@<shard>`.
fn tag(shard: usize, mut entry: StreamEntry) -> StreamEntry {
    entry.id = format!("{}@{shard}", entry.id);
    entry
}

/// The shard and stream id of an id [`tag`] made.
pub(super) fn split(id: &str) -> Option<(usize, &str)> {
    let (raw, shard) = id.rsplit_once('@')?;
    Some((shard.parse().ok()?, raw))
}

/// What the shards of one read gave: the entries (tagged with their shard), and whether any
/// shard answered (else the last error).
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) entries: Vec<StreamEntry>,
    pub(super) answered: bool,
    error: Option<BackendError>,
}

impl Gathered {
    /// Add what shard `shard` answered.
    pub(super) fn add(&mut self, shard: usize, reply: Reply<Vec<StreamEntry>>) {
        match reply.into_result() {
            Ok(got) => {
                self.answered = true;
                self.entries.extend(got.into_iter().map(|e| tag(shard, e)));
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// The entries, unless no shard that was asked answered: then the last error.
    pub(super) fn finish(self) -> Result<Vec<StreamEntry>, BackendError> {
        match (self.answered, self.error) {
            (false, Some(e)) => Err(e),
            _ => Ok(self.entries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_shard() {
        let e = tag(3, StreamEntry::of("1700000000000-1", &[]));
        assert_eq!(e.id, "1700000000000-1@3");
        assert_eq!(crate::event::stream_id_ms(&e.id), Some(1_700_000_000_000));
        assert_eq!(split(&e.id), Some((3, "1700000000000-1")));
        assert_eq!(split("1700000000000-1"), None);
    }

    #[test]
    fn a_read_fails_only_when_no_shard_answered() {
        let err = || BackendError::Corrupt("down".into());
        let mut all_down = Gathered::default();
        all_down.add(0, Reply::Failed(err()));
        all_down.add(1, Reply::Skipped(err()));
        assert!(all_down.finish().is_err());
        let mut one_up = Gathered::default();
        one_up.add(0, Reply::Failed(err()));
        let entry = StreamEntry::of("5-0", &[]);
        one_up.add(1, Reply::Answered(vec![entry]));
        let ids: Vec<String> = one_up.finish().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["5-0@1"]);
    }
}
