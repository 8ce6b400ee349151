//! A whole test world on a Redis Cluster: a [`RedisCluster`], the APNs and FCM doubles, daemon
//! settings for `stream.shards` shards on the cluster (one APNs credential `CRapns`, one FCM
//! credential `CRfcm`, no per-callee call limit), the API and binding store of those settings,
//! and readers of every shard's results and pending entries.
//!
//! ```ignore
//! let mut w = ClusterWorld::start().await;
//! let d1 = w.daemon("d1", &Knobs::default());
//! let results = w.wait_results(n, RUN).await;
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callpush::api::ApiContext;
use callpush::bindings::BindingStore;
use callpush::config::{CredentialSettings, Settings};
use callpush::ingest::CallQueue;
use callpush::redis_conn::{Keys, Layout};
use redis::cluster_async::ClusterConnection;

use super::api::add_auth;
use super::apns_double::{ApnsDouble, DoubleOptions};
use super::fcm_double::{FcmDouble, FcmDoubleOptions};
use super::process::{DaemonProcess, Knobs};
use super::redis_cluster::{ClusterOptions, RedisCluster};
use super::redis_server::unique_prefix;

/// Stream shards of [`ClusterWorld::start`]: more than masters, so some master holds two.
pub const SHARDS: u32 = 4;

/// A cluster, both doubles, and settings for its shards on it; the API and the binding store
/// of the same settings.
pub struct ClusterWorld {
    pub cluster: RedisCluster,
    pub apns: ApnsDouble,
    pub fcm: FcmDouble,
    pub settings: Settings,
    pub layout: Layout,
    pub queue: Arc<dyn CallQueue>,
    pub store: Arc<dyn BindingStore>,
    pub ctx: Arc<ApiContext>,
    /// The test's own connection (10 s response timeout).
    pub conn: ClusterConnection,
    pub dir: tempfile::TempDir,
}

impl ClusterWorld {
    /// Three masters, no replicas, [`SHARDS`] shards.
    pub async fn start() -> ClusterWorld {
        Self::start_with(ClusterOptions::default(), SHARDS).await
    }

    /// A cluster laid out as `options` says, with `shards` stream shards on it.
    pub async fn start_with(options: ClusterOptions, shards: u32) -> ClusterWorld {
        let cluster = RedisCluster::start_with(options).await;
        let apns = ApnsDouble::start(DoubleOptions::default()).await;
        let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let sa = fcm.write_service_account(dir.path());
        let urls = cluster.urls();
        let mut settings = super::daemon::settings(&urls[0], &unique_prefix(), "");
        settings.redis.cluster = true;
        settings.redis.urls = urls;
        settings.stream.shards = shards;
        settings.limits.calls_per_identity_per_min = 0;
        settings.limits.registrations_per_address_per_min = 100_000;
        let creds = &mut settings.credentials;
        creds.push(CredentialSettings::Apns(apns.credential("CRapns")));
        creds.push(CredentialSettings::Fcm(fcm.credential("CRfcm", &sa)));
        add_auth(&mut settings, dir.path());
        let layout = Layout::new(&settings.redis.key_prefix, shards, true).unwrap();
        let (queue, store) = callpush::daemon::redis_backends(&settings).await.unwrap();
        let store: Arc<dyn BindingStore> = store;
        let ctx = callpush::daemon::api_context(&settings, queue.clone(), store.clone())
            .await
            .unwrap();
        let conn = cluster.client().get_async_connection().await.unwrap();
        ClusterWorld {
            cluster,
            apns,
            fcm,
            settings,
            layout,
            queue,
            store,
            ctx: Arc::new(ctx),
            conn,
            dir,
        }
    }

    /// Every result of every shard, per shard.
    pub async fn results(&mut self) -> Vec<Vec<HashMap<String, String>>> {
        let mut out = Vec::new();
        for keys in self.layout.shards().to_vec() {
            out.push(read_all(&mut self.conn, &keys.results).await);
        }
        out
    }

    /// Wait until the shards hold `n` results together (or `timeout` passed); then every
    /// result, per shard.
    pub async fn wait_results(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<HashMap<String, String>>> {
        let start = Instant::now();
        loop {
            let results = self.results().await;
            let got: usize = results.iter().map(Vec::len).sum();
            if got >= n || start.elapsed() > timeout {
                return results;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Entries pending in `keys`' calls stream, per consumer.
    pub async fn pending(&mut self, keys: &Keys) -> HashMap<String, i64> {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&keys.calls)
            .arg(&self.settings.stream.group)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        let mut out = HashMap::new();
        if let redis::Value::Array(items) = reply {
            if let Some(redis::Value::Array(consumers)) = items.get(3) {
                for c in consumers {
                    let (name, n): (String, String) = redis::from_redis_value_ref(c).unwrap();
                    out.insert(name, n.parse().unwrap());
                }
            }
        }
        out
    }

    /// The real binary with these settings, as consumer `consumer`.
    pub fn daemon(&self, consumer: &str, knobs: &Knobs) -> DaemonProcess {
        DaemonProcess::start_on(&self.settings, self.dir.path(), consumer, knobs)
    }
}

/// Owned `(field, value)` pairs of an event.
pub fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every entry of the stream `key`, as field maps.
pub async fn read_all(conn: &mut ClusterConnection, key: &str) -> Vec<HashMap<String, String>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|id| {
            id.map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap()))
                .collect()
        })
        .collect()
}
