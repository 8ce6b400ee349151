//! The sampler: every few seconds (never per event) it reads the gauges that describe state
//! rather than work done.
//!
//! Redis (read-only, keys of every shard of `crate::redis_conn::Layout`, summed over shards):
//! - `<p>calls`: `XINFO GROUPS` → `callpush_stream_lag` (the group's `lag`, Redis ≥ 7; Redis
//!   reports none after some deletions, and then the last value stays), and, when the group
//!   exists, `XPENDING <p>calls <group>` (summary form) → `callpush_stream_pending`;
//! - `<p>dead`: `XLEN` → `callpush_dead_letters`.
//!
//! Failed commands count in `callpush_redis_errors_total{op}`; an outage is logged when it
//! starts and when it ends, not once per sample.
//!
//! The binding store: `callpush_bindings_undecodable_total` from its count of bindings it
//! skipped because they did not decode.
//!
//! Providers: `callpush_provider_connections` and `callpush_provider_token_refreshes_total` from
//! each [`ProviderProbe`] (counters advance by what the provider counted since the last sample).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_conn::RedisConn;
use redis::{RedisError, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Metrics, ProviderProbe};
use crate::redis_conn::Keys;

/// How often the daemon samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Counts something the sampler turns into a counter (read, never reset).
pub type Count = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The providers' probes of the moment (a reload adds and replaces providers).
pub type Probes = Arc<dyn Fn() -> Vec<Arc<dyn ProviderProbe>> + Send + Sync>;

/// What the sampler reads.
pub struct Sampler {
    metrics: Arc<Metrics>,
    /// `None` with the in-memory backend: only the providers are sampled.
    conn: Option<RedisConn>,
    shards: Vec<Keys>,
    group: String,
    probes: Probes,
    /// Token refreshes already added to the counters, per probe (by its address).
    seen: HashMap<usize, (u64, u64)>,
    /// Undecodable bindings the store skipped, and how many were already counted.
    undecodable: Option<(Count, u64)>,
    failing: bool,
}

impl Sampler {
    /// A sampler of the calls streams' consumer `group` (when there is Redis) over every shard
    /// of `shards`, and of `probes`.
    pub fn new(
        metrics: Arc<Metrics>,
        conn: Option<RedisConn>,
        shards: Vec<Keys>,
        group: String,
        probes: Probes,
    ) -> Sampler {
        let seen = HashMap::new();
        Sampler {
            metrics,
            conn,
            shards,
            group,
            probes,
            seen,
            undecodable: None,
            failing: false,
        }
    }

    /// Also turn the binding store's count of undecodable bindings into
    /// `callpush_bindings_undecodable_total`.
    pub fn counting_undecodable(mut self, count: Count) -> Sampler {
        self.undecodable = Some((count, 0));
        self
    }

    /// Sample now, then every `every`, until `shutdown` is cancelled.
    pub async fn run(mut self, every: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => self.sample().await,
            }
        }
    }

    /// Read every sampled value once.
    pub async fn sample(&mut self) {
        self.sample_providers();
        if let Some((count, seen)) = &mut self.undecodable {
            let now = count();
            self.metrics
                .bindings_undecodable
                .inc_by(now.saturating_sub(*seen));
            *seen = now;
        }
        if self.conn.is_none() {
            return;
        }
        let result = self.sample_redis().await;
        match (result, self.failing) {
            (Ok(()), true) => {
                info!("metrics sampler reads Redis again");
                self.failing = false;
            }
            (Err((op, e)), false) => {
                warn!(op, error = %e, "metrics sampler cannot read Redis; stream gauges are stale until it can");
                self.failing = true;
            }
            _ => {}
        }
    }

    fn sample_providers(&mut self) {
        let probes = (self.probes)();
        let mut seen_now = HashMap::with_capacity(probes.len());
        for probe in &probes {
            let key = Arc::as_ptr(probe) as *const () as usize;
            let seen = seen_now
                .entry(key)
                .or_insert_with(|| self.seen.get(&key).copied().unwrap_or((0, 0)));
            let platform = probe.platform().as_str();
            if let Some(h) = self.metrics.credential(probe.credential()) {
                for (environment, open) in probe.open_connections() {
                    h.connections[super::environment_index(environment)].set(open as i64);
                }
            }
            let (ok, failed) = probe.token_refreshes();
            let refreshes = &self.metrics.token_refreshes;
            refreshes
                .with_label_values(&[platform, "ok"])
                .inc_by(ok.saturating_sub(seen.0));
            refreshes
                .with_label_values(&[platform, "failed"])
                .inc_by(failed.saturating_sub(seen.1));
            *seen = (ok, failed);
        }
        // Probes of replaced providers are forgotten; removed credentials hold no connections.
        self.seen = seen_now;
        let live = probes.iter().map(|p| p.credential()).collect();
        self.metrics.close_connections_except(&live);
    }

    async fn sample_redis(&mut self) -> Result<(), (&'static str, RedisError)> {
        let Some(conn) = self.conn.clone() else {
            return Ok(());
        };
        let mut total = StreamSample::default();
        for keys in &self.shards {
            let one = self.sample_shard(conn.clone(), keys).await?;
            total.dead += one.dead;
            total.pending += one.pending;
            total.lag = match (total.lag, one.lag) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        self.metrics.dead_letters.set(total.dead);
        self.metrics.stream_pending.set(total.pending);
        // A shard whose lag Redis cannot tell leaves the last value.
        if let Some(lag) = total.lag {
            self.metrics.stream_lag.set(lag);
        }
        Ok(())
    }

    async fn sample_shard(
        &self,
        mut conn: RedisConn,
        keys: &Keys,
    ) -> Result<StreamSample, (&'static str, RedisError)> {
        let m = self.metrics.clone();
        let fail = |op: &'static str| {
            let m = m.clone();
            move |e: RedisError| {
                m.redis_error(op);
                (op, e)
            }
        };
        let mut sample = StreamSample {
            lag: Some(0),
            ..StreamSample::default()
        };
        sample.dead = redis::cmd("XLEN")
            .arg(&keys.dead)
            .query_async(&mut conn)
            .await
            .map_err(fail("xlen"))?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(&keys.calls)
            .query_async(&mut conn)
            .await
            .map_err(fail("exists"))?;
        if !exists {
            // No stream yet: nothing waits, and XINFO would answer an error.
            return Ok(sample);
        }
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&keys.calls)
            .query_async(&mut conn)
            .await
            .map_err(fail("xinfo_groups"))?;
        let Some(group) = find_group(&groups, &self.group) else {
            // The group is created when the dispatcher starts reading.
            return Ok(sample);
        };
        sample.lag = group.lag;
        let pending: Value = redis::cmd("XPENDING")
            .arg(&keys.calls)
            .arg(&self.group)
            .query_async(&mut conn)
            .await
            .map_err(fail("xpending"))?;
        sample.pending = pending_count(&pending);
        Ok(sample)
    }
}

/// The gauges of one shard.
#[derive(Debug, Default)]
struct StreamSample {
    dead: i64,
    pending: i64,
    /// `None` when Redis cannot tell (after some deletions).
    lag: Option<i64>,
}

/// The fields of one `XINFO GROUPS` entry the sampler uses.
#[derive(Debug, Default, PartialEq)]
struct GroupInfo {
    lag: Option<i64>,
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// Key/value pairs of one entry, whether Redis sent a RESP2 flat array or a RESP3 map.
fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Array(items) => items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    }
}

fn find_group(groups: &Value, name: &str) -> Option<GroupInfo> {
    let Value::Array(groups) = groups else {
        return None;
    };
    groups.iter().find_map(|g| {
        let fields = pairs(g);
        let field = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| as_str(k) == Some(key))
                .map(|(_, v)| *v)
        };
        (field("name").and_then(as_str) == Some(name)).then(|| GroupInfo {
            lag: field("lag").and_then(as_i64),
        })
    })
}

/// The count of an `XPENDING key group` summary: `[count, first id, last id, consumers]`.
fn pending_count(summary: &Value) -> i64 {
    match summary {
        Value::Array(items) => items.first().and_then(as_i64).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn group_lag_is_read_from_a_resp2_reply_and_nil_lag_is_none() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("name"),
                bulk("other"),
                bulk("lag"),
                Value::Int(9),
            ]),
            Value::Array(vec![
                bulk("name"),
                bulk("callpush"),
                bulk("lag"),
                Value::Int(3),
            ]),
            Value::Array(vec![bulk("name"), bulk("stale"), bulk("lag"), Value::Nil]),
        ]);
        assert_eq!(
            find_group(&reply, "callpush"),
            Some(GroupInfo { lag: Some(3) })
        );
        assert_eq!(find_group(&reply, "stale"), Some(GroupInfo { lag: None }));
        assert_eq!(find_group(&reply, "missing"), None);
    }

    #[test]
    fn pending_summary_count_is_its_first_element() {
        let reply = Value::Array(vec![Value::Int(4), bulk("1-0"), bulk("2-0"), Value::Nil]);
        assert_eq!(pending_count(&reply), 4);
        assert_eq!(pending_count(&Value::Nil), 0);
    }
}
