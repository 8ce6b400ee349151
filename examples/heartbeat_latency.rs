//! How long a touch takes while a burst saturates the shared connection: the same XCLAIM
//! JUSTID a touch runs, once on the queue's heartbeat connection (`CallQueue::touch`) and once
//! on the shared connection behind the burst, on a fresh redis-server.
//!
//! `cargo run --example heartbeat_latency -- [burst] [rounds]` (defaults 20000, 3): each round
//! sends `burst` concurrent XRANGE reads (10 entries each) over the shared connection, waits
//! 300 ms for them to queue up, then times both touches of 200 entries in flight.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callpush::ingest::redis::{QueueOptions, RedisCallQueue};
use callpush::ingest::CallQueue;
use callpush::redis_conn::{connect, connect_blocking, connect_heartbeat, Keys};
use support::redis_server::{unique_prefix, RedisServer};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let burst: usize = args.next().map_or(20_000, |a| a.parse().expect("burst"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let settings = redis.settings(&prefix);
    let keys = Keys::new(&prefix).unwrap();
    let shared = connect(&settings).await.unwrap();
    let options = QueueOptions {
        group: "callpush".into(),
        consumer: "busy".into(),
        results_enabled: true,
        results_max_len: 1000,
        dead_max_len: 1000,
        calls_max_len: 1000,
        consumer_idle_delete: Duration::from_secs(3_600),
    };
    let queue = RedisCallQueue::new(
        shared.clone(),
        connect_blocking(&settings, Duration::from_secs(2))
            .await
            .unwrap(),
        connect_heartbeat(&settings, Duration::from_secs(10))
            .await
            .unwrap(),
        keys.clone(),
        options,
    );
    queue.ensure_group().await.unwrap();
    for i in 0..200 {
        let fields = [
            ("type", "incoming"),
            ("to", "alice"),
            ("call_sid", &format!("CA{i}")),
        ];
        let fields: Vec<_> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        queue.enqueue(&fields).await.unwrap();
    }
    let read = queue
        .read_new(200, Duration::from_millis(100))
        .await
        .unwrap();
    let ids: Vec<String> = read.into_iter().map(|e| e.id).collect();
    for round in 1..=rounds {
        let reads = (0..burst).map(|_| {
            let mut conn = shared.clone();
            let calls = keys.calls.clone();
            async move {
                redis::cmd("XRANGE")
                    .arg(&calls)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(10)
                    .query_async::<redis::Value>(&mut conn)
                    .await
                    .is_ok()
            }
        });
        let load = tokio::spawn(futures::future::join_all(reads));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        let own = queue.touch(&ids).await;
        let own_took = start.elapsed();
        let start = Instant::now();
        let behind = redis::cmd("XCLAIM")
            .arg(&keys.calls)
            .arg("callpush")
            .arg("busy")
            .arg(0)
            .arg(&ids)
            .arg("JUSTID")
            .query_async::<redis::Value>(&mut shared.clone())
            .await;
        let behind_took = start.elapsed();
        let answered = load.await.unwrap().into_iter().filter(|ok| *ok).count();
        println!(
            "round {round}: heartbeat connection {own_took:.1?} ({}), shared connection \
             {behind_took:.1?} ({}); {answered} of {burst} burst reads answered",
            if own.is_ok() { "ok" } else { "failed" },
            if behind.is_ok() { "ok" } else { "timed out" },
        );
    }
}
