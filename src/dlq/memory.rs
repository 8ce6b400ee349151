//! The dead letters of the in-memory backend (`callpush dev`): the same pages, replay and purge
//! as on Redis, over [`MemoryCallQueue`]'s dead-letter stream. A replay puts each event back on
//! the same in-memory calls stream the daemon reads, under the queue's one lock per batch, so
//! each entry is replayed at most once even with two replays running at once.

use super::filter::{parse_id, Filter};
use super::page::{Page, Pager};
use super::source::Source;
use super::{DeadEntry, DlqError, ReplayOptions, PAGE};
use crate::memory::MemoryCallQueue;

/// The dead-letter stream of one in-memory queue.
pub(super) struct MemorySource {
    pub(super) queue: MemoryCallQueue,
}

#[async_trait::async_trait]
impl Source for MemorySource {
    async fn page(
        &self,
        pager: &mut Pager,
        filter: &Filter,
        want: usize,
    ) -> Result<Page, DlqError> {
        if pager.done {
            return Ok(Page::default());
        }
        let read = self
            .queue
            .dead_range(&pager.start, &pager.end, PAGE)
            .into_iter()
            .map(DeadEntry::from)
            .collect();
        let page = Page::filtered(read, filter, want);
        pager.advance(&page);
        Ok(page)
    }

    async fn get(&self, id: &str) -> Result<DeadEntry, DlqError> {
        let id = parse_id(id)?;
        self.queue
            .dead_range(&id, &id, 1)
            .into_iter()
            .next()
            .map(DeadEntry::from)
            .ok_or(DlqError::NotFound(id))
    }

    async fn replay(
        &self,
        batch: &[DeadEntry],
        options: &ReplayOptions,
    ) -> Result<Vec<bool>, DlqError> {
        let events = batch
            .iter()
            .map(|e| (e.id.clone(), e.replay_fields(options.ttl_ms)))
            .collect();
        let added = self.queue.replay_dead(events, options.keep);
        Ok(added.iter().map(Option::is_some).collect())
    }

    async fn purge(&self, batch: &[DeadEntry]) -> Result<Vec<bool>, DlqError> {
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        Ok(self.queue.delete_dead(&ids))
    }
}
