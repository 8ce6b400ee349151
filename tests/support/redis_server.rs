//! A real `redis-server` per test: started on a free port in its own temp dir, killed on drop.
//!
//! ```ignore
//! let redis = RedisServer::start().await;
//! let settings = redis.settings(&unique_prefix());
//! let conn = redis.conn().await;
//! ```
//! `start_with(RedisOptions { appendonly: true, .. })` keeps data across [`RedisServer::restart`];
//! `tls: true` adds a TLS port (the fixtures' localhost certificate, signed by the test CA) and
//! an ACL user [`TLS_USER`] with password [`TLS_PASSWORD`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long a freshly started server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at finding a free port before giving up.
const START_ATTEMPTS: usize = 5;

/// How to run the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisOptions {
    /// Append-only file on (fsync always), so [`RedisServer::restart`] keeps the data.
    pub appendonly: bool,
    /// A TLS port beside the plain one, and the ACL user [`TLS_USER`].
    pub tls: bool,
}

/// The ACL user of a `tls` server, allowed every command on every key.
pub const TLS_USER: &str = "callpush";
/// Its password.
pub const TLS_PASSWORD: &str = "correct horse battery staple";

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The TLS port (`tls` servers only).
    tls_port: u16,
    options: RedisOptions,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start a server with no persistence.
    pub async fn start() -> RedisServer {
        Self::start_with(RedisOptions::default()).await
    }

    /// Start a server with the given options.
    pub async fn start_with(options: RedisOptions) -> RedisServer {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: the integration tests need a real Redis \
             (apt-get install redis-server)"
        );
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            port: 0,
            tls_port: 0,
            options,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            if options.tls {
                server.tls_port = free_port();
            }
            if server.spawn_and_wait().await {
                return server;
            }
            eprintln!(
                "redis-server did not start on port {} (attempt {attempt})",
                server.port
            );
        }
        panic!(
            "redis-server did not start after {START_ATTEMPTS} attempts; log:\n{}",
            server.log()
        );
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://localhost:<tls port>` of a `tls` server.
    pub fn tls_url(&self) -> String {
        assert!(self.options.tls, "not a TLS server");
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `[redis]` settings pointing at this server with the given key prefix.
    pub fn settings(&self, key_prefix: &str) -> callpush::config::RedisSettings {
        callpush::config::RedisSettings {
            url: self.url(),
            key_prefix: key_prefix.to_string(),
            ..Default::default()
        }
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis client")
    }

    /// A multiplexed connection for the test's own reads and writes. Its response timeout is
    /// 10 s, not the crate's 500 ms: a server with `appendfsync always` under a daemon's load
    /// (just restarted, the backlog replaying) can take longer than that to answer an XRANGE.
    pub async fn multiplexed(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(10)));
        self.client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to the test redis-server")
    }

    /// A connection the way the daemon makes it.
    pub async fn conn(&self) -> redis::aio::ConnectionManager {
        match callpush::redis_conn::connect(&self.settings(""))
            .await
            .expect("connect to the test redis-server")
        {
            callpush::redis_conn::RedisConn::Single(conn, _) => conn,
            callpush::redis_conn::RedisConn::Cluster(_) => unreachable!("a single server"),
        }
    }

    /// Stop the server (gracefully, so the append-only file is complete). Idempotent.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SHUTDOWN flushes the AOF; a kill is the fallback when the server does not answer.
        let _ = raw_command(self.port, "SHUTDOWN NOSAVE\r\n").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freeze the server (SIGSTOP): connections stay open and commands get no answer, as with
    /// a Redis stuck on a slow disk or a network that drops packets. [`RedisServer::resume`]
    /// thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaw a server [`RedisServer::pause`] froze (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        signal_process(self.child.as_ref().expect("the server runs"), signal);
    }

    /// Stop and start again on the same port and directory (data kept with `appendonly`).
    pub async fn restart(&mut self) {
        self.stop().await;
        // The old socket may linger for a moment; the port is ours, so retry rather than move.
        for _ in 0..START_ATTEMPTS {
            if self.spawn_and_wait().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "redis-server did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Spawn on `self.port` and wait for PING; false when the server exited (port taken) or
    /// never answered.
    async fn spawn_and_wait(&mut self) -> bool {
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path());
        if self.options.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if self.options.tls {
            let fixture = super::fixtures::fixture;
            cmd.arg("--tls-port")
                .arg(self.tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(fixture("localhost.pem"))
                .arg("--tls-key-file")
                .arg(fixture("localhost.key"))
                .arg("--tls-ca-cert-file")
                .arg(fixture("test_ca.pem"))
                .args(["--tls-auth-clients", "no"])
                .args(["--user", TLS_USER, "on"])
                .arg(format!(">{TLS_PASSWORD}"))
                .args(["~*", "&*", "+@all"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(reply) = raw_command(self.port, "PING\r\n").await {
                if reply.starts_with("+PONG") {
                    self.child = Some(child);
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Send `signal` (`-STOP`, `-CONT`, …) to `child` with `kill`.
pub fn signal_process(child: &Child, signal: &str) {
    let pid = child.id();
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A port nobody listens on right now (the kernel's pick for port 0).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Send one inline command and read the first reply chunk, without a Redis client (a PING
/// that must not reconnect or retry).
async fn raw_command(port: u16, command: &str) -> std::io::Result<String> {
    let io = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(command.as_bytes()).await?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), io)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A key prefix no other test uses, so tests never see each other's keys even on one server.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt: u32 = rand::random();
    format!("t{}-{n}-{salt:08x}:", std::process::id())
}

/// How long [`pause_clients`] holds commands in the heartbeat tests: longer than a short
/// command waits for its answer (3 s), shorter than a touch waits with the default
/// `stream.claim_idle_ms` (5 s).
pub const SLOW_ANSWER: Duration = Duration::from_secs(4);

/// Make the server at `url` hold every client's commands for `duration` (`CLIENT PAUSE`), as a
/// server swamped by a burst answers late (`DEBUG SLEEP` is disabled by default since Redis 7).
/// Returns once the pause is on: `CLIENT PAUSE` itself answers at once.
pub async fn pause_clients(url: &str, duration: Duration) {
    let mut conn = redis::Client::open(url)
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to pause the server");
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(duration.as_millis() as u64)
        .query_async::<()>(&mut conn)
        .await
        .expect("CLIENT PAUSE");
}
