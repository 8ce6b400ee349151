//! Listing, replay and purge over a dead-letter [`Source`] (Redis or memory): [`DeadLetters`]
//! walks the selected entries oldest first, a page at a time, decides per entry (skip or act)
//! and acts in batches of [`BATCH`], so memory holds one page and one batch whatever the
//! stream's length, and both sources give the same summaries. With shards (`stream.shards`)
//! there is one source per shard: a listing merges them by id (`super::merge`), a replay or
//! purge walks shard after shard, and an id is looked up in every shard.

use std::collections::BTreeSet;

use super::filter::{parse_id, Filter};
use super::memory::MemorySource;
use super::merge;
use super::page::Pager;
use super::source::Source;
use super::store::RedisSource;
use super::{Action, ActionSummary, DeadEntry, DlqError, Summary, BATCH, PAGE};
use crate::domain::now_ms;
use crate::event::MAX_TTL_MS;
use crate::memory::MemoryCallQueue;
use crate::redis_conn::{Keys, Layout, RedisConn};

/// Which dead letters a replay or purge acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids; every one must exist.
    Ids(Vec<String>),
    /// Every entry the filter matches (an empty filter: all).
    Matching(Filter),
}

/// How to replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Count what would be replayed; change nothing.
    pub dry_run: bool,
    /// Replay expired `incoming` calls and `malformed` entries too.
    pub force: bool,
    /// Leave the dead letters in place.
    pub keep: bool,
    /// The replayed event's `ttl_ms` (default: its own, else 30 s).
    pub ttl_ms: Option<u64>,
}

/// Progress callback: the summary so far, after each batch.
pub type Progress<'a> = &'a mut (dyn FnMut(&ActionSummary) + Send);

/// The dead letters of one backend: a Redis and key prefix, or an in-memory queue.
pub struct DeadLetters {
    /// One source per shard (one without `stream.shards`, and in memory).
    sources: Vec<Box<dyn Source>>,
    backend: &'static str,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead letters under `keys`; replays add to the calls stream with `MAXLEN ~
    /// calls_max_len` (`stream.max_len`).
    pub fn new(conn: RedisConn, keys: Keys, calls_max_len: u64) -> DeadLetters {
        DeadLetters {
            sources: vec![Box::new(RedisSource::new(conn, keys, calls_max_len))],
            backend: "redis",
        }
    }

    /// The dead letters of every shard of `layout`.
    pub fn with_layout(conn: RedisConn, layout: &Layout, calls_max_len: u64) -> DeadLetters {
        let sources = layout.shards().iter().map(|keys| {
            Box::new(RedisSource::new(conn.clone(), keys.clone(), calls_max_len)) as Box<dyn Source>
        });
        DeadLetters {
            sources: sources.collect(),
            backend: "redis",
        }
    }

    /// The dead letters of an in-memory queue; replays add to that queue's calls stream.
    pub fn in_memory(queue: MemoryCallQueue) -> DeadLetters {
        DeadLetters {
            sources: vec![Box::new(MemorySource { queue })],
            backend: "memory",
        }
    }

    /// One dead letter by id (the first shard's holding it).
    pub async fn get(&self, id: &str) -> Result<DeadEntry, DlqError> {
        let mut found = self.find(id).await?;
        Ok(found.swap_remove(0).1)
    }

    /// Every shard's dead letter with `id`, with its shard; at least one.
    async fn find(&self, id: &str) -> Result<Vec<(usize, DeadEntry)>, DlqError> {
        let mut out = Vec::new();
        for (shard, source) in self.sources.iter().enumerate() {
            match source.get(id).await {
                Ok(entry) => out.push((shard, entry)),
                Err(DlqError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            return Err(DlqError::NotFound(parse_id(id)?));
        }
        Ok(out)
    }

    /// Walk every entry matching `filter` after `after`, oldest first: the first `limit` are
    /// handed to `show`; all are counted in the summary.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
        show: &mut (dyn FnMut(&DeadEntry) + Send),
    ) -> Result<Summary, DlqError> {
        if let [source] = self.sources.as_slice() {
            return list_source(source.as_ref(), filter, after, limit, show).await;
        }
        let mut listings = Vec::new();
        for source in &self.sources {
            let mut shown = Vec::new();
            let summary = list_source(source.as_ref(), filter, after, limit, &mut |e| {
                shown.push(e.clone())
            })
            .await?;
            listings.push((shown, summary));
        }
        let (shown, summary) = merge::listings(listings, limit);
        shown.iter().for_each(show);
        Ok(summary)
    }

    /// Replay the selected dead letters (see the module docs of [`crate::dlq`] for why each
    /// entry is atomic).
    pub async fn replay(
        &self,
        selection: &Selection,
        options: &ReplayOptions,
        progress: Progress<'_>,
    ) -> Result<ActionSummary, DlqError> {
        if let Some(ttl) = options.ttl_ms {
            if !(1..=MAX_TTL_MS).contains(&ttl) {
                return Err(DlqError::BadTtl(ttl));
            }
        }
        self.drive(selection, Action::Replay, options, progress)
            .await
    }

    /// Delete the selected dead letters.
    pub async fn purge(
        &self,
        selection: &Selection,
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ActionSummary, DlqError> {
        let options = ReplayOptions {
            dry_run,
            ..ReplayOptions::default()
        };
        self.drive(selection, Action::Purge, &options, progress)
            .await
    }

    /// Select, decide and act in batches. An error before anything was done is returned; one
    /// later ends the run with the summary so far (its batch counted as failed).
    async fn drive(
        &self,
        selection: &Selection,
        action: Action,
        options: &ReplayOptions,
        progress: Progress<'_>,
    ) -> Result<ActionSummary, DlqError> {
        let mut run = Run {
            store: self,
            action,
            options,
            now_ms: now_ms(),
            summary: ActionSummary::new(action, options.dry_run),
            shard: 0,
            batch: Vec::with_capacity(BATCH),
        };
        let walked = match selection {
            Selection::Ids(ids) => {
                // Every id must exist before anything changes: a typo fails the whole command.
                let mut entries = Vec::new();
                let mut seen = BTreeSet::new();
                for id in ids {
                    for (shard, entry) in self.find(id).await? {
                        if seen.insert((shard, entry.id.clone())) {
                            entries.push((shard, entry));
                        }
                    }
                }
                let mut walked = Ok(());
                for (shard, entry) in entries {
                    walked = run.take_from(shard, entry, progress).await;
                    if walked.is_err() {
                        break;
                    }
                }
                walked
            }
            Selection::Matching(filter) => run.walk(filter, progress).await,
        };
        let walked = match walked {
            Ok(()) => run.flush(progress).await,
            err => err,
        };
        match walked {
            Ok(()) => Ok(run.summary),
            Err(e) if run.summary.processed() == 0 => Err(e),
            Err(e) => {
                run.summary.error = Some(e.to_string());
                Ok(run.summary)
            }
        }
    }
}

/// [`DeadLetters::list`] on one source.
async fn list_source(
    source: &dyn Source,
    filter: &Filter,
    after: Option<&str>,
    limit: usize,
    show: &mut (dyn FnMut(&DeadEntry) + Send),
) -> Result<Summary, DlqError> {
    let after = after.map(parse_id).transpose()?;
    let mut pager = Pager::new(filter, after.as_deref());
    let mut summary = Summary::default();
    let mut last_shown = None;
    while !pager.done {
        let want = limit.saturating_sub(summary.shown as usize);
        let page = source.page(&mut pager, filter, want).await?;
        for entry in &page.full {
            summary.add(entry);
            show(entry);
            summary.shown += 1;
            last_shown = Some(entry.id.clone());
        }
        if page.others.matched > 0 && summary.next_after.is_none() {
            summary.next_after = last_shown.clone();
        }
        summary.merge(page.others);
    }
    Ok(summary)
}

/// One replay or purge in progress.
struct Run<'s> {
    store: &'s DeadLetters,
    action: Action,
    options: &'s ReplayOptions,
    now_ms: u64,
    summary: ActionSummary,
    /// The shard of the entries in `batch`.
    shard: usize,
    batch: Vec<DeadEntry>,
}

impl Run<'_> {
    async fn walk(&mut self, filter: &Filter, progress: Progress<'_>) -> Result<(), DlqError> {
        let store = self.store;
        for (shard, source) in store.sources.iter().enumerate() {
            let mut pager = Pager::new(filter, None);
            while !pager.done {
                let page = source.page(&mut pager, filter, PAGE).await?;
                for entry in page.full {
                    self.take_from(shard, entry, progress).await?;
                }
            }
        }
        Ok(())
    }

    /// Take an entry of `shard`: a batch holds one shard's entries only.
    async fn take_from(
        &mut self,
        shard: usize,
        entry: DeadEntry,
        progress: Progress<'_>,
    ) -> Result<(), DlqError> {
        if shard != self.shard {
            self.flush(progress).await?;
            self.shard = shard;
        }
        self.take(entry, progress).await
    }

    async fn take(&mut self, entry: DeadEntry, progress: Progress<'_>) -> Result<(), DlqError> {
        self.summary.matched += 1;
        if self.action == Action::Replay {
            if let Some(why) = entry.skip(self.options.force, self.now_ms) {
                self.summary.skip(why);
                return Ok(());
            }
        }
        self.batch.push(entry);
        if self.batch.len() >= BATCH {
            self.flush(progress).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, progress: Progress<'_>) -> Result<(), DlqError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let source = &self.store.sources[self.shard];
        let acted = if self.options.dry_run {
            Ok(vec![true; batch.len()])
        } else {
            match self.action {
                Action::Replay => source.replay(&batch, self.options).await,
                Action::Purge => source.purge(&batch).await,
            }
        };
        let acted = match acted {
            Ok(acted) => acted,
            Err(e) => {
                self.summary.failed += batch.len() as u64;
                return Err(e);
            }
        };
        for (entry, done) in batch.iter().zip(acted) {
            if done {
                self.summary.did(entry.reason());
            } else {
                self.summary.skip(super::Skip::Gone);
            }
        }
        progress(&self.summary);
        Ok(())
    }
}
