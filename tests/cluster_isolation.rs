//! Failures stay where they start, on a real Redis Cluster (issue #21): three masters, four
//! stream shards, the real binary, one call every 100 ms added the way call servers add them
//! (each `XADD` on the master of its shard, on a connection of its own).
//!
//! - A master hung (SIGSTOP) for 7 s: every call whose keys all live on the two healthy masters
//!   rings within [`RING_WITHIN`] of being added, however the hang falls; once the master is
//!   back every call rings and has exactly one outcome, and no device rings twice for one call.
//! - A master killed (SIGKILL), with a replica each and a 2 s `cluster-node-timeout`: its
//!   replica takes over, the calls on its slots ring after the failover, and none is lost or
//!   ends or rings twice but for what docs/operations.md ("What an asynchronous replica can
//!   lose") allows.
//! - What the first rests on: callpush's cluster connection keeps answering for the healthy
//!   masters while one hangs.
//!
//! Each test prints what it measured: ring delays, and the daemon's warnings and errors (with
//! the Redis client's own).

mod support;

use std::time::{Duration, Instant};

use callpush::bindings::NewBinding;
use callpush::domain::{now_ms, Platform};
use support::cluster_calls::{Added, CallServer, Planner, CREDENTIAL};
use support::cluster_world::{ClusterWorld, SHARDS};
use support::observed::{describe, wait_rings, Observed, DRAIN};
use support::process::{DaemonProcess, Knobs};
use support::redis_cluster::ClusterOptions;
use tokio::task::JoinHandle;

/// One call every this long...
const PERIOD: Duration = Duration::from_millis(100);
/// ...from this long before the fault on.
const BEFORE_FAULT: Duration = Duration::from_secs(1);
/// How long the hung master stays stopped.
const STOP_FOR: Duration = Duration::from_secs(7);
/// How soon a call whose keys all live on healthy masters rings (the bound).
const RING_WITHIN: Duration = Duration::from_secs(1);

/// A cluster of three masters that counts a hung one as up for longer than [`STOP_FOR`]: with
/// a shorter `cluster-node-timeout` the other masters would mark it failed and answer every
/// command with CLUSTERDOWN until it is back (`cluster-require-full-coverage`), whatever
/// callpush does.
const HANG: ClusterOptions = ClusterOptions {
    replicas: 0,
    node_timeout: Duration::from_secs(15),
};

/// A cluster with the daemon running, a plan of calls around one master (the victim) and a
/// call server to add them.
struct Scene {
    w: ClusterWorld,
    victim: u16,
    plan: Planner,
    server: CallServer,
    daemon: DaemonProcess,
    /// The calls added so far.
    added: Vec<Added>,
}

impl Scene {
    /// A cluster as `options` says, its first shard's master the victim; every callee of the
    /// plan registered (one APNs device each) and the daemon started; returns once it rang a
    /// first round of calls, so the fault finds it running. `confirming`: the call server
    /// waits for a replica after each `XADD`.
    async fn start(options: ClusterOptions, confirming: bool) -> Scene {
        let w = ClusterWorld::start_with(options, SHARDS).await;
        let map = w.cluster.slot_map().await;
        let victim = map.master_of(&w.layout.shards()[0].calls);
        let mut plan = Planner::new(map, w.layout.clone(), victim);
        let mut server = CallServer::new(&w.cluster, &w.layout).await;
        if confirming {
            server = server.confirming();
        }
        for (to, token) in plan.callees() {
            let binding = NewBinding {
                identity: to,
                platform: Platform::Apns,
                credential: CREDENTIAL.into(),
                device_token: token,
                target: Default::default(),
                environment: None,
            };
            w.store.register(binding, now_ms()).await.unwrap();
        }
        // `stream.claim_idle_ms` as deployed (its default), and the Redis client's own log.
        let knobs = Knobs {
            claim_idle_ms: 10_000,
            log_filter: "callpush=info,redis=info".into(),
            ..Knobs::default()
        };
        let daemon = w.daemon("d1", &knobs);
        let mut added = Vec::new();
        for call in plan.calls("warm", 12) {
            added.push(server.add(call).await);
        }
        let sids: Vec<String> = added.iter().map(|a| a.call.call_sid.clone()).collect();
        let rung = wait_rings(&w.apns, &sids, Duration::from_secs(30)).await;
        assert!(
            sids.iter().all(|s| rung.contains_key(s)),
            "the daemon does not ring: {:?}\n{}",
            rung.keys(),
            daemon.log_text()
        );
        Scene {
            w,
            victim,
            plan,
            server,
            daemon,
            added,
        }
    }

    /// Start adding `n` calls `CA<tag>-<k>`, one every [`PERIOD`]; returns once the fault is
    /// due ([`BEFORE_FAULT`] into them), with the task adding them.
    async fn add_steadily(&mut self, tag: &str, n: usize) -> JoinHandle<Vec<Added>> {
        let calls = self.plan.calls(tag, n);
        let start = Instant::now() + PERIOD;
        let server = self.server.clone();
        let adding = tokio::spawn(async move { server.add_steadily(calls, start, PERIOD).await });
        tokio::time::sleep_until((start + BEFORE_FAULT).into()).await;
        adding
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_delays_only_the_calls_whose_keys_live_there() {
    let mut scene = Scene::start(HANG, false).await;
    let victim = scene.victim;
    let adding = scene.add_steadily("hung", 100).await;
    scene.w.cluster.pause(victim);
    let stopped_at = Instant::now();
    tokio::time::sleep(STOP_FOR).await;
    scene.w.cluster.resume(victim);
    let resumed_at = Instant::now();
    let steady = adding.await.unwrap();
    let mut added = scene.added.clone();
    added.extend(steady.iter().cloned());
    let seen = Observed::wait(&mut scene.w, &added).await;

    // Every call added until the master came back whose keys all avoid it: the hang must not
    // touch them, whether they came before it or during it.
    let healthy: Vec<&Added> = steady
        .iter()
        .filter(|a| a.added_at < resumed_at && !a.call.touches(victim))
        .collect();
    let late: Vec<String> = healthy
        .iter()
        .filter(|a| seen.delay(a).is_none_or(|d| d > RING_WITHIN))
        .map(|a| {
            let when = match a.added_at.checked_duration_since(stopped_at) {
                Some(d) => format!("{d:.1?} into the stop"),
                None => format!("{:.1?} before the stop", stopped_at - a.added_at),
            };
            let rang = seen
                .delay(a)
                .map_or("never rang".into(), |d| format!("rang {d:.1?} after"));
            format!(
                "{} to {} (added {when}): {rang}",
                a.call.call_sid, a.call.to
            )
        })
        .collect();
    let during = |a: &&Added| a.added_at >= stopped_at && a.added_at < resumed_at;
    eprintln!(
        "master {victim} stopped for {:.1?}: {} of {} healthy calls rang within {RING_WITHIN:?}; \
         ring delays of healthy calls added before the stop {}, during it {}; of calls touching \
         the stopped master added during it {}\ndaemon warnings and errors:\n{}",
        resumed_at - stopped_at,
        healthy.len() - late.len(),
        healthy.len(),
        seen.delays(healthy.iter().copied().filter(|a| a.added_at < stopped_at)),
        seen.delays(healthy.iter().copied().filter(during)),
        seen.delays(
            steady
                .iter()
                .filter(during)
                .filter(|a| a.call.touches(victim))
        ),
        scene.daemon.warnings(),
    );
    assert!(
        late.is_empty(),
        "{} of {} calls whose keys all live on healthy masters, added before master {victim} \
         came back, did not ring within {RING_WITHIN:?}:\n{}",
        late.len(),
        healthy.len(),
        late.join("\n")
    );
    // Once it is back: every call rang once and ended once.
    let wrong: Vec<String> = added
        .iter()
        .filter(|a| seen.times_rung(a) != 1 || seen.ends(a) != ["delivered"])
        .map(|a| {
            let (sid, rang) = (&a.call.call_sid, seen.times_rung(a));
            format!("{sid}: rang {rang} times, outcomes {:?}", seen.ends(a))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        seen.outcomes.len(),
        added.len(),
        "outcomes of calls never added"
    );
}

/// Whether a call ended as promised around a failover of `victim` at `killed_at`
/// (docs/operations.md, "What an asynchronous replica can lose"): once rung and `delivered`;
/// never rung nor ended only when its `XADD` reached the dead master and no replica; rung or
/// ended twice (`delivered`, then `duplicate`) only when its keys were on the dead master
/// while it died.
fn judge(a: &Added, seen: &Observed, victim: u16, killed_at: Instant) -> Result<(), String> {
    let (ends, rang) = (seen.ends(a), seen.times_rung(a));
    let lost_xadd = a.port == victim && a.replicas == Some(0);
    let in_flight = a.call.touches(victim) && a.added_at < killed_at;
    let repeat_ok = ends.iter().all(|o| o == "delivered" || o == "duplicate");
    match (ends.len(), rang) {
        (1, 1) if ends[0] == "delivered" => Ok(()),
        (0, 0 | 1) if lost_xadd => Ok(()),
        (1 | 2, 1 | 2) if in_flight && repeat_ok => Ok(()),
        _ => Err(format!(
            "{} (on {:?}, added {} the kill to {}, {:?} replicas had it): rang {rang} times, \
             outcomes {ends:?}",
            a.call.call_sid,
            a.call.masters,
            if a.added_at < killed_at {
                "before"
            } else {
                "after"
            },
            a.port,
            a.replicas,
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_failed_masters_calls_ring_and_none_is_lost() {
    let options = ClusterOptions {
        replicas: 1,
        node_timeout: Duration::from_secs(2),
    };
    let mut scene = Scene::start(options, true).await;
    let victim = scene.victim;
    let adding = scene.add_steadily("fail", 120).await;
    scene.w.cluster.kill(victim);
    let killed_at = Instant::now();
    let promoted = scene.w.cluster.wait_for_failover(victim, DRAIN).await;
    let failover_at = Instant::now();
    let mut added = scene.added.clone();
    added.extend(adding.await.unwrap());
    // A connection that learns the new slot map from the start.
    let w = &mut scene.w;
    w.conn = w.cluster.client().get_async_connection().await.unwrap();
    let seen = Observed::wait(w, &added).await;

    let wrong: Vec<String> = added
        .iter()
        .filter_map(|a| judge(a, &seen, victim, killed_at).err())
        .collect();
    let lost: Vec<&String> = added
        .iter()
        .filter(|a| seen.times_rung(a) == 0)
        .map(|a| &a.call.call_sid)
        .collect();
    let healthy = |a: &&Added| !a.call.touches(victim);
    let in_failover = |a: &&Added| a.added_at >= killed_at && a.added_at < failover_at;
    let mut after_failover: Vec<Duration> = added
        .iter()
        .filter(|a| a.call.touches(victim) && a.added_at >= killed_at)
        .filter_map(|a| {
            let first = seen.rung.get(&a.call.call_sid)?.first()?;
            Some(first.saturating_duration_since(a.added_at.max(failover_at)))
        })
        .collect();
    eprintln!(
        "master {victim} killed; replica {promoted} served its slots {:.1?} later; calls that \
         never rang: {lost:?}; ring delays of healthy calls added before the kill \
         {}, during the failover {}; calls on the failed master added after the kill rang, \
         counted from the failover (or their add, if later): {}\ndaemon warnings and \
         errors:\n{}",
        failover_at - killed_at,
        seen.delays(
            added
                .iter()
                .filter(healthy)
                .filter(|a| a.added_at < killed_at)
        ),
        seen.delays(added.iter().filter(healthy).filter(in_failover)),
        describe(&mut after_failover),
        scene.daemon.warnings(),
    );
    assert!(
        wrong.is_empty(),
        "calls that did not ring once and end once, beyond what a failover may lose or \
         repeat:\n{}",
        wrong.join("\n")
    );
}

/// What the isolation above rests on: the cluster connection callpush makes
/// (`redis_conn::connect`) answers commands for the healthy masters at once while commands for
/// a hung one wait out their timeouts on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_connection_serves_healthy_masters_while_one_hangs() {
    let mut w = ClusterWorld::start_with(HANG, SHARDS).await;
    let map = w.cluster.slot_map().await;
    let victim = map.master_of(&w.layout.shards()[0].calls);
    let key_on = |healthy: bool| {
        (0..)
            .map(|i| format!("{}probe-{i}", w.settings.redis.key_prefix))
            .find(|k| (map.master_of(k) != victim) == healthy)
            .unwrap()
    };
    let (healthy, hung) = (key_on(true), key_on(false));
    let conn = callpush::redis_conn::connect(&w.settings.redis)
        .await
        .unwrap();
    for key in [&healthy, &hung] {
        let mut set = redis::cmd("SET");
        set.arg(key).arg("x");
        set.query_async::<()>(&mut conn.clone()).await.unwrap();
    }
    let get = move |key: String| {
        let mut conn = conn.clone();
        async move {
            let asked = Instant::now();
            let got = redis::cmd("GET").arg(&key).query_async(&mut conn).await;
            (got as Result<String, _>, asked.elapsed())
        }
    };
    w.cluster.pause(victim);
    let stuck = tokio::spawn({
        let get = get.clone();
        let hung = hung.clone();
        async move {
            let mut timeouts = 0;
            while timeouts < 2 {
                timeouts += usize::from(get(hung.clone()).await.0.is_err());
            }
            timeouts
        }
    });
    let (mut slow, mut waits) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < STOP_FOR - Duration::from_secs(1) {
        let (got, wait) = get(healthy.clone()).await;
        waits.push(wait);
        if got.is_err() || wait > RING_WITHIN {
            let into = start.elapsed();
            slow.push(format!(
                "{into:.1?} into the stop: {got:?} after {wait:.1?}"
            ));
        }
        tokio::time::sleep(PERIOD).await;
    }
    w.cluster.resume(victim);
    let timeouts = stuck.await.unwrap();
    eprintln!(
        "GET on a healthy master while master {victim} was stopped: {}; {timeouts} GETs on the \
         stopped master timed out meanwhile",
        describe(&mut waits)
    );
    assert!(
        slow.is_empty(),
        "the cluster connection held commands for healthy masters:\n{}",
        slow.join("\n")
    );
    let (got, _) = get(hung).await;
    assert_eq!(got.expect("the master answers again once thawed"), "x");
}
