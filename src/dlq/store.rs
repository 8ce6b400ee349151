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

use std::collections::BTreeSet;

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::filter::{parse_id, Filter};
use super::page::{Page, Pager};
use super::{Action, ActionSummary, DeadEntry, DlqError, Summary, BATCH, PAGE};
use crate::domain::now_ms;
use crate::event::MAX_TTL_MS;
use crate::ingest::redis::read_range;
use crate::redis_conn::Keys;

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

/// The dead-letter stream of one Redis and key prefix.
pub struct DeadLetters {
    conn: ConnectionManager,
    keys: Keys,
    calls_max_len: u64,
    scan: Script,
    replay: Script,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead letters under `keys`; replays add to the calls stream with `MAXLEN ~
    /// calls_max_len` (`stream.max_len`).
    pub fn new(conn: ConnectionManager, keys: Keys, calls_max_len: u64) -> DeadLetters {
        DeadLetters {
            conn,
            keys,
            calls_max_len,
            scan: Script::new(include_str!("scan.lua")),
            replay: Script::new(include_str!("replay.lua")),
        }
    }

    /// The next page of `pager`'s range, filtered in Redis (`scan.lua`): up to `want` matches in
    /// full, the other matches only counted.
    async fn page(
        &self,
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
        let page = Page::decode(&value)?;
        pager.done = page.read < PAGE;
        if !page.last_read.is_empty() {
            pager.start = format!("({}", page.last_read);
        }
        Ok(page)
    }

    /// One dead letter by id.
    pub async fn get(&self, id: &str) -> Result<DeadEntry, DlqError> {
        let id = parse_id(id)?;
        let mut conn = self.conn.clone();
        let found = read_range(&mut conn, &self.keys.dead, &id, &id, 1).await?;
        found
            .into_iter()
            .next()
            .map(|e| DeadEntry {
                id: e.id,
                fields: e.fields,
            })
            .ok_or(DlqError::NotFound(id))
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
        let after = after.map(parse_id).transpose()?;
        let mut pager = Pager::new(filter, after.as_deref());
        let mut summary = Summary::default();
        let mut last_shown = None;
        while !pager.done {
            let want = limit.saturating_sub(summary.shown as usize);
            let page = self.page(&mut pager, filter, want).await?;
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
            batch: Vec::with_capacity(BATCH),
        };
        let walked = match selection {
            Selection::Ids(ids) => {
                // Every id must exist before anything changes: a typo fails the whole command.
                let mut entries = Vec::new();
                let mut seen = BTreeSet::new();
                for id in ids {
                    let entry = self.get(id).await?;
                    if seen.insert(entry.id.clone()) {
                        entries.push(entry);
                    }
                }
                let mut walked = Ok(());
                for entry in entries {
                    walked = run.take(entry, progress).await;
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
    batch: Vec<DeadEntry>,
}

impl Run<'_> {
    async fn walk(&mut self, filter: &Filter, progress: Progress<'_>) -> Result<(), DlqError> {
        let mut pager = Pager::new(filter, None);
        while !pager.done {
            let page = self.store.page(&mut pager, filter, PAGE).await?;
            for entry in page.full {
                self.take(entry, progress).await?;
            }
        }
        Ok(())
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

    /// One script call for the batch; per entry, whether it was replayed (else it was gone).
    async fn replay(&self, batch: &[DeadEntry]) -> Result<Vec<bool>, DlqError> {
        let mut invocation = self.store.replay.prepare_invoke();
        invocation
            .key(&self.store.keys.dead)
            .key(&self.store.keys.calls)
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
            pipe.cmd("XDEL").arg(&self.store.keys.dead).arg(&entry.id);
        }
        let deleted: Vec<i64> = pipe.query_async(&mut self.store.conn.clone()).await?;
        Ok(deleted.into_iter().map(|n| n > 0).collect())
    }
}
