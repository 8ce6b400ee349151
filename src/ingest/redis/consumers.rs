//! Consumer hygiene (key `<p>calls`: its group's consumers). Every process reads under a name of
//! its own (`<host>-<pid>` by default), so each restart or rollout adds a consumer to the group,
//! and Redis keeps every consumer until it is deleted. During its sweep for stale entries
//! ([`crate::ingest::CallQueue::claim_stale`]), at most every [`sweep_every`] per shard, a daemon
//! deletes (`XGROUP DELCONSUMER`, by `forget_idle.lua`) the consumers of the group that hold no
//! pending entry and have been idle for at least `stream.consumer_idle_delete_ms` — never its own
//! name, and never one that holds entries: the check and the delete run in one script, since
//! deleting a consumer drops its pending entries for good (the Redis docs of XGROUP
//! DELCONSUMER).
//!
//! A dead daemon's consumer loses its entries to other consumers' reclaims after
//! `stream.claim_idle_ms` and is deleted once idle for the threshold. Before Redis 7.2 a
//! consumer's `idle` counts from its last read that delivered something, so the consumer of a
//! live daemon on a quiet stream can be deleted too: it holds nothing, and its next read creates
//! it again.

use std::time::{Duration, Instant};

use super::{is_no_group, RedisCallQueue};

/// Consumers deleted per sweep at most: one sweep stays a short script however many piled up.
const MOST_PER_SWEEP: usize = 1_000;
/// The longest time between two sweeps of one shard.
const LONGEST_SWEEP_GAP: Duration = Duration::from_secs(60);

/// How often a daemon sweeps one shard for a threshold of `idle`: once a minute, or twice per
/// threshold when that is shorter (tests use thresholds of seconds).
pub(super) fn sweep_every(idle: Duration) -> Duration {
    (idle / 2).min(LONGEST_SWEEP_GAP)
}

impl RedisCallQueue {
    /// Delete the group's idle consumers that hold nothing, when a sweep is due. A failure is
    /// logged, never returned: the entries a reclaim took are in hand, and the next sweep tries
    /// again.
    pub(super) async fn forget_idle_consumers(&self) {
        let idle = self.options.consumer_idle_delete;
        {
            let mut last = self.last_sweep.lock().expect("sweep lock");
            let now = Instant::now();
            if last.is_some_and(|at| now < at + sweep_every(idle)) {
                return;
            }
            *last = Some(now);
        }
        let mut invocation = self.forget_idle.key(&self.keys.calls);
        invocation
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
            .arg(MOST_PER_SWEEP);
        match invocation
            .invoke_async::<Vec<Vec<u8>>>(&mut self.conn.clone())
            .await
        {
            Ok(deleted) => {
                for name in deleted {
                    tracing::info!(
                        consumer = %String::from_utf8_lossy(&name),
                        group = %self.options.group,
                        stream = %self.keys.calls,
                        "deleted a consumer of the group that held no entry and was idle for longer than stream.consumer_idle_delete_ms"
                    );
                }
            }
            // No group, no consumers: the next read creates the group again.
            Err(e) if is_no_group(&e) => {}
            Err(e) => tracing::warn!(
                error = %e,
                stream = %self.keys.calls,
                "deleting idle consumers failed; the next sweep tries again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_swept_once_a_minute_or_twice_per_threshold() {
        assert_eq!(
            sweep_every(Duration::from_secs(3_600)),
            Duration::from_secs(60)
        );
        assert_eq!(sweep_every(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
