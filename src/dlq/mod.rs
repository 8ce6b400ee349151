//! Dead letters for on-call engineers (SPEC §7, issue #9): list, show, replay and purge the
//! entries of the dead-letter stream. One implementation serves `callpush dlq …` and the admin
//! routes `/v1/dead-letters…`, so both select the same entries and answer with the same
//! [`Summary`] and [`ActionSummary`], over either backend's dead letters (`source`: Redis in
//! `store`, the in-memory queue of `callpush dev` in `memory`; `walk` drives both).
//!
//! Keys (`<p>` is `redis.key_prefix`):
//! - `<p>dead` — read with `XRANGE` in pages of [`PAGE`], filtered inside Redis by a read-only
//!   script (`scan.lua`; never the whole stream at once: it may hold a million entries), `XDEL`
//!   by purge and replay;
//! - `<p>calls` — replay `XADD`s the original event again (`MAXLEN ~ stream.max_len`, as
//!   `callpush enqueue` does).
//!
//! Replay is atomic per entry: one Lua script (`replay.lua`) per batch of [`BATCH`] entries
//! checks that each dead letter still exists, adds its event to the calls stream and deletes it,
//! so a replay killed at any point leaves each entry either replayed or still dead, never both
//! and never neither, and two replays running at once never add one entry twice. With shards
//! (`stream.shards`, Redis Cluster) each shard has its own `<p>{<tag>}dead` beside its calls
//! stream, so the script stays in one slot (see `store`).

pub mod filter;
mod memory;
mod merge;
mod page;
mod source;
mod store;
mod summary;
mod walk;

use serde_json::{Map, Value};

use crate::backend::BackendError;
use crate::domain::rfc3339_ms;
use crate::event::{stream_id_ms, DEFAULT_TTL_MS, MAX_TTL_MS};

pub use filter::Filter;
pub use summary::{Action, ActionSummary, Stamp, Summary};
pub use walk::{DeadLetters, Progress, ReplayOptions, Selection};

/// Entries read (and filtered inside Redis) per round trip.
pub const PAGE: usize = 500;
/// Entries replayed or purged per script call (each entry atomic; a batch saves round trips).
pub const BATCH: usize = 50;

/// The fields a dead letter adds to the original event, in the order `show` prints them
/// (`truncated`: what the dead letter's bounds left out of the event, `crate::outcome`).
pub const OWN_FIELDS: [&str; 7] = [
    "reason",
    "detail",
    "attempts",
    "failed_at",
    "source_id",
    "replayed_from",
    crate::outcome::TRUNCATED,
];

/// Why a dead-letter command failed. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Not a stream id.
    #[error("malformed dead-letter id {0:?}: expected <ms>-<seq>, e.g. 1764727200000-0")]
    BadId(String),
    /// No dead letter with this id.
    #[error("no dead letter with id {0}")]
    NotFound(String),
    /// A time or duration that does not parse.
    #[error("{field} {value:?} {problem}")]
    BadTime {
        /// The option or parameter (`since`, `until`, `before`).
        field: &'static str,
        /// What was given.
        value: String,
        /// Why it is refused.
        problem: String,
    },
    /// `ttl_ms` out of range.
    #[error("ttl_ms {0} is out of range: 1 to {MAX_TTL_MS}")]
    BadTtl(u64),
    /// What to act on is missing or contradictory.
    #[error("{0}")]
    Selection(&'static str),
    /// Redis failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<redis::RedisError> for DlqError {
    fn from(e: redis::RedisError) -> Self {
        DlqError::Backend(e.into())
    }
}

/// One dead letter: its id in the dead-letter stream and its fields in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEntry {
    /// The dead letter's stream id (its time is when the event was dead-lettered).
    pub id: String,
    /// The original event's fields, then the dead letter's own.
    pub fields: Vec<(String, String)>,
}

/// Why a replay left an entry alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// An `incoming` call whose original deadline passed (needs `force`).
    DeadlinePassed,
    /// A `malformed` entry: replaying it fails again (needs `force`).
    Malformed,
    /// Replayed or purged by someone else between reading and acting.
    Gone,
}

impl Skip {
    /// The name in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::DeadlinePassed => "deadline_passed",
            Skip::Malformed => "malformed",
            Skip::Gone => "gone",
        }
    }
}

impl DeadEntry {
    /// The first value of `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The original event's fields, without the dead letter's own (and without an earlier
    /// `replayed_from`).
    pub fn original(&self) -> impl Iterator<Item = &(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
    }

    /// The `reason`, or `unknown` for an entry that has none (not written by callpush).
    pub fn reason(&self) -> &str {
        self.field("reason").unwrap_or("unknown")
    }

    /// When it was dead-lettered: `failed_at`, else the stream id's time.
    pub fn failed_at(&self) -> String {
        self.field("failed_at")
            .map(str::to_string)
            .unwrap_or_else(|| rfc3339_ms(stream_id_ms(&self.id).unwrap_or(0)))
    }

    /// The event's own `ttl_ms` when it is a valid one.
    fn own_ttl_ms(&self) -> Option<u64> {
        self.field("ttl_ms")
            .and_then(|t| t.parse().ok())
            .filter(|t| (1..=MAX_TTL_MS).contains(t))
    }

    /// Whether a replay at `now_ms` without `force` must leave this entry alone.
    pub fn skip(&self, force: bool, now_ms: u64) -> Option<Skip> {
        if force {
            return None;
        }
        if self.reason() == "malformed" {
            return Some(Skip::Malformed);
        }
        if self.field("type") == Some("incoming") {
            let added = self
                .field("source_id")
                .and_then(stream_id_ms)
                .or_else(|| stream_id_ms(&self.id))
                .unwrap_or(0);
            let deadline = added.saturating_add(self.own_ttl_ms().unwrap_or(DEFAULT_TTL_MS));
            if deadline <= now_ms {
                return Some(Skip::DeadlinePassed);
            }
        }
        None
    }

    /// The fields a replay adds to the calls stream: the original ones with a fresh `ttl_ms`
    /// (`ttl_ms`, else the event's own, else the default) and `replayed_from` = this id.
    pub fn replay_fields(&self, ttl_ms: Option<u64>) -> Vec<(String, String)> {
        let ttl = ttl_ms
            .or_else(|| self.own_ttl_ms())
            .unwrap_or(DEFAULT_TTL_MS);
        let mut out: Vec<(String, String)> = self
            .original()
            .filter(|(k, _)| k != "ttl_ms")
            .cloned()
            .collect();
        out.push(("ttl_ms".into(), ttl.to_string()));
        out.push(("replayed_from".into(), self.id.clone()));
        out
    }

    /// The JSON form the CLI (`--json`) and the admin API share: `id`, the original fields
    /// under `event`, then the dead letter's own fields (`attempts` as a number).
    pub fn to_json(&self) -> Value {
        let mut event = Map::new();
        for (k, v) in self.original() {
            event
                .entry(k.clone())
                .or_insert_with(|| Value::from(v.clone()));
        }
        let mut out = Map::new();
        out.insert("id".into(), Value::from(self.id.clone()));
        out.insert("event".into(), Value::Object(event));
        for name in OWN_FIELDS {
            if let Some(v) = self.field(name) {
                let value = match (name, v.parse::<u64>()) {
                    ("attempts", Ok(n)) => Value::from(n),
                    _ => Value::from(v),
                };
                out.insert(name.into(), value);
            }
        }
        Value::Object(out)
    }
}

/// What a replay or purge acts on, from what the operator gave: ids alone, or a filter with a
/// reason, or `all` (which the filters may still narrow). `all` is also what a purge's
/// `before` counts as.
pub fn select(ids: Vec<String>, filter: Filter, all: bool) -> Result<Selection, DlqError> {
    if !ids.is_empty() {
        if all || filter != Filter::default() {
            return Err(DlqError::Selection(
                "dead-letter ids cannot be combined with a reason, all, or filters",
            ));
        }
        let ids = ids
            .iter()
            .map(|id| filter::parse_id(id))
            .collect::<Result<_, _>>()?;
        return Ok(Selection::Ids(ids));
    }
    if filter.reason.is_none() && !all {
        return Err(DlqError::Selection(
            "choose the dead letters: ids, a reason, or all",
        ));
    }
    Ok(Selection::Matching(filter))
}

#[cfg(test)]
mod tests;
