//! One page of the dead-letter stream as `scan.lua` reads it (see [`super::store`] for the
//! paging strategy): the cursor over an id range, and the script's reply decoded — or the same
//! page made from entries read in order ([`Page::filtered`], the in-memory source).

use redis::Value;

use super::filter::{id_key, Filter};
use super::{DeadEntry, DlqError, Stamp, Summary, PAGE};
use crate::backend::BackendError;
use crate::ingest::redis::decode_entries;

/// A cursor over an id range of the dead-letter stream.
pub(super) struct Pager {
    pub(super) start: String,
    pub(super) end: String,
    pub(super) done: bool,
}

impl Pager {
    pub(super) fn new(filter: &Filter, after: Option<&str>) -> Pager {
        let since = filter.since.clone().unwrap_or_else(|| "-".into());
        let start = match after {
            Some(a) if filter.since.is_none() || id_key(a) >= id_key(&since) => format!("({a}"),
            _ => since,
        };
        Pager {
            start,
            end: filter.until.clone().unwrap_or_else(|| "+".into()),
            done: false,
        }
    }

    /// Move past `page`: the next one starts after its last id; a short page was the last.
    pub(super) fn advance(&mut self, page: &Page) {
        self.done = page.read < PAGE;
        if !page.last_read.is_empty() {
            self.start = format!("({}", page.last_read);
        }
    }
}

/// What `scan.lua` answers for one page.
#[derive(Debug, Default)]
pub(super) struct Page {
    /// The last id read, where the next page starts after.
    pub(super) last_read: String,
    /// Entries read (matching or not).
    pub(super) read: usize,
    /// The first matches, in full.
    pub(super) full: Vec<DeadEntry>,
    /// The other matches, counted.
    pub(super) others: Summary,
}

impl Page {
    /// What `scan.lua` answers for the entries `read` (one page, oldest first): the first
    /// `want` matches of `filter` in full, the others counted.
    pub(super) fn filtered(read: Vec<DeadEntry>, filter: &Filter, want: usize) -> Page {
        let mut page = Page {
            last_read: read.last().map(|e| e.id.clone()).unwrap_or_default(),
            read: read.len(),
            ..Page::default()
        };
        for entry in read.into_iter().filter(|e| filter.matches(e)) {
            if page.full.len() < want {
                page.full.push(entry);
            } else {
                page.others.add(&entry);
            }
        }
        page
    }

    pub(super) fn decode(value: &Value) -> Result<Page, DlqError> {
        let corrupt = || DlqError::Backend(BackendError::Corrupt(format!("scan reply {value:?}")));
        let text = |v: &Value| redis::from_redis_value_ref::<String>(v).map_err(|_| corrupt());
        let Value::Array(parts) = value else {
            return Err(corrupt());
        };
        let [last_read, read, full, counts, first, last] = parts.as_slice() else {
            return Err(corrupt());
        };
        let mut others = Summary::default();
        if let Value::Array(flat) = counts {
            for pair in flat.chunks(2) {
                let [reason, n] = pair else {
                    return Err(corrupt());
                };
                let n = redis::from_redis_value_ref::<u64>(n).map_err(|_| corrupt())?;
                others.matched += n;
                others.by_reason.insert(text(reason)?, n);
            }
        }
        let stamp = |v: &Value| -> Result<Option<Stamp>, DlqError> {
            let Value::Array(pair) = v else {
                return Ok(None);
            };
            let [id, failed_at] = pair.as_slice() else {
                return Ok(None);
            };
            // No `failed_at` field: the entry's time stands in (DeadEntry::failed_at).
            let fields = match text(failed_at)? {
                f if f.is_empty() => Vec::new(),
                f => vec![("failed_at".to_string(), f)],
            };
            let entry = DeadEntry {
                id: text(id)?,
                fields,
            };
            Ok(Some(Stamp {
                failed_at: entry.failed_at(),
                id: entry.id,
            }))
        };
        others.oldest = stamp(first)?;
        others.newest = stamp(last)?;
        Ok(Page {
            last_read: text(last_read)?,
            read: redis::from_redis_value_ref::<usize>(read).map_err(|_| corrupt())?,
            full: decode_entries(full)?
                .into_iter()
                .map(DeadEntry::from)
                .collect(),
            others,
        })
    }
}
