//! Redis memory per binding: `used_memory` (INFO memory) before and after registering
//! bindings through the binding store, as the API does, on a fresh redis-server.
//!
//! `cargo run --release --example binding_memory -- [bindings] [per identity]` (defaults
//! 100000, 2): `bindings / per identity` identities, each with `per identity` devices. Prints
//! the bytes per binding and the extrapolation to a million bindings.

#[path = "../tests/support/mod.rs"]
mod support;

use callpush::bindings::{BindingStore, NewBinding};
use callpush::domain::{now_ms, Platform};
use support::daemon::settings;
use support::redis_server::{unique_prefix, RedisServer};

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bindings: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("bindings"));
    let per_identity: usize = args.next().map_or(2, |a| a.parse().expect("per identity"));
    let redis = RedisServer::start().await;
    let s = settings(&redis.url(), &unique_prefix(), "");
    let (_, store) = callpush::daemon::redis_backends(&s).await.unwrap();
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = used_memory(&mut conn).await;
    for chunk in (0..bindings).collect::<Vec<_>>().chunks(200) {
        let adds = chunk.iter().map(|n| {
            let new = NewBinding {
                identity: format!("user{}", n / per_identity),
                platform: Platform::Fcm,
                credential: "CRfcm".into(),
                device_token: format!("fcm-{n:0>8}-{}", "x".repeat(140)),
                target: Default::default(),
                environment: None,
            };
            let store = store.clone();
            async move { store.register(new, now_ms()).await.unwrap() }
        });
        futures::future::join_all(adds).await;
    }
    let after = used_memory(&mut conn).await;
    let per = (after - before) as f64 / bindings as f64;
    println!(
        "{bindings} bindings ({per_identity} per identity, 152-byte tokens): {} bytes more used_memory, {per:.0} bytes per binding, {:.0} MiB per million",
        after - before,
        per * 1e6 / 1_048_576.0
    );
}
