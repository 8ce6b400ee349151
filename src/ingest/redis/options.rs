//! How the queue names itself and caps the streams it writes: [`QueueOptions`] from the
//! settings, and the consumer name a process uses when none is configured.

use std::time::Duration;

use crate::config::Settings;

/// How the queue names itself and caps the streams it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Consumer group (`stream.group`).
    pub group: String,
    /// This process's consumer name (`stream.consumer`, else host name and process id).
    pub consumer: String,
    /// Write results (`results.enabled`).
    pub results_enabled: bool,
    /// `MAXLEN ~` of the results stream (`results.max_len`).
    pub results_max_len: u64,
    /// `MAXLEN ~` of the dead-letter stream (`dead_letters.max_len`).
    pub dead_max_len: u64,
    /// `MAXLEN ~` of the calls stream for entries callpush adds (`stream.max_len`).
    pub calls_max_len: u64,
    /// Consumers of the group idle this long and holding nothing are deleted
    /// (`stream.consumer_idle_delete_ms`, module `consumers`).
    pub consumer_idle_delete: Duration,
}

impl QueueOptions {
    /// The options the settings ask for.
    pub fn from_settings(settings: &Settings) -> QueueOptions {
        QueueOptions {
            group: settings.stream.group.clone(),
            consumer: settings
                .stream
                .consumer
                .clone()
                .unwrap_or_else(default_consumer_name),
            results_enabled: settings.results.enabled,
            results_max_len: settings.results.max_len,
            dead_max_len: settings.dead_letters.max_len,
            calls_max_len: settings.stream.max_len,
            consumer_idle_delete: settings.stream.consumer_idle_delete(),
        }
    }
}

/// `<host name>-<process id>`: stable for one process, distinct between replicas, so a restart
/// with a configured name finds its own pending entries and others are claimed when idle.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "callpush".into());
    format!("{host}-{}", std::process::id())
}
