//! Throughput on a local 3-master Redis Cluster against a single Redis, with the same load:
//! the daemon in-process as `callpush serve` runs it, the APNs and FCM HTTP/2 doubles, every
//! identity with one APNs and one FCM device (two pushes per event).
//!
//! `cargo run --release --example cluster_throughput -- <cluster|single> [events] [identities]
//! [shards] [daemons]` (defaults 20000, 1000, 4, 1; `single` is one redis-server with
//! `stream.shards` streams). The events are enqueued first (through the queue, so each lands in
//! the shard of its `to`), then the daemons start (one consumer group, a consumer name each, in
//! this process) and drain them; the figure is events (and pushes) per second from start to the
//! last outcome on the results streams.
//!
//! `single <events> <identities> 1` is the plain single-Redis measurement (unsharded key names,
//! as `callpush serve` runs by default); `callpush-bench` (docs/benchmarks.md) is the full
//! benchmark with latency, CPU and the raw limits.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callpush::bindings::{BindingStore, NewBinding};
use callpush::config::CredentialSettings;
use callpush::domain::{now_ms, Platform};
use callpush::redis_conn::{self, Layout};
use support::apns_double::{ApnsDouble, DoubleOptions};
use support::daemon::{settings, TestDaemon};
use support::fcm_double::{FcmDouble, FcmDoubleOptions};
use support::redis_cluster::RedisCluster;
use support::redis_server::{unique_prefix, RedisServer};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "cluster".into());
    let mut number = |default: usize| {
        args.next()
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let events = number(20_000);
    let identities = number(1_000);
    let shards = number(4) as u32;
    let daemons = number(1);

    // Kept alive for the run.
    let (_cluster, _single, mut s) = match mode.as_str() {
        "cluster" => {
            let cluster = RedisCluster::start().await;
            let mut s = settings(&cluster.urls()[0], &unique_prefix(), "");
            s.redis.cluster = true;
            s.redis.urls = cluster.urls();
            (Some(cluster), None, s)
        }
        "single" => {
            let redis = RedisServer::start().await;
            let s = settings(&redis.url(), &unique_prefix(), "");
            (None, Some(redis), s)
        }
        other => panic!("mode {other}: cluster or single"),
    };
    s.stream.shards = shards;
    s.stream.block_ms = 100;
    // `callpush serve`'s default, not the tests' 2 s: a daemon slowed past `claim_idle_ms`
    // loses its entries to the other, which pushes their devices again (README, "Not promised").
    s.stream.claim_idle_ms = 10_000;
    s.limits.calls_per_identity_per_min = 0;
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    s.credentials
        .push(CredentialSettings::Apns(apns.credential("CRapns")));
    s.credentials
        .push(CredentialSettings::Fcm(fcm.credential("CRfcm", &sa)));

    let (queue, store) = callpush::daemon::redis_backends(&s).await.unwrap();
    for i in 0..identities {
        for (platform, credential, token) in [
            (Platform::Apns, "CRapns", format!("{:064x}", i + 1)),
            (Platform::Fcm, "CRfcm", format!("fcm-token-{i}")),
        ] {
            let new = NewBinding {
                identity: format!("user{i}"),
                platform,
                credential: credential.into(),
                device_token: token,
                target: Default::default(),
                environment: None,
            };
            store.register(new, now_ms()).await.unwrap();
        }
    }
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let adds = chunk.iter().map(|n| {
            let fields: Vec<(String, String)> = [
                ("type", "incoming".to_string()),
                ("to", format!("user{}", n % identities)),
                ("call_sid", format!("CA{n}")),
                ("ttl_ms", "600000".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let queue = queue.clone();
            async move { queue.enqueue(&fields).await.unwrap() }
        });
        futures::future::join_all(adds).await;
    }

    let layout = Layout::new(&s.redis.key_prefix, shards, s.redis.cluster).unwrap();
    let mut conn = redis_conn::connect(&s.redis).await.unwrap();
    let start = Instant::now();
    let running: Vec<TestDaemon> = (0..daemons)
        .map(|d| {
            let mut s = s.clone();
            s.stream.consumer = Some(format!("bench-{d}"));
            TestDaemon::start(s)
        })
        .collect();
    loop {
        let mut done = 0;
        for keys in layout.shards() {
            let n: usize = redis::cmd("XLEN")
                .arg(&keys.results)
                .query_async(&mut conn)
                .await
                .unwrap();
            done += n;
        }
        if done >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    for daemon in running {
        daemon.stop().await;
    }
    let pushes = apns.count() + fcm.count();
    let tally = support::tally::Tally::of_doubles(&apns, &fcm);
    let repeated = tally.pushes.values().filter(|n| **n > 1).count();
    println!(
        "{mode}, {shards} shard(s), {daemons} daemon(s): {events} events, {pushes} pushes ({repeated} devices pushed twice) in {:.2} s: {:.0} events/s, {:.0} pushes/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        pushes as f64 / elapsed.as_secs_f64()
    );
}
