//! What a listing, a replay and a purge end with: [`Summary`] (what matched) and
//! [`ActionSummary`] (what was done, skipped, failed), the same from the CLI and the admin API.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{DeadEntry, Skip};

/// Where an entry sits in time, for the oldest and newest of a summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    /// The dead letter's id.
    pub id: String,
    /// When it was dead-lettered (RFC 3339).
    pub failed_at: String,
}

/// What a listing matched: how many, per reason, the oldest and the newest (over every match,
/// not only the entries shown).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Entries that matched the filter.
    pub matched: u64,
    /// Entries shown (at most the limit).
    pub shown: u64,
    /// Matches per `reason`.
    pub by_reason: BTreeMap<String, u64>,
    /// The oldest match.
    pub oldest: Option<Stamp>,
    /// The newest match.
    pub newest: Option<Stamp>,
    /// Where the next page starts (`after`) when matches were left out by the limit.
    pub next_after: Option<String>,
}

impl Summary {
    /// Add the matches counted in `later`, which all come after those counted so far.
    pub(crate) fn merge(&mut self, later: Summary) {
        self.matched += later.matched;
        for (reason, n) in later.by_reason {
            *self.by_reason.entry(reason).or_default() += n;
        }
        if self.oldest.is_none() {
            self.oldest = later.oldest;
        }
        if later.newest.is_some() {
            self.newest = later.newest;
        }
    }

    /// Count one match (entries come oldest first).
    pub(crate) fn add(&mut self, entry: &DeadEntry) {
        self.matched += 1;
        *self
            .by_reason
            .entry(entry.reason().to_string())
            .or_default() += 1;
        let stamp = Stamp {
            id: entry.id.clone(),
            failed_at: entry.failed_at(),
        };
        if self.oldest.is_none() {
            self.oldest = Some(stamp.clone());
        }
        self.newest = Some(stamp);
    }
}

/// Replay or purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back onto the calls stream.
    Replay,
    /// Deleted.
    Purge,
}

impl Action {
    /// The past tense, as summaries name the count.
    pub fn done_name(self) -> &'static str {
        match self {
            Action::Replay => "replayed",
            Action::Purge => "purged",
        }
    }
}

/// The end of a replay or purge: what matched, what was done (or would be, in a dry run),
/// what was skipped and why, what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSummary {
    /// Replay or purge.
    pub action: Action,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Entries selected.
    pub matched: u64,
    /// Entries replayed or purged (would be, in a dry run).
    pub done: u64,
    /// Entries done, per `reason`.
    pub by_reason: BTreeMap<String, u64>,
    /// Entries left alone, per why.
    pub skipped: BTreeMap<Skip, u64>,
    /// Entries whose batch failed (Redis); the run stopped there.
    pub failed: u64,
    /// Why the run stopped early.
    pub error: Option<String>,
}

impl ActionSummary {
    pub(crate) fn new(action: Action, dry_run: bool) -> ActionSummary {
        ActionSummary {
            action,
            dry_run,
            matched: 0,
            done: 0,
            by_reason: BTreeMap::new(),
            skipped: BTreeMap::new(),
            failed: 0,
            error: None,
        }
    }

    pub(crate) fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }

    pub(crate) fn did(&mut self, reason: &str) {
        self.done += 1;
        *self.by_reason.entry(reason.to_string()).or_default() += 1;
    }

    /// Entries looked at so far (done, skipped or failed).
    pub fn processed(&self) -> u64 {
        self.done + self.skipped.values().sum::<u64>() + self.failed
    }

    /// The JSON form the CLI and the admin API share, e.g. `{"action": "replay", "dry_run":
    /// false, "matched": 3, "replayed": 2, "skipped": {"deadline_passed": 1}, "failed": 0, …}`.
    pub fn to_json(&self) -> Value {
        let skipped: Map<String, Value> = self
            .skipped
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), Value::from(*v)))
            .collect();
        let mut out = json!({
            "action": match self.action { Action::Replay => "replay", Action::Purge => "purge" },
            "dry_run": self.dry_run,
            "matched": self.matched,
            "skipped": skipped,
            "failed": self.failed,
            "by_reason": self.by_reason,
        });
        out[self.action.done_name()] = Value::from(self.done);
        if let Some(e) = &self.error {
            out["error"] = Value::from(e.clone());
        }
        out
    }
}
