//! A whole test world: a redis-server, the APNs and FCM doubles, and daemon settings with one
//! APNs credential (`CRapns`) and one FCM credential (`CRfcm`) pointed at them; plus helpers to
//! register devices, add call events and read the results and dead-letter streams — on the
//! [`Backend`] the world was made for, so one test body runs on Redis and in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callpush::bindings::{BindingStore, NewBinding};
use callpush::config::{CredentialSettings, Settings};
use callpush::daemon::Backends;
use callpush::domain::{now_ms, Platform};
use callpush::event::StreamEntry;
use callpush::ingest::CallQueue;
use callpush::memory::{MemoryBindingStore, MemoryCallQueue, MemoryLimits};
use callpush::redis_conn::Keys;

use super::apns_double::{ApnsDouble, DoubleOptions};
use super::daemon::{settings, wait_entries, xadd, TestDaemon};
use super::fcm_double::{FcmDouble, FcmDoubleOptions};
use super::redis_server::{unique_prefix, RedisOptions, RedisServer};

/// How long to wait for outcomes.
pub const WAIT: Duration = Duration::from_secs(15);

/// Which backend the daemon of a world stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The world's redis-server.
    Redis,
    /// The in-memory backend, shared by the world and its daemon.
    Memory,
}

/// The in-memory backend of a world: the world reads and writes the same queue and store as
/// its daemon.
struct Memory {
    queue: Arc<MemoryCallQueue>,
    store: Arc<MemoryBindingStore>,
}

/// A Redis, both doubles, and settings pointing at them.
pub struct World {
    pub redis: RedisServer,
    pub apns: ApnsDouble,
    pub fcm: FcmDouble,
    pub prefix: String,
    /// The key names under `prefix`, as callpush derives them.
    pub keys: Keys,
    pub settings: Settings,
    pub conn: redis::aio::MultiplexedConnection,
    store: Arc<dyn BindingStore>,
    memory: Option<Memory>,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> World {
        Self::with_redis(RedisOptions::default(), tweak).await
    }

    /// A world on `backend`.
    pub async fn on(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> World {
        let mut world = Self::with(tweak).await;
        if backend == Backend::Memory {
            let s = &world.settings;
            let queue = Arc::new(MemoryCallQueue::new(
                "memory-test",
                MemoryLimits::from_settings(s),
            ));
            let store = Arc::new(MemoryBindingStore::new(
                s.bindings.ttl_days,
                s.bindings.max_per_identity,
            ));
            world.store = store.clone();
            world.memory = Some(Memory { queue, store });
        }
        world
    }

    /// The in-memory queue the daemon uses, on [`Backend::Memory`].
    pub fn memory_queue(&self) -> Option<Arc<MemoryCallQueue>> {
        self.memory.as_ref().map(|m| m.queue.clone())
    }

    /// The in-memory binding store the daemon uses, on [`Backend::Memory`].
    pub fn memory_store(&self) -> Option<Arc<MemoryBindingStore>> {
        self.memory.as_ref().map(|m| m.store.clone())
    }

    /// The calls queue as the consumer `consumer` of the daemon's group reads it.
    pub async fn queue_as(&self, consumer: &str) -> Arc<dyn CallQueue> {
        if let Some(m) = &self.memory {
            return Arc::new(m.queue.with_consumer(consumer));
        }
        let mut settings = self.settings.clone();
        settings.stream.consumer = Some(consumer.into());
        callpush::daemon::redis_backends(&settings).await.unwrap().0
    }

    /// Start the daemon on the world's backend.
    pub fn start_daemon(&self) -> TestDaemon {
        match &self.memory {
            None => TestDaemon::start(self.settings.clone()),
            Some(m) => TestDaemon::start_on(
                self.settings.clone(),
                Backends::in_memory(m.queue.clone(), m.store.clone()),
            ),
        }
    }

    /// A world whose redis-server runs with `options` (e.g. append-only, to restart it).
    pub async fn with_redis(options: RedisOptions, tweak: impl FnOnce(&mut Settings)) -> World {
        let redis = RedisServer::start_with(options).await;
        let apns = ApnsDouble::start(DoubleOptions::default()).await;
        let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let sa = fcm.write_service_account(dir.path());
        let prefix = unique_prefix();
        let mut settings = settings(&redis.url(), &prefix, "");
        settings
            .credentials
            .push(CredentialSettings::Apns(apns.credential("CRapns")));
        settings
            .credentials
            .push(CredentialSettings::Fcm(fcm.credential("CRfcm", &sa)));
        tweak(&mut settings);
        let conn = redis.multiplexed().await;
        let store = callpush::daemon::redis_backends(&settings).await.unwrap().1;
        World {
            store,
            memory: None,
            redis,
            apns,
            fcm,
            keys: Keys::new(&prefix).expect("a test prefix has no braces"),
            prefix,
            settings,
            conn,
            _dir: dir,
        }
    }

    /// The binding store the daemon uses (same Redis and prefix, or the same memory).
    pub async fn store(&self) -> Arc<dyn BindingStore> {
        self.store.clone()
    }

    pub async fn register(&self, identity: &str, platform: Platform, token: &str) {
        let credential = match platform {
            Platform::Apns => "CRapns",
            Platform::Fcm => "CRfcm",
        };
        self.register_at(identity, platform, credential, token, now_ms())
            .await;
    }

    pub async fn register_at(
        &self,
        identity: &str,
        platform: Platform,
        credential: &str,
        token: &str,
        at_ms: u64,
    ) {
        self.store()
            .await
            .register(
                NewBinding {
                    identity: identity.into(),
                    platform,
                    credential: credential.into(),
                    device_token: token.into(),
                    target: Default::default(),
                    environment: None,
                },
                at_ms,
            )
            .await
            .unwrap();
    }

    /// Add an incoming call to `to` with `call_sid`; its stream id.
    pub async fn ring(&mut self, to: &str, call_sid: &str) -> String {
        self.call(&[("type", "incoming"), ("to", to), ("call_sid", call_sid)])
            .await
    }

    pub async fn call(&mut self, fields: &[(&str, &str)]) -> String {
        if let Some(m) = &self.memory {
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return m.queue.enqueue(&fields).await.unwrap();
        }
        xadd(&mut self.conn, &self.prefix, fields).await
    }

    /// Wait until the in-memory stream `read` holds at least `n` entries (or `timeout` passes).
    async fn wait_memory(
        read: impl Fn() -> Vec<StreamEntry>,
        n: usize,
        timeout: Duration,
    ) -> Vec<(String, HashMap<String, String>)> {
        let start = std::time::Instant::now();
        loop {
            let entries = read();
            if entries.len() >= n || start.elapsed() > timeout {
                return entries
                    .into_iter()
                    .map(|e| {
                        let fields = e.to_pairs().into_iter().collect();
                        (e.id, fields)
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The results stream's entries with their ids, once there are at least `n` (or `timeout`
    /// passed).
    pub async fn result_entries(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Vec<(String, HashMap<String, String>)> {
        if let Some(m) = &self.memory {
            return Self::wait_memory(|| m.queue.results(), n, timeout).await;
        }
        let key = self.keys.results.clone();
        wait_entries(&mut self.conn, &key, n, timeout).await
    }

    pub async fn results(&mut self, n: usize) -> Vec<HashMap<String, String>> {
        if let Some(m) = &self.memory {
            let entries = Self::wait_memory(|| m.queue.results(), n, WAIT).await;
            assert_eq!(entries.len(), n, "results: {entries:?}");
            return entries.into_iter().map(|(_, f)| f).collect();
        }
        let key = self.keys.results.clone();
        let entries = wait_entries(&mut self.conn, &key, n, WAIT).await;
        assert_eq!(entries.len(), n, "results: {entries:?}");
        entries.into_iter().map(|(_, f)| f).collect()
    }

    pub async fn dead(&mut self, n: usize) -> Vec<HashMap<String, String>> {
        if let Some(m) = &self.memory {
            let entries = Self::wait_memory(|| m.queue.dead_letters(), n, WAIT).await;
            assert_eq!(entries.len(), n, "dead letters: {entries:?}");
            return entries.into_iter().map(|(_, f)| f).collect();
        }
        let key = self.keys.dead.clone();
        let entries = wait_entries(&mut self.conn, &key, n, WAIT).await;
        assert_eq!(entries.len(), n, "dead letters: {entries:?}");
        entries.into_iter().map(|(_, f)| f).collect()
    }

    pub async fn pending(&mut self) -> usize {
        if let Some(m) = &self.memory {
            return m.queue.pending();
        }
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.keys.calls)
            .arg("callpush")
            .query_async(&mut self.conn)
            .await
            .unwrap();
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }
}
