//! Running the daemon inside a test: the same `callpush::daemon::run` the binary calls, on a
//! tokio task, stopped through its cancellation token; plus readers of the results and
//! dead-letter streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callpush::config::Settings;
use callpush::daemon::{self, DaemonError};
use redis::AsyncCommands;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daemon running in this test's runtime, its listeners on 127.0.0.1 with ports the system
/// picked.
pub struct TestDaemon {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), DaemonError>>,
    api: SocketAddr,
    admin: SocketAddr,
}

/// A listener on 127.0.0.1 and a free port, bound synchronously so `start` needs no `.await`.
fn local_listener() -> tokio::net::TcpListener {
    let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    std.set_nonblocking(true).expect("non-blocking listener");
    tokio::net::TcpListener::from_std(std).expect("tokio listener")
}

impl TestDaemon {
    /// Start the daemon with `settings`.
    pub fn start(settings: Settings) -> Self {
        Self::spawn(|listeners, shutdown| tokio::spawn(daemon::run(settings, listeners, shutdown)))
    }

    /// Start the daemon with `settings` on the given backends (the in-memory one).
    pub fn start_on(settings: Settings, backends: daemon::Backends) -> Self {
        Self::spawn(|listeners, shutdown| {
            tokio::spawn(daemon::run_with(settings, backends, listeners, shutdown))
        })
    }

    /// Bind both listeners on port 0 and run `daemon` on them.
    fn spawn(
        daemon: impl FnOnce(daemon::Listeners, CancellationToken) -> JoinHandle<Result<(), DaemonError>>,
    ) -> Self {
        let listeners = daemon::Listeners {
            api: local_listener(),
            admin: local_listener(),
        };
        let api = listeners.api.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = daemon(listeners, shutdown.clone());
        TestDaemon {
            shutdown,
            handle,
            api,
            admin,
        }
    }

    /// The public listener's base URL (`http://127.0.0.1:<port>`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The admin listener's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Stop it as SIGTERM would, and wait until it returned.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("daemon stops within 30 s")
            .expect("daemon task does not panic")
            .expect("daemon returns Ok");
    }
}

/// The `[redis]` table of a config on this server and key prefix.
pub fn redis_toml(redis_url: &str, prefix: &str) -> String {
    format!("[redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n")
}

/// Settings from TOML text (as a user would write them) with test-friendly timing.
pub fn settings(redis_url: &str, prefix: &str, credentials_toml: &str) -> Settings {
    let redis = redis_toml(redis_url, prefix);
    let text = format!(
        r#"
{redis}
[stream]
block_ms = 200
claim_idle_ms = 2000

[retry]
base_ms = 20
max_ms = 200
max_attempts = 4

[shutdown]
grace_ms = 5000

{credentials_toml}
"#
    );
    Settings::from_toml_with_env(&text, Vec::new()).expect("test settings are valid")
}

/// One stream entry as a field map, plus its id.
pub type Entry = (String, HashMap<String, String>);

/// Every entry of a stream, oldest first.
pub async fn read_all(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(key).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|id| {
            let fields = id
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap()))
                .collect();
            (id.id, fields)
        })
        .collect()
}

/// Wait until the stream `key` holds at least `n` entries (or `timeout` passes), and return
/// them all.
pub async fn wait_entries(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Entry> {
    let start = Instant::now();
    loop {
        let entries = read_all(conn, key).await;
        if entries.len() >= n || start.elapsed() > timeout {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// XADD an event to the calls stream.
pub async fn xadd(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    fields: &[(&str, &str)],
) -> String {
    conn.xadd(format!("{prefix}calls"), "*", fields)
        .await
        .expect("XADD")
}
