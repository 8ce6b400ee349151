//! Where the dead letters are kept: the four operations [`super::DeadLetters`] builds listing,
//! replay and purge on. Redis ([`super::store::RedisSource`], the `<p>dead` stream and its
//! scripts) and this process's memory ([`super::memory::MemorySource`], `callpush dev`)
//! implement them with the same semantics: pages of the same shape, replay atomic per entry
//! (never added twice, never lost), deletes that say whether the entry was still there.

use super::filter::Filter;
use super::page::{Page, Pager};
use super::{DeadEntry, DlqError, ReplayOptions};
use crate::event::StreamEntry;

/// A dead-letter stream entry as either source reads it.
impl From<StreamEntry> for DeadEntry {
    fn from(e: StreamEntry) -> Self {
        DeadEntry {
            id: e.id,
            fields: e.fields,
        }
    }
}

/// A dead-letter stream.
#[async_trait::async_trait]
pub(super) trait Source: Send + Sync {
    /// The next page of `pager`'s range (then advanced): up to `want` matches of `filter` in
    /// full, the other matches only counted.
    async fn page(&self, pager: &mut Pager, filter: &Filter, want: usize)
        -> Result<Page, DlqError>;

    /// One dead letter by id ([`DlqError::NotFound`] when there is none).
    async fn get(&self, id: &str) -> Result<DeadEntry, DlqError>;

    /// Replay a batch, each entry atomically with `options.keep` and `options.ttl_ms`; per
    /// entry, whether it was replayed (else it was gone).
    async fn replay(
        &self,
        batch: &[DeadEntry],
        options: &ReplayOptions,
    ) -> Result<Vec<bool>, DlqError>;

    /// Delete a batch; per entry, whether it was still there.
    async fn purge(&self, batch: &[DeadEntry]) -> Result<Vec<bool>, DlqError>;
}
