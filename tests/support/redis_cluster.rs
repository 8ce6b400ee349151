//! A local Redis Cluster per test: three masters (no replicas) on loopback ports whose bus
//! ports (port + 10000) are free too, each in its own directory of one temp dir, joined with
//! `redis-cli --cluster create … --cluster-yes`, ready once every node reports
//! `cluster_state:ok`; every node is killed on drop.
//!
//! ```ignore
//! let cluster = RedisCluster::start().await;
//! settings.redis.cluster = true;
//! settings.redis.urls = cluster.urls();
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// Masters in the cluster.
pub const MASTERS: usize = 3;
/// How long starting and joining the nodes may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Three running cluster masters, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<(u16, Child)>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Start three masters and join them into one cluster covering every slot.
    pub async fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for port in free_ports_with_bus(MASTERS) {
            let child = cluster.spawn(port);
            cluster.nodes.push((port, child));
        }
        for port in cluster.ports() {
            cluster.wait_until(port, &["ping"], "PONG").await;
        }
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new(REDIS_CLI)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        for port in cluster.ports() {
            cluster
                .wait_until(port, &["cluster", "info"], "cluster_state:ok")
                .await;
        }
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        let node_dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let log = std::fs::File::create(node_dir.join("redis.log")).unwrap();
        Command::new(REDIS_SERVER)
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .args(["--daemonize", "no", "--dir"])
            .arg(&node_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start a cluster redis-server")
    }

    /// Wait until `redis-cli -p port <args>` prints `want`.
    async fn wait_until(&self, port: u16, args: &[&str], want: &str) {
        let start = Instant::now();
        loop {
            let out = Command::new(REDIS_CLI)
                .arg("-p")
                .arg(port.to_string())
                .args(args)
                .output()
                .expect("run redis-cli");
            if String::from_utf8_lossy(&out.stdout).contains(want) {
                return;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "node {port} never answered {want:?} to {args:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The masters' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(p, _)| *p).collect()
    }

    /// `redis://127.0.0.1:<port>` of every master (the seed nodes).
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// A cluster client over every master, for the test's own reads and writes. It waits 10 s
    /// for an answer rather than the crate's default: the masters run `appendfsync always` on
    /// a 2-core machine next to the daemons under test.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::builder(self.urls())
            .response_timeout(Duration::from_secs(10))
            .connection_timeout(Duration::from_secs(10))
            .build()
            .expect("cluster client")
    }

    /// The key names a master holds right now (`KEYS *` on that node alone).
    pub fn keys_on(&self, port: u16) -> Vec<String> {
        let out = Command::new(REDIS_CLI)
            .arg("-p")
            .arg(port.to_string())
            .args(["--raw", "keys", "*"])
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` distinct ports free now whose port + 10000 (the cluster bus) is free too.
fn free_ports_with_bus(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let bus = port.checked_add(10_000);
        let bus_free = bus.and_then(|b| std::net::TcpListener::bind(("127.0.0.1", b)).ok());
        if let Some(bus_listener) = bus_free {
            ports.push(port);
            held.push(bus_listener);
        }
        // Held until all are chosen, so no two picks collide.
        held.push(listener);
    }
    ports
}
