//! The load itself: identities with their bindings written through the real binding store
//! (many registrations in flight on one multiplexed connection, so 100,000 take seconds), call
//! events offered as one burst or at a smooth rate, and the wait for their outcomes on the
//! results stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use callpush::redis_conn::RedisConn;
use futures::{stream, StreamExt};

use super::providers::unix_us;
use super::BenchError;
use callpush::bindings::redis::RedisBindingStore;
use callpush::bindings::{BindingStore, NewBinding};
use callpush::dev::{DEV_APNS_SID, DEV_FCM_SID};
use callpush::domain::{now_ms, Platform};
use callpush::redis_conn::Keys;

/// Which platforms the bindings are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Every binding on APNs.
    Apns,
    /// Every binding on FCM.
    Fcm,
    /// Alternating: half APNs, half FCM.
    Half,
}

/// Registrations in flight at once while seeding.
const SEED_IN_FLIGHT: usize = 256;
/// Events per pipelined XADD round trip.
const XADD_CHUNK: usize = 1000;

/// The platform and device token of binding `k` (a number unique across the run).
fn device(mix: Mix, k: usize) -> (Platform, String) {
    let apns = match mix {
        Mix::Apns => true,
        Mix::Fcm => false,
        Mix::Half => k % 2 == 0,
    };
    if apns {
        // Leading zeros: never one of the simulator's behaviour prefixes (dead, 0bad, 503).
        (Platform::Apns, format!("{:064x}", k + 1))
    } else {
        (Platform::Fcm, format!("bench-fcm-{k}"))
    }
}

/// The identity of event or identity number `i`.
pub fn identity(i: usize) -> String {
    format!("bench-user-{i}")
}

/// Register `identities` × `per_identity` bindings.
pub async fn seed(
    conn: RedisConn,
    keys: Keys,
    identities: usize,
    per_identity: usize,
    mix: Mix,
) -> Result<(), BenchError> {
    let store = RedisBindingStore::new(conn, keys, 365, per_identity.max(1));
    let now = now_ms();
    let mut registrations = stream::iter(0..identities * per_identity)
        .map(|k| {
            let (platform, device_token) = device(mix, k);
            let credential = match platform {
                Platform::Apns => DEV_APNS_SID,
                Platform::Fcm => DEV_FCM_SID,
            };
            store.register(
                NewBinding {
                    identity: identity(k / per_identity),
                    platform,
                    credential: credential.into(),
                    device_token,
                    target: Default::default(),
                    environment: None,
                },
                now,
            )
        })
        .buffer_unordered(SEED_IN_FLIGHT);
    while let Some(done) = registrations.next().await {
        done.map_err(|e| BenchError::Protocol(format!("registering a binding: {e}")))?;
    }
    Ok(())
}

/// How events are offered.
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    /// All at once, in pipelined chunks.
    Burst,
    /// `per_sec` events per second, sent every 10 ms.
    Rate(u32),
}

/// Add `events` call events to `stream` as `offer` says; each call SID carries its send time.
pub async fn offer(
    conn: &mut RedisConn,
    stream: &str,
    events: usize,
    identities: usize,
    offer: Offer,
) -> Result<(), BenchError> {
    let (chunk, tick) = match offer {
        Offer::Burst => (XADD_CHUNK, None),
        Offer::Rate(per_sec) => {
            let per_tick = (per_sec as usize / 100).max(1);
            let tick = Duration::from_secs_f64(per_tick as f64 / f64::from(per_sec.max(1)));
            (per_tick, Some(tick))
        }
    };
    let start = Instant::now();
    let mut sent = 0;
    let mut ticks = 0u32;
    while sent < events {
        let n = chunk.min(events - sent);
        let now = unix_us();
        let mut pipe = redis::pipe();
        for e in sent..sent + n {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("type")
                .arg("incoming")
                .arg("to")
                .arg(identity(e % identities))
                .arg("call_sid")
                .arg(format!("bench-{now}-{e}"))
                .arg("ttl_ms")
                .arg("600000")
                .ignore();
        }
        let () = pipe.query_async(conn).await.map_err(BenchError::Redis)?;
        sent += n;
        if let Some(tick) = tick {
            ticks += 1;
            let next = start + tick * ticks;
            tokio::time::sleep_until(next.into()).await;
        }
    }
    Ok(())
}

/// Wait until `stream` holds `n` results or `timeout` passes; returns how many it holds.
pub async fn wait_for_results(
    conn: &mut RedisConn,
    stream: &str,
    n: usize,
    timeout: Duration,
) -> Result<usize, BenchError> {
    let until = Instant::now() + timeout;
    loop {
        let done: usize = redis::cmd("XLEN")
            .arg(stream)
            .query_async(conn)
            .await
            .map_err(BenchError::Redis)?;
        if done >= n || Instant::now() > until {
            return Ok(done);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outcomes on the results stream, counted.
pub async fn outcomes(
    conn: &mut RedisConn,
    stream: &str,
) -> Result<BTreeMap<String, u64>, BenchError> {
    let mut counts = BTreeMap::new();
    let mut from = "-".to_string();
    loop {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await
            .map_err(BenchError::Redis)?;
        let Some(last) = reply.ids.last() else {
            return Ok(counts);
        };
        from = format!("({}", last.id);
        for entry in &reply.ids {
            let outcome: Option<String> = entry.get("outcome");
            *counts.entry(outcome.unwrap_or_default()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_mix_alternates_and_tokens_never_pick_a_simulator_behaviour() {
        use callpush_sim::Behaviour;
        let platforms: Vec<Platform> = (0..4).map(|k| device(Mix::Half, k).0).collect();
        assert_eq!(
            platforms,
            [Platform::Apns, Platform::Fcm, Platform::Apns, Platform::Fcm]
        );
        for k in [0, 1, 0xdea, 0xdead, 0x503, 99_999] {
            for mix in [Mix::Apns, Mix::Fcm] {
                let (platform, token) = device(mix, k);
                assert_eq!(Behaviour::of(&token), Behaviour::Accept, "{token}");
                callpush::bindings::normalize_device_token(platform, &token).unwrap();
            }
        }
    }
}
