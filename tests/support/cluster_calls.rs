//! Calls placed on a Redis Cluster's masters, for the isolation tests: the keys a call touches
//! and the masters they live on ([`call_keys`]), plans of calls whose keys all avoid one master
//! (the "victim") or touch it ([`Planner`]), a call server that adds them the way SPEC says call
//! servers do ([`CallServer`]); `observed` reads what became of them.
//!
//! An incoming call to `to` with `call_sid` touches the callee's binding keys
//! (`<p>id:{<to>}:b`, `…:u`), each device's key (`<p>dev:{<credential>:<token>}`), the call's
//! ledger (`<p>sent:{<call_sid>}`) and its shard's streams (`<p>{<tag>}calls`, `…results`,
//! `…dead`). Every callee of a plan has one APNs device under `CRapns`.
//!
//! ```ignore
//! let mut plan = Planner::new(w.cluster.slot_map().await, w.layout.clone(), victim);
//! let calls = plan.calls("hung", 100);
//! let server = CallServer::new(&w.cluster, &w.layout).await;
//! let added = server.add_steadily(calls, Instant::now(), Duration::from_millis(100)).await;
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callpush::redis_conn::Layout;

use super::cluster_slots::{slot_map_from, SlotMap};
use super::fixtures::numbered_apns_token;
use super::redis_cluster::RedisCluster;

/// The credential every planned callee's device is registered under.
pub const CREDENTIAL: &str = "CRapns";
/// Healthy and affected callees a plan spreads its calls over, each.
const CALLEES: usize = 6;
/// How long a call server keeps trying to add one call (a failover in between).
const ADD_TIMEOUT: Duration = Duration::from_secs(60);

/// One incoming call a test adds, and the masters its keys live on.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    pub to: String,
    /// The callee's one APNs device.
    pub token: String,
    pub call_sid: String,
    /// The ports of the masters holding the call's keys when it was planned.
    pub masters: BTreeSet<u16>,
}

impl PlannedCall {
    /// Whether a key of this call lives on the master at `port`.
    pub fn touches(&self, port: u16) -> bool {
        self.masters.contains(&port)
    }
}

/// Every key an incoming call to `to` with `call_sid` touches, its callee having the one
/// device `token` under [`CREDENTIAL`].
pub fn call_keys(layout: &Layout, to: &str, token: &str, call_sid: &str) -> Vec<String> {
    let keys = layout.first();
    let shard = layout.shard_for(to);
    vec![
        keys.identity_bindings(to),
        keys.identity_updated(to),
        keys.device(CREDENTIAL, token),
        keys.sent(call_sid),
        shard.calls.clone(),
        shard.results.clone(),
        shard.dead.clone(),
    ]
}

/// Picks callees and call sids by trying candidates (`alice-<i>` with
/// `numbered_apns_token(i)`; `CA<tag>-<j>`) until their keys sit where a plan needs them.
pub struct Planner {
    map: SlotMap,
    layout: Layout,
    victim: u16,
    /// (identity, token) whose keys all avoid the victim.
    healthy: Vec<(String, String)>,
    /// (identity, token) with a key (bindings, device or shard) on the victim.
    affected: Vec<(String, String)>,
    next_sid: usize,
    /// Round robin over the healthy callees.
    next_healthy: usize,
}

impl Planner {
    /// A planner for calls around `victim` on the cluster `map` describes.
    pub fn new(map: SlotMap, layout: Layout, victim: u16) -> Planner {
        let mut planner = Planner {
            map,
            layout,
            victim,
            healthy: Vec::new(),
            affected: Vec::new(),
            next_sid: 0,
            next_healthy: 0,
        };
        for i in 0.. {
            if planner.healthy.len() == CALLEES && planner.affected.len() == CALLEES {
                break;
            }
            let callee = (format!("alice-{i}"), numbered_apns_token(i));
            let list = if planner.avoids_victim(&callee.0, &callee.1, None) {
                &mut planner.healthy
            } else {
                &mut planner.affected
            };
            if list.len() < CALLEES {
                list.push(callee);
            }
        }
        planner
    }

    fn masters(&self, to: &str, token: &str, call_sid: &str) -> BTreeSet<u16> {
        call_keys(&self.layout, to, token, call_sid)
            .iter()
            .map(|key| self.map.master_of(key))
            .collect()
    }

    /// Whether the callee's keys (and the call sid's ledger, when given) avoid the victim.
    fn avoids_victim(&self, to: &str, token: &str, call_sid: Option<&str>) -> bool {
        let keys = self.layout.first();
        let mut own = vec![
            keys.identity_bindings(to),
            keys.identity_updated(to),
            keys.device(CREDENTIAL, token),
            self.layout.shard_for(to).calls.clone(),
        ];
        own.extend(call_sid.map(|sid| keys.sent(sid)));
        own.iter().all(|key| self.map.master_of(key) != self.victim)
    }

    fn healthy_callee(&mut self) -> (String, String) {
        self.next_healthy += 1;
        self.healthy[self.next_healthy % CALLEES].clone()
    }

    /// Every callee the plan may ring, (identity, token), to register.
    pub fn callees(&self) -> Vec<(String, String)> {
        self.healthy.iter().chain(&self.affected).cloned().collect()
    }

    /// The next sid `CA<tag>-<j>` whose ledger is on the victim (`on_victim`) or not.
    fn sid(&mut self, tag: &str, on_victim: bool) -> String {
        loop {
            let sid = format!("CA{tag}-{}", self.next_sid);
            self.next_sid += 1;
            let key = self.layout.first().sent(&sid);
            if (self.map.master_of(&key) == self.victim) == on_victim {
                return sid;
            }
        }
    }

    /// `n` calls: two in three with every key off the victim; of every six, one whose callee
    /// (bindings, device or shard) is on the victim and one whose ledger alone is.
    pub fn calls(&mut self, tag: &str, n: usize) -> Vec<PlannedCall> {
        (0..n)
            .map(|k| {
                let (callee, sid) = match k % 6 {
                    0 => (self.affected[k / 6 % CALLEES].clone(), self.sid(tag, false)),
                    3 => (self.healthy_callee(), self.sid(tag, true)),
                    _ => (self.healthy_callee(), self.sid(tag, false)),
                };
                let (to, token) = callee;
                PlannedCall {
                    masters: self.masters(&to, &token, &sid),
                    to,
                    token,
                    call_sid: sid,
                }
            })
            .collect()
    }
}

/// One call as the call server added it.
#[derive(Debug, Clone)]
pub struct Added {
    pub call: PlannedCall,
    /// When the call server started adding it.
    pub sent_at: Instant,
    /// When the master answered the `XADD`.
    pub added_at: Instant,
    /// The master that answered.
    pub port: u16,
    /// How many replicas had the entry (`WAIT 1`), with [`CallServer::confirming`].
    pub replicas: Option<i64>,
}

/// A call server: it `XADD`s each call to the calls stream of its shard (SPEC's shard function)
/// on the master owning that stream, over a connection of its own, so a hung master holds only
/// the calls bound for it. On an error it asks the cluster for the master again and retries, as
/// a call server rides out a failover.
#[derive(Clone)]
pub struct CallServer {
    ports: Vec<u16>,
    layout: Layout,
    map: Arc<Mutex<SlotMap>>,
    /// `WAIT 1` after each `XADD` (docs/operations.md: how a call server learns its event
    /// survives a failover).
    confirm: bool,
}

impl CallServer {
    /// A call server for `cluster` with the shards of `layout`.
    pub async fn new(cluster: &RedisCluster, layout: &Layout) -> CallServer {
        CallServer {
            ports: cluster.node_ports(),
            layout: layout.clone(),
            map: Arc::new(Mutex::new(cluster.slot_map().await)),
            confirm: false,
        }
    }

    /// The same, sending `WAIT 1 500` after each `XADD`.
    pub fn confirming(mut self) -> CallServer {
        self.confirm = true;
        self
    }

    /// Add `call` to its shard, retrying (a failover) for up to [`ADD_TIMEOUT`].
    pub async fn add(&self, call: PlannedCall) -> Added {
        let key = self.layout.shard_for(&call.to).calls.clone();
        let sent_at = Instant::now();
        loop {
            let port = self.map.lock().unwrap().master_of(&key);
            match self.xadd(port, &key, &call).await {
                Ok(replicas) => {
                    return Added {
                        call,
                        sent_at,
                        added_at: Instant::now(),
                        port,
                        replicas,
                    }
                }
                Err(err) => {
                    assert!(
                        sent_at.elapsed() < ADD_TIMEOUT,
                        "{} not added within {ADD_TIMEOUT:?}: {err}",
                        call.call_sid
                    );
                    if let Some(map) = slot_map_from(&self.ports).await {
                        *self.map.lock().unwrap() = map;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// `XADD` on a connection of this call's own (a `WAIT` counts the writes of its
    /// connection), which waits out a paused master.
    async fn xadd(
        &self,
        port: u16,
        key: &str,
        call: &PlannedCall,
    ) -> Result<Option<i64>, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ADD_TIMEOUT))
            .set_response_timeout(Some(ADD_TIMEOUT));
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let fields = [
            ("type", "incoming"),
            ("to", call.to.as_str()),
            ("call_sid", call.call_sid.as_str()),
        ];
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg(&fields[..])
            .query_async(&mut conn)
            .await?;
        if !self.confirm {
            return Ok(None);
        }
        let replicas: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(500)
            .query_async(&mut conn)
            .await?;
        Ok(Some(replicas))
    }

    /// Add `calls`, the `k`-th at `start + k × period`, each on a task of its own (one bound
    /// for a hung master waits without holding back the rest); every call once added.
    pub async fn add_steadily(
        &self,
        calls: Vec<PlannedCall>,
        start: Instant,
        period: Duration,
    ) -> Vec<Added> {
        let mut tasks = Vec::with_capacity(calls.len());
        for (k, call) in calls.into_iter().enumerate() {
            tokio::time::sleep_until((start + period * k as u32).into()).await;
            let server = self.clone();
            tasks.push(tokio::spawn(async move { server.add(call).await }));
        }
        let mut added = Vec::with_capacity(tasks.len());
        for task in tasks {
            added.push(task.await.expect("adding a call"));
        }
        added
    }
}
