//! Where the dead letters are kept: the four operations [`super::DeadLetters`] builds listing,
//! replay and purge on. Redis ([`super::store::RedisSource`], the `<p>dead` stream and its
//! scripts) and this process's memory ([`super::memory::MemorySource`], `callpush dev`)
//! implement them with the same semantics: pages of the same shape, replay atomic per entry
//! (never added twice, never lost), deletes that say whether the entry was still there.

use super::filter::{parse_id, Filter};
use super::page::{Page, Pager};
use super::{DeadEntry, DlqError, ReplayOptions};
use crate::event::StreamEntry;

/// A dead-letter stream entry as either source reads it.
impl From<StreamEntry> for DeadEntry {
    fn from(e: StreamEntry) -> Self {
        DeadEntry {
            fields: e.to_pairs(),
            id: e.id,
        }
    }
}

/// What a read of a source gives.
pub(super) type Read<T> = Result<T, DlqError>;

/// Per entry of a batch, in order: whether it was done (replayed, deleted) or already gone.
pub(super) type PerEntry = Result<Vec<bool>, DlqError>;

/// A dead-letter stream.
#[async_trait::async_trait]
pub(super) trait Source: Send + Sync {
    /// The next page from `pager.start` to `pager.end`: up to `want` matches of `filter` in
    /// full, the other matches only counted.
    async fn read_page(&self, pager: &Pager, filter: &Filter, want: usize) -> Read<Page>;

    /// The entry with this (valid) id, if there is one.
    async fn read_one(&self, id: &str) -> Read<Option<DeadEntry>>;

    /// The next page of `pager`'s range (then advanced): up to `want` matches of `filter` in
    /// full, the other matches only counted; empty once the range is done.
    async fn page(
        &self,
        pager: &mut Pager,
        filter: &Filter,
        want: usize,
    ) -> Result<Page, DlqError> {
        if pager.done {
            return Ok(Page::default());
        }
        let page = self.read_page(pager, filter, want).await?;
        pager.advance(&page);
        Ok(page)
    }

    /// One dead letter by id ([`DlqError::NotFound`] when there is none).
    async fn get(&self, id: &str) -> Result<DeadEntry, DlqError> {
        let id = parse_id(id)?;
        self.read_one(&id).await?.ok_or(DlqError::NotFound(id))
    }

    /// Replay a batch, each entry atomically with `options.keep` and `options.ttl_ms`; per
    /// entry, whether it was replayed (else it was gone).
    async fn replay(&self, batch: &[DeadEntry], options: &ReplayOptions) -> PerEntry;

    /// Delete a batch; per entry, whether it was still there.
    async fn purge(&self, batch: &[DeadEntry]) -> PerEntry;
}
