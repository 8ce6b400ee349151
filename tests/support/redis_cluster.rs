//! A local Redis Cluster per test: three masters (and, with [`ClusterOptions::replicas`], that
//! many replicas of each) on loopback ports whose bus ports (port + 10000) are free too, each
//! in its own directory of one temp dir, joined with `redis-cli --cluster create …
//! --cluster-yes`, ready once every node reports `cluster_state:ok` and every replica's link to
//! its master is up; every node is killed on drop.
//!
//! Faults for the isolation tests: [`RedisCluster::pause`] / [`RedisCluster::resume`] freeze
//! and thaw one node (SIGSTOP / SIGCONT), [`RedisCluster::kill`] kills one (SIGKILL);
//! [`RedisCluster::slot_map`] asks the nodes still answering which master serves each slot now,
//! and [`RedisCluster::wait_for_failover`] waits until a dead master's slots have a new owner.
//!
//! ```ignore
//! let cluster = RedisCluster::start().await;
//! settings.redis.cluster = true;
//! settings.redis.urls = cluster.urls();
//! ```

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster_slots::{ask, slot_map_from, SlotMap};
use super::redis_server::signal_process;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// Masters in the cluster.
pub const MASTERS: usize = 3;
/// How long starting and joining the nodes may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the cluster is laid out.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// Replicas of each master (`--cluster-replicas`); a master with one fails over to it.
    pub replicas: usize,
    /// `cluster-node-timeout`: how long a node may not answer before the others count it as
    /// failed (and, with replicas, one of its replicas takes over).
    pub node_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 0,
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    /// `None` once killed.
    child: Option<Child>,
    paused: bool,
}

/// The running nodes of a cluster, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// The masters as the cluster was created.
    masters: Vec<u16>,
    options: ClusterOptions,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Start three masters and join them into one cluster covering every slot.
    pub async fn start() -> RedisCluster {
        Self::start_with(ClusterOptions::default()).await
    }

    /// Start `MASTERS × (1 + replicas)` nodes and join them into one cluster.
    pub async fn start_with(options: ClusterOptions) -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            masters: Vec::new(),
            options,
            dir,
        };
        for port in free_ports_with_bus(MASTERS * (1 + options.replicas)) {
            let child = Some(cluster.spawn(port));
            cluster.nodes.push(Node {
                port,
                child,
                paused: false,
            });
        }
        let ports = cluster.node_ports();
        for &port in &ports {
            wait_until(port, &["ping"], "PONG").await;
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new(REDIS_CLI)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .arg("--cluster-replicas")
            .arg(options.replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        for &port in &ports {
            wait_until(port, &["cluster", "info"], "cluster_state:ok").await;
        }
        for &port in &ports {
            let role = redis_cli(port, &["role"]);
            if role.starts_with("master") {
                cluster.masters.push(port);
            } else {
                wait_until(port, &["info", "replication"], "master_link_status:up").await;
            }
        }
        assert_eq!(cluster.masters.len(), MASTERS, "masters of {ports:?}");
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
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout"])
            .arg(self.options.node_timeout.as_millis().to_string())
            .args(["--daemonize", "no", "--dir"])
            .arg(&node_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start a cluster redis-server")
    }

    /// The masters' ports, as the cluster was created (a failover does not change them).
    pub fn ports(&self) -> Vec<u16> {
        self.masters.clone()
    }

    /// Every node's port, masters and replicas, killed ones too.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:<port>` of every node (the seed nodes).
    pub fn urls(&self) -> Vec<String> {
        self.node_ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// A cluster client over every node, for the test's own reads and writes. It waits 10 s
    /// for an answer rather than the crate's default: the masters run `appendfsync always` on
    /// a 2-core machine next to the daemons under test.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::builder(self.urls())
            .response_timeout(Duration::from_secs(10))
            .connection_timeout(Duration::from_secs(10))
            .build()
            .expect("cluster client")
    }

    /// The key names a node holds right now (`KEYS *` on that node alone).
    pub fn keys_on(&self, port: u16) -> Vec<String> {
        redis_cli(port, &["--raw", "keys", "*"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Freeze the node on `port` (SIGSTOP): its connections stay open and its commands get no
    /// answer, as with a Redis stuck on a slow disk or behind a network that drops packets.
    pub fn pause(&mut self, port: u16) {
        signal(self.node(port), "-STOP");
        self.node(port).paused = true;
    }

    /// Thaw a node [`RedisCluster::pause`] froze (SIGCONT).
    pub fn resume(&mut self, port: u16) {
        signal(self.node(port), "-CONT");
        self.node(port).paused = false;
    }

    /// Kill the node on `port` (SIGKILL): no chance to answer, flush or hand over anything.
    pub fn kill(&mut self, port: u16) {
        let mut child = self.node(port).child.take().expect("the node runs");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }

    /// The ports of the nodes that answer: neither paused nor killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused)
            .map(|n| n.port)
            .collect()
    }

    /// Which master serves each slot now, as the first live node that answers says.
    pub async fn slot_map(&self) -> SlotMap {
        slot_map_from(&self.live_ports())
            .await
            .expect("a live node answers CLUSTER SLOTS")
    }

    /// Wait until every live node reports `cluster_state:ok` and names another master than
    /// `old` for each slot `old` served: its replica took over. Returns the new master's port.
    pub async fn wait_for_failover(&self, old: u16, timeout: Duration) -> u16 {
        let before = self.slot_map().await;
        let slot = *before
            .slots_of(old)
            .first()
            .unwrap_or_else(|| panic!("{old} serves no slot"));
        let start = Instant::now();
        loop {
            // What each live node says serves `slot`; `None`: it does not say, or its cluster
            // is not ok yet.
            let mut owners = BTreeSet::new();
            for port in self.live_ports() {
                let ok = ask(port, &["CLUSTER", "INFO"])
                    .await
                    .and_then(|v| redis::from_redis_value::<String>(v).ok())
                    .is_some_and(|info| info.contains("cluster_state:ok"));
                let map = slot_map_from(&[port]).await.filter(|_| ok);
                owners.insert(map.map(|m| m.master_of_slot(slot)));
            }
            if let [Some(new)] = owners.iter().collect::<Vec<_>>()[..] {
                if *new != old {
                    return *new;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no failover of {old} within {timeout:?}: the live nodes say {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(node: &Node, signal: &str) {
    signal_process(node.child.as_ref().expect("the node runs"), signal);
}

/// What `redis-cli -p port <args>` prints.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(REDIS_CLI)
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until `redis-cli -p port <args>` prints `want`.
async fn wait_until(port: u16, args: &[&str], want: &str) {
    let start = Instant::now();
    loop {
        let out = redis_cli(port, args);
        if out.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < START_TIMEOUT,
            "node {port} never answered {want:?} to {args:?}: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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
