//! Redis connections and key names.
//!
//! Three kinds of connection: [`connect`] gives the shared [`ConnectionManager`] every short
//! command goes through (multiplexed, reconnecting with backoff, short response timeout),
//! [`connect_blocking`] gives the [`BlockingConnection`] that `XREADGROUP … BLOCK` reads use,
//! and [`connect_heartbeat`] the [`HeartbeatConnection`] the queue touches its entries in flight
//! on. Blocking reads need their own connection twice over: a BLOCK read holds a multiplexed
//! connection's pipeline, so every other command would queue behind it, and its response
//! timeout must outlast the BLOCK or the client gives up on a read the server is still serving.
//! Heartbeats need their own so they do not share the fate of the bulk traffic: under a burst
//! the shared pipeline is full and a touch queued behind it would hit the short timeout, and an
//! entry whose touches fail is reclaimed by another daemon and its devices pushed again.
//!
//! With `redis.cluster = true` all are [`RedisConn::Cluster`]: the crate's async cluster
//! connection to the seed nodes of `redis.urls` (else `redis.url`), which routes each command by
//! its key's slot, follows `MOVED`/`ASK` and reconnects. Every script callpush runs touches keys
//! of one slot ([`Layout`] and the stores' docs say which), and no command spans slots. A
//! blocking connection on a cluster is used for one shard only, so the BLOCK read holds only
//! the connection to that shard's master.
//!
//! [`Keys`] and [`Layout`] are the only place that formats key names; the stores document what
//! each key holds. [`slots`] holds the shard function call servers compute.

mod keys;
mod many;
pub mod slots;
pub mod wire;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value};

pub use keys::{KeyError, Keys, Layout};
pub use many::{exec_each, invoke_each, query_each, Answers, ScriptCall};

use crate::config::RedisSettings;

/// A connection to one Redis or to a Redis Cluster; cheap to clone (both are multiplexed).
#[derive(Clone)]
pub enum RedisConn {
    /// One server (`redis.url`), reconnecting with backoff; with the event path's own
    /// connection to it when the address allows one ([`wire`]).
    Single(ConnectionManager, Option<wire::WireConn>),
    /// A cluster (`redis.cluster`), routing by slot.
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for RedisConn {
    fn from(conn: ConnectionManager) -> RedisConn {
        RedisConn::Single(conn, None)
    }
}

impl RedisConn {
    /// The wire connection for the event path's batches, when there is one ([`wire`]).
    pub fn wire(&self) -> Option<&wire::WireConn> {
        match self {
            RedisConn::Single(_, wire) => wire.as_ref(),
            RedisConn::Cluster(_) => None,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c, _) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c, _) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c, _) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// How long establishing a TCP (and TLS) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a short command may take before the connection is considered broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// First reconnect backoff; doubles per attempt, with jitter.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest reconnect backoff.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);
/// Reconnect attempts per outage before pending commands fail (the next command starts over).
const RECONNECT_ATTEMPTS: usize = 6;

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_number_of_retries(RECONNECT_ATTEMPTS)
}

/// The environment variable that may hold the Redis password instead of `redis.password_file`.
pub const PASSWORD_ENV: &str = "CALLPUSH_REDIS_PASSWORD";

/// A client for the settings: the URL, the ACL user and the password (`redis.password_file`,
/// else `CALLPUSH_REDIS_PASSWORD`, else the URL's), and for `rediss://` the extra root of
/// `redis.ca_file`. Secret files are read here, once per client: the connection manager
/// reconnects with what it was built with, so a rotated password takes a daemon restart.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, RedisError> {
    let info = settings.url.as_str().into_connection_info()?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(user) = &settings.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = password(settings)? {
        redis_info = redis_info.set_password(password.expose_str());
    }
    let info = info.set_redis_settings(redis_info);
    match &settings.ca_file {
        Some(path) => {
            let root = read_ca(path)?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            redis::Client::build_with_tls(info, certs)
        }
        None => redis::Client::open(info),
    }
}

fn password(settings: &RedisSettings) -> Result<Option<crate::secret::Secret>, RedisError> {
    if let Some(path) = &settings.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                "cannot read redis.password_file",
                format!("{}: {e}", path.display()),
            )
        })?;
        let first = text.lines().next().unwrap_or_default().trim();
        return Ok(Some(crate::secret::Secret::new(first)));
    }
    Ok(std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(crate::secret::Secret::new))
}

fn config_error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, what, detail))
}

/// A cluster connection to the seed nodes, with the user, password and extra root of the
/// settings applied to every node.
async fn connect_cluster(
    settings: &RedisSettings,
    response_timeout: Duration,
) -> Result<ClusterConnection, RedisError> {
    let seeds = if settings.urls.is_empty() {
        vec![settings.url.clone()]
    } else {
        settings.urls.clone()
    };
    let mut builder = ClusterClientBuilder::new(seeds)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(response_timeout)
        .min_retry_wait(RECONNECT_MIN_DELAY.as_millis() as u64)
        .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64)
        .retries(RECONNECT_ATTEMPTS as u32);
    if let Some(user) = &settings.username {
        builder = builder.username(user);
    }
    if let Some(password) = password(settings)? {
        builder = builder.password(password.expose_str());
    }
    if let Some(path) = &settings.ca_file {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(read_ca(path)?),
        });
    }
    builder.build()?.get_async_connection().await
}

fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|e| {
        config_error(
            "cannot read redis.ca_file",
            format!("{}: {e}", path.display()),
        )
    })
}

async fn connect_with(
    settings: &RedisSettings,
    response_timeout: Duration,
) -> Result<RedisConn, RedisError> {
    if settings.cluster {
        return Ok(RedisConn::Cluster(
            connect_cluster(settings, response_timeout).await?,
        ));
    }
    let client = client(settings)?;
    let wire = wire::WireConn::for_info(
        client.get_connection_info(),
        CONNECT_TIMEOUT,
        response_timeout,
    );
    let manager =
        ConnectionManager::new_with_config(client, manager_config(response_timeout)).await?;
    Ok(RedisConn::Single(manager, wire))
}

/// Connect the shared connection for short commands (scripts, XADD, XACK, XRANGE, …).
///
/// Fails when Redis cannot be reached now; once connected, the manager reconnects by itself.
pub async fn connect(settings: &RedisSettings) -> Result<RedisConn, RedisError> {
    connect_with(settings, RESPONSE_TIMEOUT).await
}

/// A connection reserved for blocking stream reads.
#[derive(Clone)]
pub struct BlockingConnection {
    conn: RedisConn,
    max_block: Duration,
}

impl BlockingConnection {
    /// The connection, to send one blocking read on.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The longest BLOCK a read on this connection may ask for: longer ones are shortened, so
    /// the client-side response timeout never cuts a read short.
    pub fn max_block(&self) -> Duration {
        self.max_block
    }
}

impl std::fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingConnection")
            .field("max_block", &self.max_block)
            .finish_non_exhaustive()
    }
}

/// Connect the connection for blocking reads of up to `max_block` (use `stream.block_ms`).
///
/// Its response timeout is `max_block` plus the short-command timeout, so a BLOCK read that
/// returns empty-handed is never mistaken for a dead connection, while a really dead one is
/// still noticed (and reconnected) within a few seconds of the BLOCK ending.
pub async fn connect_blocking(
    settings: &RedisSettings,
    max_block: Duration,
) -> Result<BlockingConnection, RedisError> {
    let conn = connect_with(settings, max_block + RESPONSE_TIMEOUT).await?;
    Ok(BlockingConnection { conn, max_block })
}

/// The least time a touch waits for its answer: a busy server (a burst, a slow disk under
/// `appendfsync always`) is waited for rather than taken for a broken connection.
const HEARTBEAT_MIN_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection the queue touches its entries in flight on (`CallQueue::touch`), apart from
/// the shared one so that heartbeats never queue behind the pipeline's own commands.
#[derive(Clone)]
pub struct HeartbeatConnection {
    conn: RedisConn,
    timeout: Duration,
}

impl HeartbeatConnection {
    /// The connection, to send a touch on.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// How long one touch may take ([`heartbeat_timeout`]). On a cluster the client tries a
    /// command that timed out again on a fresh connection, so a touch to a hung node could
    /// outlast this many times over; callers cut it off here, so the next touch of every other
    /// shard is not late.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The response timeout of the heartbeat connection for `stream.claim_idle_ms`: the larger of
/// 5 s and the heartbeat's period (`claim_idle / 3`), at most the two thirds of `claim_idle` a
/// touch has left (it is sent a third of `claim_idle` after the last one; an answer later than
/// that comes after the entry became reclaimable), and never shorter than a short command's
/// timeout. That floor wins below a `claim_idle` of 4.5 s (the start-up warns about such
/// values): there a touch waits 3 s, as long as any command; on its own connection a touch is
/// on the wire at once, so waiting longer only lets it report what happened (touched, or
/// reclaimed by another daemon) instead of a timeout.
pub fn heartbeat_timeout(claim_idle: Duration) -> Duration {
    (claim_idle / 3)
        .max(HEARTBEAT_MIN_RESPONSE_TIMEOUT)
        .min(claim_idle * 2 / 3)
        .max(RESPONSE_TIMEOUT)
}

/// Connect the heartbeat connection for a queue whose entries are reclaimed after
/// `claim_idle` (`stream.claim_idle_ms`); its response timeout is [`heartbeat_timeout`].
/// One serves every shard: touches are few (one round trip per shard every `claim_idle / 3`).
pub async fn connect_heartbeat(
    settings: &RedisSettings,
    claim_idle: Duration,
) -> Result<HeartbeatConnection, RedisError> {
    let timeout = heartbeat_timeout(claim_idle);
    let conn = connect_with(settings, timeout).await?;
    Ok(HeartbeatConnection { conn, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_waits_five_seconds_or_more_within_the_idle_time() {
        let ms = Duration::from_millis;
        // The default: 5 s, more than a short command's 3 s.
        assert_eq!(heartbeat_timeout(ms(10_000)), ms(5_000));
        // Long idle times: a third of it.
        assert_eq!(heartbeat_timeout(ms(60_000)), ms(20_000));
        // Shorter ones: the two thirds a touch has left before the entry is reclaimable...
        assert_eq!(heartbeat_timeout(ms(6_000)), ms(4_000));
        // ...but never less patient than a short command on the shared connection.
        assert_eq!(heartbeat_timeout(ms(2_000)), RESPONSE_TIMEOUT);
        assert_eq!(heartbeat_timeout(ms(1_000)), RESPONSE_TIMEOUT);
    }
}
