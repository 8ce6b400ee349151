//! Merging the listings of several dead-letter shards into one, oldest first (by id, which is
//! the entry time): what `DeadLetters::list` shows and counts over every shard.
//!
//! Each shard's listing holds its first `limit` matches after the same `after`, so the first
//! `limit` of their union sorted by id are the first `limit` matches over all shards, and the
//! last of them is where the next page starts.

use super::filter::id_key;
use super::{DeadEntry, Stamp, Summary};

/// One listing of every shard's `(shown, summary)`, showing at most `limit`.
pub(super) fn listings(
    shards: Vec<(Vec<DeadEntry>, Summary)>,
    limit: usize,
) -> (Vec<DeadEntry>, Summary) {
    let mut total = Summary::default();
    let mut shown = Vec::new();
    let mut more = false;
    for (entries, summary) in shards {
        more |= summary.next_after.is_some();
        total.matched += summary.matched;
        for (reason, n) in summary.by_reason {
            *total.by_reason.entry(reason).or_default() += n;
        }
        total.oldest = earliest(total.oldest, summary.oldest, false);
        total.newest = earliest(total.newest, summary.newest, true);
        shown.extend(entries);
    }
    shown.sort_by_key(|e| id_key(&e.id));
    more |= shown.len() > limit;
    shown.truncate(limit);
    total.shown = shown.len() as u64;
    if more {
        total.next_after = shown.last().map(|e| e.id.clone());
    }
    (shown, total)
}

/// The earlier of two stamps (the later one with `latest`).
fn earliest(a: Option<Stamp>, b: Option<Stamp>, latest: bool) -> Option<Stamp> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let a_first = id_key(&a.id) <= id_key(&b.id);
            Some(if a_first != latest { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> DeadEntry {
        DeadEntry {
            id: id.into(),
            fields: vec![("reason".into(), "expired".into())],
        }
    }

    fn listing(ids: &[&str], matched: u64, limit: usize) -> (Vec<DeadEntry>, Summary) {
        let mut summary = Summary::default();
        let mut shown = Vec::new();
        for id in ids {
            summary.add(&entry(id));
        }
        summary.matched = matched;
        for id in ids.iter().take(limit) {
            shown.push(entry(id));
        }
        summary.shown = shown.len() as u64;
        if matched > shown.len() as u64 {
            summary.next_after = shown.last().map(|e| e.id.clone());
        }
        (shown, summary)
    }

    #[test]
    fn shards_merge_oldest_first_and_page_after_the_last_shown() {
        let a = listing(&["5-0", "9-0"], 2, 2);
        let b = listing(&["1-0", "7-0"], 3, 2);
        let (shown, summary) = listings(vec![a, b], 3);
        let ids: Vec<_> = shown.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1-0", "5-0", "7-0"]);
        assert_eq!(summary.matched, 5);
        assert_eq!(summary.shown, 3);
        assert_eq!(summary.next_after.as_deref(), Some("7-0"));
        assert_eq!(summary.oldest.unwrap().id, "1-0");
        assert_eq!(summary.newest.unwrap().id, "9-0");
        assert_eq!(summary.by_reason["expired"], 4);
    }

    #[test]
    fn everything_shown_leaves_no_next_page() {
        let (shown, summary) = listings(vec![listing(&["2-0"], 1, 5), listing(&[], 0, 5)], 5);
        assert_eq!(shown.len(), 1);
        assert_eq!(summary.next_after, None);
    }
}
