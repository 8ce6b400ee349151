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
//! the slot of its calls stream, so a replay (dead → calls, one script) stays in one slot. A
//! listing reads every shard and merges by id (entry time, `super::merge`); a replay or purge
//! walks shard after shard. Ids are per stream: an id given to `get`, `replay` or `purge` is
//! looked up in every shard, and acts on each dead letter holding it.

use std::collections::BTreeSet;

use crate::redis_conn::RedisConn;
use redis::{Script, Value};

use super::filter::{parse_id, Filter};
use super::merge;
use super::page::{Page, Pager};
use super::{Action, ActionSummary, DeadEntry, DlqError, Summary, BATCH, PAGE};
use crate::domain::now_ms;
use crate::event::MAX_TTL_MS;
use crate::ingest::redis::read_range;
use crate::redis_conn::{Keys, Layout};

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

/// The dead-letter streams of one Redis (or cluster) and key prefix.
pub struct DeadLetters {
    conn: RedisConn,
    /// Every shard's keys (one without `stream.shards`).
    shards: Vec<Keys>,
    calls_max_len: u64,
    scan: Script,
    replay: Script,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead letters under `keys`; replays add to the calls stream with `MAXLEN ~
    /// calls_max_len` (`stream.max_len`).
    pub fn new(conn: RedisConn, keys: Keys, calls_max_len: u64) -> DeadLetters {
        DeadLetters::sharded(conn, vec![keys], calls_max_len)
    }

    /// The dead letters of every shard of `layout`.
    pub fn with_layout(conn: RedisConn, layout: &Layout, calls_max_len: u64) -> DeadLetters {
        DeadLetters::sharded(conn, layout.shards().to_vec(), calls_max_len)
    }

    fn sharded(conn: RedisConn, shards: Vec<Keys>, calls_max_len: u64) -> DeadLetters {
        DeadLetters {
            conn,
            shards,
            calls_max_len,
            scan: Script::new(include_str!("scan.lua")),
            replay: Script::new(include_str!("replay.lua")),
        }
    }

    /// The next page of `pager`'s range, filtered in Redis (`scan.lua`): up to `want` matches in
    /// full, the other matches only counted.
    async fn page(
        &self,
        keys: &Keys,
        pager: &mut Pager,
        filter: &Filter,
        want: usize,
    ) -> Result<Page, DlqError> {
        if pager.done {
            return Ok(Page::default());
        }
        let any = |f: &Option<String>| f.clone().unwrap_or_default();
        let value: Value = self
            .scan
            .key(&keys.dead)
            .arg(&pager.start)
            .arg(&pager.end)
            .arg(PAGE)
            .arg(want)
            .arg(any(&filter.reason))
            .arg(any(&filter.to))
            .arg(any(&filter.call_sid))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let page = Page::decode(&value)?;
        pager.done = page.read < PAGE;
        if !page.last_read.is_empty() {
            pager.start = format!("({}", page.last_read);
        }
        Ok(page)
    }

    /// One dead letter by id (the first shard's holding it).
    pub async fn get(&self, id: &str) -> Result<DeadEntry, DlqError> {
        let mut found = self.find(id).await?;
        Ok(found.swap_remove(0).1)
    }

    /// Every shard's dead letter with `id`, with its shard; at least one.
    async fn find(&self, id: &str) -> Result<Vec<(usize, DeadEntry)>, DlqError> {
        let id = parse_id(id)?;
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for (shard, keys) in self.shards.iter().enumerate() {
            let found = read_range(&mut conn, &keys.dead, &id, &id, 1).await?;
            out.extend(found.into_iter().map(|e| {
                let entry = DeadEntry {
                    id: e.id,
                    fields: e.fields,
                };
                (shard, entry)
            }));
        }
        if out.is_empty() {
            return Err(DlqError::NotFound(id));
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
        if let [keys] = self.shards.as_slice() {
            return self.list_shard(keys, filter, after, limit, show).await;
        }
        let mut listings = Vec::new();
        for keys in &self.shards {
            let mut shown = Vec::new();
            let summary = self
                .list_shard(keys, filter, after, limit, &mut |e| shown.push(e.clone()))
                .await?;
            listings.push((shown, summary));
        }
        let (shown, summary) = merge::listings(listings, limit);
        shown.iter().for_each(show);
        Ok(summary)
    }

    /// [`DeadLetters::list`] on one shard.
    async fn list_shard(
        &self,
        keys: &Keys,
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
            let page = self.page(keys, &mut pager, filter, want).await?;
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
        for (shard, keys) in store.shards.iter().enumerate() {
            let mut pager = Pager::new(filter, None);
            while !pager.done {
                let page = store.page(keys, &mut pager, filter, PAGE).await?;
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
        let acted = if self.options.dry_run {
            Ok(vec![true; batch.len()])
        } else {
            match self.action {
                Action::Replay => self.replay(&batch).await,
                Action::Purge => self.purge(&batch).await,
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

    /// The keys of the batch's shard: a replay goes back to the calls stream of the shard the
    /// dead letter is in (one slot), which is the shard of its `to`.
    fn keys(&self) -> &Keys {
        &self.store.shards[self.shard]
    }

    /// One script call for the batch; per entry, whether it was replayed (else it was gone).
    async fn replay(&self, batch: &[DeadEntry]) -> Result<Vec<bool>, DlqError> {
        let mut invocation = self.store.replay.prepare_invoke();
        invocation
            .key(&self.keys().dead)
            .key(&self.keys().calls)
            .arg(self.store.calls_max_len)
            .arg(if self.options.keep { "1" } else { "0" });
        for entry in batch {
            let fields = entry.replay_fields(self.options.ttl_ms);
            invocation.arg(&entry.id).arg(fields.len() * 2);
            for (k, v) in fields {
                invocation.arg(k).arg(v);
            }
        }
        let added: Vec<String> = invocation
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        Ok(added.iter().map(|id| !id.is_empty()).collect())
    }

    /// XDEL each entry (pipelined); per entry, whether it was still there.
    async fn purge(&self, batch: &[DeadEntry]) -> Result<Vec<bool>, DlqError> {
        let mut pipe = redis::pipe();
        for entry in batch {
            pipe.cmd("XDEL").arg(&self.keys().dead).arg(&entry.id);
        }
        let deleted: Vec<i64> = pipe.query_async(&mut self.store.conn.clone()).await?;
        Ok(deleted.into_iter().map(|n| n > 0).collect())
    }
}
