//! The sections of the event path, in its order: `[stream]` (ingest), `[workers]`, `[retry]`
//! and `[limits]` (dispatch), `[bindings]` and its feed, `[results]`, `[dead_letters]`, and
//! `[shutdown]`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[stream]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Consumer group name.
    pub group: String,
    /// This consumer's name (default: host name and process id).
    pub consumer: Option<String>,
    /// Entries read per XREADGROUP.
    pub batch_size: usize,
    /// How long one XREADGROUP blocks waiting for entries, in milliseconds.
    pub block_ms: u64,
    /// Reclaim entries another consumer left pending this long, in milliseconds (at least
    /// [`MIN_CLAIM_IDLE_MS`](super::MIN_CLAIM_IDLE_MS); below
    /// [`SUGGESTED_MIN_CLAIM_IDLE_MS`](super::SUGGESTED_MIN_CLAIM_IDLE_MS) the daemon warns at
    /// start-up).
    pub claim_idle_ms: u64,
    /// Approximate cap of the calls stream's length (XADD MAXLEN ~) for entries callpush adds.
    pub max_len: u64,
    /// How many calls streams events are spread over (1..=`MAX_SHARDS`); an event's shard is
    /// CRC-32 of its `to` mod `shards` (docs/operations.md). 1 keeps the unsharded key names.
    pub shards: u32,
    /// A consumer of the group that holds no pending entry and has been idle this long, in
    /// milliseconds, is deleted by whichever daemon notices (docs/runbook.md, "Consumers of the
    /// group"). At least `claim_idle_ms`; by default the larger of one hour and ten times
    /// `claim_idle_ms` ([`StreamSettings::consumer_idle_delete`]).
    pub consumer_idle_delete_ms: Option<u64>,
}

impl StreamSettings {
    /// `consumer_idle_delete_ms`, or its default: the larger of one hour and ten times
    /// `claim_idle_ms`. An hour after a daemon stopped, its entries have long been reclaimed
    /// (after `claim_idle_ms`) and its name has stayed in `XINFO CONSUMERS` for whoever looks
    /// into why it stopped; the group keeps at most one consumer per restart per hour.
    pub fn consumer_idle_delete(&self) -> std::time::Duration {
        let default = 3_600_000u64.max(self.claim_idle_ms.saturating_mul(10));
        std::time::Duration::from_millis(self.consumer_idle_delete_ms.unwrap_or(default))
    }
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            group: "callpush".into(),
            consumer: None,
            batch_size: 256,
            block_ms: 2_000,
            claim_idle_ms: 10_000,
            max_len: 1_000_000,
            shards: 1,
            consumer_idle_delete_ms: None,
        }
    }
}

/// `[workers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Pushes in flight at once; reading the stream pauses while all are taken.
    pub max_in_flight: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_in_flight: 4096,
        }
    }
}

/// `[retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// First backoff, in milliseconds (full jitter: a random wait up to this).
    pub base_ms: u64,
    /// Longest backoff, in milliseconds.
    pub max_ms: u64,
    /// Attempts per device, the first included.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts: 6,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Where the callee limit and the credentials' `rate_limit_per_sec` are counted: `daemon`
    /// (each daemon counts its own share) or `cluster` (in Redis, shared by every daemon).
    pub scope: LimitScope,
    /// Call events per callee per minute; the excess is dead-lettered as `rate_limited`.
    pub calls_per_identity_per_min: u32,
    /// Registrations per identity per minute.
    pub registrations_per_identity_per_min: u32,
    /// Registrations per client address per minute.
    pub registrations_per_address_per_min: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            scope: LimitScope::Daemon,
            calls_per_identity_per_min: 60,
            registrations_per_identity_per_min: 30,
            registrations_per_address_per_min: 600,
        }
    }
}

/// `limits.scope`: who counts the dispatch limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Each daemon counts on its own: N daemons let N times the limit through.
    #[default]
    Daemon,
    /// Counted in Redis and shared by every daemon of the group (in-memory `dev`: the daemon).
    Cluster,
}

/// `[bindings]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BindingSettings {
    /// A binding nobody refreshed for this many days is gone.
    pub ttl_days: u32,
    /// Bindings per identity; registering one more evicts the least recently updated.
    pub max_per_identity: usize,
    /// `[bindings.feed]`: the binding feed's webhook (SPEC §11).
    pub feed: FeedSettings,
}

impl Default for BindingSettings {
    fn default() -> Self {
        BindingSettings {
            ttl_days: 365,
            max_per_identity: 20,
            feed: FeedSettings::default(),
        }
    }
}

/// `[bindings.feed]`: POST every binding event to the app backend (docs/closing-the-loop.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    /// Where to POST each event (`http://` or `https://`); off when unset.
    pub webhook_url: Option<String>,
    /// The signing secret (HMAC-SHA256 of `<timestamp>.<body>`); required with `webhook_url`.
    pub secret_file: Option<PathBuf>,
    /// Longest wait between two attempts at one event, ms (the wait doubles from 500 ms).
    pub max_backoff_ms: u64,
    /// An extra root certificate (PEM) for an `https://` webhook behind a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            webhook_url: None,
            secret_file: None,
            max_backoff_ms: 60_000,
            ca_file: None,
        }
    }
}

/// `[results]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResultsSettings {
    /// Write one entry per event to `<prefix>results`.
    pub enabled: bool,
    /// Approximate cap of the results stream's length.
    pub max_len: u64,
}

impl Default for ResultsSettings {
    fn default() -> Self {
        ResultsSettings {
            enabled: true,
            max_len: 100_000,
        }
    }
}

/// `[dead_letters]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterSettings {
    /// Approximate cap of the dead-letter stream's length.
    pub max_len: u64,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings { max_len: 1_000_000 }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long in-flight work may take to finish after SIGTERM, in milliseconds.
    pub grace_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { grace_ms: 10_000 }
    }
}
