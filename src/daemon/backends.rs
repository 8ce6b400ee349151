//! Where the daemon stores: the calls queue, the binding store, the push ledger and the dead
//! letters, on Redis (one stream or a shard per `stream.shards`) or in memory for
//! `callpush dev`; and the Redis connections behind them.

use std::sync::Arc;
use std::time::Duration;

use super::DaemonError;
use crate::bindings::redis::RedisBindingStore;
use crate::bindings::BindingStore;
use crate::config::Settings;
use crate::dispatch::ledger::redis::RedisSentLedger;
use crate::dispatch::ledger::{MemoryLedger, SentLedger};
use crate::dlq::DeadLetters;
use crate::ingest::redis::{QueueOptions, RedisCallQueue, ShardedQueue};
use crate::ingest::CallQueue;
use crate::memory::{MemoryBindingStore, MemoryCallQueue, MemoryLimits};
use crate::redis_conn::{self, Keys, Layout, RedisConn};

/// The Redis URL without a password, for messages.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The key names of the settings' prefix, shards and cluster mode.
pub(super) fn layout(settings: &Settings) -> Result<Layout, DaemonError> {
    Layout::new(
        &settings.redis.key_prefix,
        settings.stream.shards,
        settings.redis.cluster,
    )
    .map_err(|e| DaemonError::Prefix(e.to_string()))
}

/// The per-identity, per-device and per-call key names (the same in every shard).
fn keys(settings: &Settings) -> Result<Keys, DaemonError> {
    Ok(layout(settings)?.first().clone())
}

/// A shared Redis connection of the settings; the error names the URL without its password.
pub(super) async fn connect(settings: &Settings) -> Result<RedisConn, DaemonError> {
    redis_conn::connect(&settings.redis)
        .await
        .map_err(|source| DaemonError::Redis {
            url: redacted_url(&settings.redis.url),
            source,
        })
}

/// The Redis-backed queue and binding store of the settings: one calls stream, or a
/// [`ShardedQueue`] over `stream.shards` streams, each shard with its own blocking connection;
/// the shards share one heartbeat connection for their touches.
pub async fn redis_backends(
    settings: &Settings,
) -> Result<(Arc<dyn CallQueue>, Arc<RedisBindingStore>), DaemonError> {
    let redis_err = |source| DaemonError::Redis {
        url: redacted_url(&settings.redis.url),
        source,
    };
    let layout = layout(settings)?;
    let conn = connect(settings).await?;
    let store = RedisBindingStore::new(
        conn.clone(),
        layout.first().clone(),
        settings.bindings.ttl_days,
        settings.bindings.max_per_identity,
    );
    let options = QueueOptions::from_settings(settings);
    let block = Duration::from_millis(settings.stream.block_ms);
    let claim_idle = Duration::from_millis(settings.stream.claim_idle_ms);
    let heartbeat = redis_conn::connect_heartbeat(&settings.redis, claim_idle)
        .await
        .map_err(redis_err)?;
    let mut shards = Vec::new();
    for keys in layout.shards() {
        let blocking = redis_conn::connect_blocking(&settings.redis, block)
            .await
            .map_err(redis_err)?;
        shards.push(RedisCallQueue::new(
            conn.clone(),
            blocking,
            heartbeat.clone(),
            keys.clone(),
            options.clone(),
        ));
    }
    let queue: Arc<dyn CallQueue> = match shards.len() {
        1 => Arc::new(shards.pop().expect("one shard")),
        _ => Arc::new(ShardedQueue::new(shards)),
    };
    Ok((queue, Arc::new(store)))
}

/// The dead-letter streams of the settings, every shard's (`callpush dlq`).
pub async fn dead_letters(settings: &Settings) -> Result<DeadLetters, DaemonError> {
    redis_dead_letters(settings, connect(settings).await?)
}

pub(super) fn redis_dead_letters(
    settings: &Settings,
    conn: RedisConn,
) -> Result<DeadLetters, DaemonError> {
    Ok(DeadLetters::with_layout(
        conn,
        &layout(settings)?,
        settings.stream.max_len,
    ))
}

/// What the daemon stores in: the calls queue, the binding store, the push ledger and the
/// dead letters, on Redis ([`redis_backend`]) or in this process's memory ([`memory_backend`],
/// not durable).
pub struct Backends {
    /// The calls stream.
    pub queue: Arc<dyn CallQueue>,
    /// Where bindings live.
    pub store: Arc<dyn BindingStore>,
    /// Which devices each call already pushed.
    pub ledger: Arc<dyn SentLedger>,
    /// The dead letters the queue's outcomes write, for `/v1/dead-letters…`.
    pub dead_letters: Arc<DeadLetters>,
    /// The Redis connection behind them, when they are on Redis: the readiness PING and the
    /// stream gauges need it; without it, `/readyz` is always ready and the stream gauges stay
    /// at 0.
    pub redis: Option<RedisConn>,
}

impl Backends {
    /// The in-memory backend over `queue` and `store` (shared with whoever else holds them, as
    /// tests do): a fresh ledger, the queue's dead letters, no Redis.
    pub fn in_memory(queue: Arc<MemoryCallQueue>, store: Arc<MemoryBindingStore>) -> Backends {
        Backends {
            dead_letters: Arc::new(DeadLetters::in_memory(queue.as_ref().clone())),
            queue,
            store,
            ledger: Arc::new(MemoryLedger::default()),
            redis: None,
        }
    }
}

/// The Redis backend of the settings.
pub async fn redis_backend(settings: &Settings) -> Result<Backends, DaemonError> {
    let (queue, store) = redis_backends(settings).await?;
    let redis = connect(settings).await?;
    let ledger = Arc::new(RedisSentLedger::new(redis.clone(), keys(settings)?));
    Ok(Backends {
        queue,
        store,
        ledger,
        dead_letters: Arc::new(redis_dead_letters(settings, redis.clone())?),
        redis: Some(redis),
    })
}

/// The in-memory backend of the settings (`callpush dev`): not durable, one process only (see
/// [`crate::memory`]).
pub fn memory_backend(settings: &Settings) -> Backends {
    let consumer = QueueOptions::from_settings(settings).consumer;
    Backends::in_memory(
        Arc::new(MemoryCallQueue::new(
            consumer,
            MemoryLimits::from_settings(settings),
        )),
        Arc::new(MemoryBindingStore::new(
            settings.bindings.ttl_days,
            settings.bindings.max_per_identity,
        )),
    )
}
