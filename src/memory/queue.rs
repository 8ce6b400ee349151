//! The calls stream in memory: entries, one consumer group's pending entries (who holds each,
//! since when), and the results and dead-letter streams an event's [`CallQueue::finish`]
//! writes — all under one lock, so a finish is as atomic as the Redis script.
//!
//! Several handles ([`MemoryCallQueue::with_consumer`]) share one stream, as several daemons
//! share one Redis stream; reclaims between them work as XAUTOCLAIM does. The dead-letter
//! stream's reads and changes for `crate::dlq` are in [`dead`].

mod dead;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::BackendError;
use crate::domain::now_ms;
use crate::event::StreamEntry;
use crate::ingest::CallQueue;
use crate::outcome::{DeadLetter, EventResult};

/// A stream id (`<ms>-<seq>`), ordered as Redis orders them.
type Id = (u64, u64);

/// How long the in-memory streams may grow (the settings' `max_len` values).
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    /// Entries kept in the calls stream (`stream.max_len`).
    pub calls: usize,
    /// Entries kept in the results stream (`results.max_len`); 0 writes no results.
    pub results: usize,
    /// Entries kept in the dead-letter stream (`dead_letters.max_len`).
    pub dead: usize,
}

impl MemoryLimits {
    /// The limits the settings ask for.
    pub fn from_settings(settings: &crate::config::Settings) -> MemoryLimits {
        let cap = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        MemoryLimits {
            calls: cap(settings.stream.max_len),
            results: if settings.results.enabled {
                cap(settings.results.max_len)
            } else {
                0
            },
            dead: cap(settings.dead_letters.max_len),
        }
    }
}

/// One pending entry: delivered to `consumer`, not acknowledged.
#[derive(Debug)]
struct Pending {
    consumer: String,
    since: Instant,
}

#[derive(Debug, Default)]
struct Streams {
    calls: BTreeMap<Id, Vec<(String, String)>>,
    last_id: Id,
    /// The group's last delivered id: `read_new` reads after it.
    delivered: Id,
    pending: BTreeMap<Id, Pending>,
    results: VecDeque<StreamEntry>,
    /// The dead-letter stream, by id (ranges and deletes by id, as `crate::dlq` needs).
    dead: BTreeMap<Id, Vec<(String, String)>>,
    /// Idempotency keys of [`CallQueue::enqueue_once`] → when they expire (ms since the epoch).
    once: HashMap<String, u64>,
}

impl Streams {
    fn next_id(&mut self) -> Id {
        let ms = now_ms();
        self.last_id = if ms > self.last_id.0 {
            (ms, 0)
        } else {
            (self.last_id.0, self.last_id.1 + 1)
        };
        self.last_id
    }

    /// Add an event to the calls stream; trimming to `cap` drops the oldest entries even when
    /// pending, as XADD MAXLEN does.
    fn add_call(&mut self, fields: Vec<(String, String)>, cap: usize) -> Id {
        let id = self.next_id();
        self.calls.insert(id, fields);
        while self.calls.len() > cap {
            self.calls.pop_first();
        }
        id
    }

    /// Add a dead letter, dropping the oldest beyond `cap`.
    fn add_dead(&mut self, id: Id, fields: Vec<(String, String)>, cap: usize) {
        self.dead.insert(id, fields);
        while self.dead.len() > cap {
            self.dead.pop_first();
        }
    }

    fn entry(&self, id: Id) -> Option<StreamEntry> {
        self.calls
            .get(&id)
            .map(|fields| StreamEntry::from_slice(format_id(id), fields))
    }
}

struct Shared {
    streams: Mutex<Streams>,
    added: Notify,
    limits: MemoryLimits,
}

/// The calls stream in this process's memory (see the module docs). Not durable: everything
/// is gone when the process exits.
#[derive(Clone)]
pub struct MemoryCallQueue {
    shared: Arc<Shared>,
    consumer: String,
}

fn format_id(id: Id) -> String {
    format!("{}-{}", id.0, id.1)
}

fn parse_id(id: &str) -> Option<Id> {
    match id.split_once('-') {
        Some((ms, seq)) => Some((ms.parse().ok()?, seq.parse().ok()?)),
        None => Some((id.parse().ok()?, 0)),
    }
}

fn push_capped(stream: &mut VecDeque<StreamEntry>, entry: StreamEntry, cap: usize) {
    stream.push_back(entry);
    while stream.len() > cap {
        stream.pop_front();
    }
}

impl MemoryCallQueue {
    /// An empty stream read by `consumer`.
    pub fn new(consumer: impl Into<String>, limits: MemoryLimits) -> MemoryCallQueue {
        MemoryCallQueue {
            shared: Arc::new(Shared {
                streams: Mutex::new(Streams::default()),
                added: Notify::new(),
                limits,
            }),
            consumer: consumer.into(),
        }
    }

    /// Another consumer of the same stream and group (a second daemon, in tests).
    pub fn with_consumer(&self, consumer: impl Into<String>) -> MemoryCallQueue {
        MemoryCallQueue {
            shared: self.shared.clone(),
            consumer: consumer.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.shared.streams.lock().expect("memory queue lock")
    }

    /// The results stream, oldest first.
    pub fn results(&self) -> Vec<StreamEntry> {
        self.lock().results.iter().cloned().collect()
    }

    /// The calls stream's entries, oldest first.
    pub fn calls(&self) -> Vec<StreamEntry> {
        let s = self.lock();
        s.calls.keys().filter_map(|id| s.entry(*id)).collect()
    }

    /// Entries in the calls stream.
    pub fn len(&self) -> usize {
        self.lock().calls.len()
    }

    /// True when the calls stream holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries delivered and not acknowledged, over all consumers.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    fn take_new(&self, max: usize) -> Vec<StreamEntry> {
        let mut s = self.lock();
        let start = (s.delivered.0, s.delivered.1.saturating_add(1));
        let ids: Vec<Id> = s
            .calls
            .range(start..)
            .take(max)
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            s.delivered = id;
            s.pending.insert(
                id,
                Pending {
                    consumer: self.consumer.clone(),
                    since: now,
                },
            );
            out.extend(s.entry(id));
        }
        out
    }
}

#[async_trait::async_trait]
impl CallQueue for MemoryCallQueue {
    fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn ensure_group(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn read_new(
        &self,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Register for the wake-up before looking, so an enqueue in between is not missed.
            let added = self.shared.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let batch = self.take_new(max.max(1));
            if !batch.is_empty() {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Entries are taken under the lock only when there are some; waiting holds nothing.
    fn read_is_cancel_safe(&self) -> bool {
        true
    }

    async fn read_own_pending(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let after =
            parse_id(after).ok_or_else(|| BackendError::Corrupt(format!("stream id {after:?}")))?;
        let s = self.lock();
        Ok(s.pending
            .range((after.0, after.1.saturating_add(1))..)
            .filter(|(_, p)| p.consumer == self.consumer)
            .filter_map(|(id, _)| s.entry(*id))
            .take(max)
            .collect())
    }

    async fn claim_stale(
        &self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackendError> {
        let mut s = self.lock();
        let now = Instant::now();
        let stale: Vec<Id> = s
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= min_idle)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        let mut out = Vec::new();
        for id in stale {
            match s.entry(id) {
                Some(entry) => {
                    s.pending.insert(
                        id,
                        Pending {
                            consumer: self.consumer.clone(),
                            since: now,
                        },
                    );
                    out.push(entry);
                }
                // Trimmed from the stream meanwhile: acknowledged and skipped, as XAUTOCLAIM does.
                None => {
                    s.pending.remove(&id);
                }
            }
        }
        Ok(out)
    }

    async fn touch(&self, ids: &[String]) -> Result<usize, BackendError> {
        let mut s = self.lock();
        let now = Instant::now();
        let mut lost = 0;
        for id in ids {
            match parse_id(id).and_then(|id| s.pending.get_mut(&id)) {
                Some(p) if p.consumer == self.consumer => p.since = now,
                _ => lost += 1,
            }
        }
        Ok(lost)
    }

    async fn owners(&self, ids: &[&str]) -> Result<Vec<Option<String>>, BackendError> {
        let s = self.lock();
        Ok(ids
            .iter()
            .map(|id| {
                parse_id(id)
                    .and_then(|id| s.pending.get(&id))
                    .map(|p| p.consumer.clone())
            })
            .collect())
    }

    async fn finish(
        &self,
        entry: &StreamEntry,
        result: &EventResult,
        dead: Option<&DeadLetter>,
    ) -> Result<(), BackendError> {
        let id = parse_id(&entry.id)
            .ok_or_else(|| BackendError::Corrupt(format!("stream id {:?}", entry.id)))?;
        let limits = self.shared.limits;
        let mut s = self.lock();
        // Another consumer finished it first: one outcome per entry.
        if s.pending.remove(&id).is_none() {
            return Ok(());
        }
        if limits.results > 0 {
            let fields = result.fields().map(|(k, v)| (k, v.to_string()));
            let id = format_id(s.next_id());
            push_capped(
                &mut s.results,
                StreamEntry::from_pairs(id, fields),
                limits.results,
            );
        }
        if let Some(dead) = dead {
            let id = s.next_id();
            s.add_dead(id, dead.fields(entry), limits.dead);
        }
        Ok(())
    }

    async fn enqueue_once(
        &self,
        once_keys: &[String],
        ttl_ms: u64,
        fields: &[(String, String)],
    ) -> Result<Option<String>, BackendError> {
        {
            let mut s = self.lock();
            let now = now_ms();
            s.once.retain(|_, expires| *expires > now);
            if once_keys.iter().any(|k| s.once.contains_key(k)) {
                return Ok(None);
            }
            for key in once_keys {
                s.once.insert(key.clone(), now.saturating_add(ttl_ms));
            }
        }
        self.enqueue(fields).await.map(Some)
    }

    async fn enqueue(&self, fields: &[(String, String)]) -> Result<String, BackendError> {
        let id = self
            .lock()
            .add_call(fields.to_vec(), self.shared.limits.calls);
        self.shared.added.notify_waiters();
        Ok(format_id(id))
    }
}
