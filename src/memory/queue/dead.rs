//! The in-memory dead-letter stream as `crate::dlq` reads and changes it: ranges in `XRANGE`
//! syntax, replay (each entry back onto the calls stream and out of the dead letters under one
//! lock, so as atomic as `replay.lua`) and delete.

use std::ops::Bound;

use super::{format_id, parse_id, Id, MemoryCallQueue};
use crate::event::StreamEntry;

/// One `XRANGE` bound: `-`/`+`, `<ms>-<seq>`, `<ms>` (the first or last id of that
/// millisecond), `(` for exclusive. `None` when it does not parse.
fn bound(raw: &str, start: bool) -> Option<Bound<Id>> {
    if raw == "-" || raw == "+" {
        return Some(Bound::Unbounded);
    }
    let (exclusive, id) = match raw.strip_prefix('(') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let id = match (id.contains('-'), start) {
        (true, _) | (false, true) => parse_id(id)?,
        (false, false) => (id.parse().ok()?, u64::MAX),
    };
    Some(if exclusive {
        Bound::Excluded(id)
    } else {
        Bound::Included(id)
    })
}

impl MemoryCallQueue {
    /// The dead-letter stream, oldest first.
    pub fn dead_letters(&self) -> Vec<StreamEntry> {
        self.lock()
            .dead
            .iter()
            .map(|(id, fields)| StreamEntry::from_slice(format_id(*id), fields))
            .collect()
    }

    /// Up to `count` dead letters from `start` to `end` (`XRANGE` bounds), oldest first.
    pub(crate) fn dead_range(&self, start: &str, end: &str, count: usize) -> Vec<StreamEntry> {
        let (Some(from), Some(to)) = (bound(start, true), bound(end, false)) else {
            return Vec::new();
        };
        // BTreeMap::range panics on a reversed range; XRANGE answers nothing.
        let empty = match (from, to) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a >= b
            }
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        self.lock()
            .dead
            .range((from, to))
            .take(count)
            .map(|(id, fields)| StreamEntry::from_slice(format_id(*id), fields))
            .collect()
    }

    /// For each `(dead-letter id, event fields)`: when the dead letter still exists, add the
    /// event to the calls stream and (unless `keep`) delete the dead letter; the new calls id,
    /// or `None` when it was gone (replayed or purged by someone else: never added twice).
    pub(crate) fn replay_dead(
        &self,
        batch: Vec<(String, Vec<(String, String)>)>,
        keep: bool,
    ) -> Vec<Option<String>> {
        let cap = self.shared.limits.calls;
        let added = {
            let mut s = self.lock();
            batch
                .into_iter()
                .map(|(id, fields)| {
                    let id = parse_id(&id).filter(|id| s.dead.contains_key(id))?;
                    let new = s.add_call(fields, cap);
                    if !keep {
                        s.dead.remove(&id);
                    }
                    Some(format_id(new))
                })
                .collect::<Vec<_>>()
        };
        if added.iter().any(Option::is_some) {
            self.shared.added.notify_waiters();
        }
        added
    }

    /// Delete dead letters; per id, whether it was there.
    pub(crate) fn delete_dead(&self, ids: &[&str]) -> Vec<bool> {
        let mut s = self.lock();
        ids.iter()
            .map(|id| parse_id(id).is_some_and(|id| s.dead.remove(&id).is_some()))
            .collect()
    }

    /// Add a dead letter as if the event had been dead-lettered at `at_ms` (seeding dead
    /// letters in tests and demos); its id.
    pub fn add_dead_letter_at(&self, at_ms: u64, fields: Vec<(String, String)>) -> String {
        let cap = self.shared.limits.dead;
        let mut s = self.lock();
        let seq = s
            .dead
            .range((at_ms, 0)..=(at_ms, u64::MAX))
            .next_back()
            .map_or(0, |(id, _)| id.1 + 1);
        s.add_dead((at_ms, seq), fields, cap);
        format_id((at_ms, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_xrange_reads_them() {
        assert_eq!(bound("-", true), Some(Bound::Unbounded));
        assert_eq!(bound("+", false), Some(Bound::Unbounded));
        assert_eq!(bound("5-2", true), Some(Bound::Included((5, 2))));
        assert_eq!(bound("(5-2", true), Some(Bound::Excluded((5, 2))));
        assert_eq!(bound("5", true), Some(Bound::Included((5, 0))));
        assert_eq!(bound("5", false), Some(Bound::Included((5, u64::MAX))));
        assert_eq!(bound("x", false), None);
    }
}
