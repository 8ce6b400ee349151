//! The dead letters of the in-memory backend (`callpush dev`): the same pages, replay and purge
//! as on Redis, over [`MemoryCallQueue`]'s dead-letter stream. A replay puts each event back on
//! the same in-memory calls stream the daemon reads, under the queue's one lock per batch, so
//! each entry is replayed at most once even with two replays running at once.

use super::filter::Filter;
use super::page::{Page, Pager};
use super::source::{PerEntry, Read, Source};
use super::{DeadEntry, ReplayOptions, PAGE};
use crate::memory::MemoryCallQueue;

/// The dead-letter stream of one in-memory queue.
pub(super) struct MemorySource {
    pub(super) queue: MemoryCallQueue,
}

#[async_trait::async_trait]
impl Source for MemorySource {
    async fn read_page(&self, pager: &Pager, filter: &Filter, want: usize) -> Read<Page> {
        let read = self
            .queue
            .dead_range(&pager.start, &pager.end, PAGE)
            .into_iter()
            .map(DeadEntry::from)
            .collect();
        Ok(Page::filtered(read, filter, want))
    }

    async fn read_one(&self, id: &str) -> Read<Option<DeadEntry>> {
        let found = self.queue.dead_range(id, id, 1);
        Ok(found.into_iter().next().map(DeadEntry::from))
    }

    async fn replay(&self, batch: &[DeadEntry], options: &ReplayOptions) -> PerEntry {
        let events = batch
            .iter()
            .map(|e| (e.id.clone(), e.replay_fields(options.ttl_ms)))
            .collect();
        let added = self.queue.replay_dead(events, options.keep);
        Ok(added.iter().map(Option::is_some).collect())
    }

    async fn purge(&self, batch: &[DeadEntry]) -> PerEntry {
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        Ok(self.queue.delete_dead(&ids))
    }
}
