//! A rough throughput measurement of the whole pipeline on this machine: a real redis-server,
//! the APNs and FCM HTTP/2 test doubles, and the daemon as `callpush serve` runs it.
//!
//! `cargo run --release --example throughput -- [events] [identities]` (defaults 20000, 1000).
//! Every identity has one APNs and one FCM device, so each event is two pushes. The events are
//! enqueued first, then the daemon starts and drains the stream; the figure is events (and
//! pushes) per second from start to the last outcome on the results stream.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callpush::domain::Platform;
use support::daemon::TestDaemon;
use support::world::World;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(20_000, |a| a.parse().expect("events"));
    let identities: usize = args
        .next()
        .map_or(1_000, |a| a.parse().expect("identities"));

    let w = World::with(|s| s.stream.block_ms = 100).await;
    for i in 0..identities {
        let identity = format!("user{i}");
        w.register(&identity, Platform::Apns, &format!("{:064x}", i + 1))
            .await;
        w.register(&identity, Platform::Fcm, &format!("fcm-token-{i}"))
            .await;
    }

    let mut conn = w.conn.clone();
    let calls = format!("{}calls", w.prefix);
    for chunk in (0..events).collect::<Vec<_>>().chunks(1_000) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("XADD")
                .arg(&calls)
                .arg("*")
                .arg("type")
                .arg("incoming")
                .arg("to")
                .arg(format!("user{}", n % identities))
                .arg("call_sid")
                .arg(format!("CA{n}"))
                .arg("ttl_ms")
                .arg("600000")
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }

    let results = format!("{}results", w.prefix);
    let start = Instant::now();
    let daemon = TestDaemon::start(w.settings.clone());
    loop {
        let done: usize = redis::cmd("XLEN")
            .arg(&results)
            .query_async(&mut conn)
            .await
            .unwrap();
        if done >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    daemon.stop().await;
    let pushes = w.apns.count() + w.fcm.count();
    println!(
        "{events} events, {pushes} pushes in {:.2} s: {:.0} events/s, {:.0} pushes/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        pushes as f64 / elapsed.as_secs_f64()
    );
}
