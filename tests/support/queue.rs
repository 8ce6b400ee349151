//! The Redis call queue on a test's redis-server, built as a (re)started daemon builds it, and
//! the call events and outcomes the queue tests finish (`tests/redis_queue/`,
//! `tests/queue_isolation.rs`).

use std::time::Duration;

use callpush::config::RedisSettings;
use callpush::event::StreamEntry;
use callpush::ingest::redis::{read_stream, QueueOptions, RedisCallQueue};
use callpush::ingest::CallQueue;
use callpush::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use callpush::redis_conn::{connect_blocking, connect_heartbeat, Keys, RedisConn};
use redis::aio::{ConnectionLike, ConnectionManager};

use super::redis_server::{unique_prefix, RedisServer};

/// The consumer group of the queue tests.
pub const GROUP: &str = "callpush";
/// A blocking read that returns soon when nothing comes.
pub const SHORT_BLOCK: Duration = Duration::from_millis(100);
/// `stream.claim_idle_ms`'s default, for the heartbeat connection.
pub const CLAIM_IDLE: Duration = Duration::from_secs(10);

/// The options of a queue read by `consumer`: results on, every stream capped at 1000, idle
/// consumers deleted after an hour.
pub fn options(consumer: &str) -> QueueOptions {
    QueueOptions {
        group: GROUP.into(),
        consumer: consumer.into(),
        results_enabled: true,
        results_max_len: 1000,
        dead_max_len: 1000,
        calls_max_len: 1000,
        consumer_idle_delete: Duration::from_secs(3_600),
    }
}

/// A queue over `conn` with the keys of `keys`, its blocking and heartbeat connections made from
/// `settings`, as a daemon with the default `stream.claim_idle_ms` makes them.
pub async fn queue_on(
    settings: &RedisSettings,
    conn: impl Into<RedisConn>,
    keys: Keys,
    options: QueueOptions,
) -> RedisCallQueue {
    let blocking = connect_blocking(settings, Duration::from_secs(2))
        .await
        .unwrap();
    let heartbeat = connect_heartbeat(settings, CLAIM_IDLE).await.unwrap();
    RedisCallQueue::new(conn, blocking, heartbeat, keys, options)
}

/// A redis-server and a key prefix of its own.
pub struct Fixture {
    pub redis: RedisServer,
    pub prefix: String,
    pub keys: Keys,
    pub conn: ConnectionManager,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let redis = RedisServer::start().await;
        let prefix = unique_prefix();
        let keys = Keys::new(&prefix).unwrap();
        let conn = redis.conn().await;
        Fixture {
            redis,
            prefix,
            keys,
            conn,
        }
    }

    /// A queue object as a (re)started process makes it, with `options`.
    pub async fn queue_with_options(&self, options: QueueOptions) -> RedisCallQueue {
        let settings = self.redis.settings(&self.prefix);
        // The daemon's own connection (its event path on the wire connection).
        let conn = callpush::redis_conn::connect(&settings).await.unwrap();
        queue_on(&settings, conn, self.keys.clone(), options).await
    }

    /// A queue object as a (re)started process makes it, under the consumer name given.
    pub async fn queue_with(&self, consumer: &str, results_enabled: bool) -> RedisCallQueue {
        self.queue_with_options(QueueOptions {
            results_enabled,
            ..options(consumer)
        })
        .await
    }

    pub async fn queue(&self, consumer: &str) -> RedisCallQueue {
        self.queue_with(consumer, true).await
    }

    /// The queue of `consumer`, its consumer group made sure of.
    pub async fn grouped(&self, consumer: &str) -> RedisCallQueue {
        let q = self.queue(consumer).await;
        q.ensure_group().await.unwrap();
        q
    }

    /// Delete the consumer group, as an operator's `XGROUP DESTROY` does.
    pub async fn destroy_group(&self) {
        self.run(
            redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&self.keys.calls)
                .arg(GROUP),
        )
        .await;
    }

    /// The queue of `consumer` with its group, after adding a call to alice for each of `sids`
    /// and reading them all.
    pub async fn read_calls(
        &self,
        consumer: &str,
        sids: &[&str],
    ) -> (RedisCallQueue, Vec<StreamEntry>) {
        let q = self.queue(consumer).await;
        q.ensure_group().await.unwrap();
        for sid in sids {
            q.enqueue(&call(sid)).await.unwrap();
        }
        let entries = q.read_new(sids.len() + 10, SHORT_BLOCK).await.unwrap();
        assert_eq!(entries.len(), sids.len());
        (q, entries)
    }

    /// The number of entries of the stream `key` (`XLEN`).
    pub async fn len(&self, key: &str) -> usize {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    /// Entries pending in the group, over all consumers.
    pub async fn pending(&self) -> i64 {
        let summary: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(&self.keys.calls)
            .arg(GROUP)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
        summary.0
    }

    pub async fn run(&self, cmd: &mut redis::Cmd) {
        cmd.query_async::<redis::Value>(&mut self.conn.clone())
            .await
            .unwrap();
    }

    /// The first 100 entries of the stream `key`.
    pub async fn stream(&self, key: &str) -> Vec<StreamEntry> {
        read_stream(&mut self.conn.clone(), key, "-", 100)
            .await
            .unwrap()
    }
}

/// The names of the consumers of `group` on the stream `key` (`XINFO CONSUMERS`).
pub async fn consumers(conn: &mut impl ConnectionLike, key: &str, group: &str) -> Vec<String> {
    let infos: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    infos
        .iter()
        .map(|info| redis::from_redis_value_ref::<String>(&info[1]).unwrap())
        .collect()
}

/// A call to alice with the call sid `sid`.
pub fn call(sid: &str) -> Vec<(String, String)> {
    [
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", sid),
        ("from", "+15551234567"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The outcome of a call to alice's one device that rang.
pub fn delivered(sid: &str) -> EventResult {
    EventResult {
        call_sid: sid.into(),
        to: "alice".into(),
        outcome: EventOutcome::Delivered,
        devices: 1,
        delivered: 1,
    }
}

/// Add a call to alice for each of `sids`; their stream ids, in order.
pub async fn enqueue_all(q: &RedisCallQueue, sids: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for sid in sids {
        ids.push(q.enqueue(&call(sid)).await.unwrap());
    }
    ids
}

/// The stream entry `id` of a call to alice with the call sid `sid`.
pub fn entry(id: &str, sid: &str) -> StreamEntry {
    StreamEntry::from_slice(id, &call(sid))
}

/// A dead letter of `reason` after `attempts`, failed at a fixed time.
pub fn dead_letter(reason: DeadReason, detail: &str, attempts: u32) -> DeadLetter {
    DeadLetter {
        reason,
        detail: detail.into(),
        attempts,
        failed_at_ms: 1_700_000_000_000,
    }
}
