//! `limits.scope = "cluster"`: the callee's call limit and a credential's rate limit counted in
//! Redis, shared by every daemon of the group (two daemons in this process on one Redis and
//! one consumer group), and the in-memory backend, which has one daemon and counts in it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use callpush::config::{CredentialSettings, LimitScope, Settings};
use callpush::domain::Platform;
use support::daemon::TestDaemon;
use support::process::{DaemonProcess, Knobs};
use support::scrape;
use support::world::{Backend, World};

/// Each daemon reads one entry at a time, so the calls of a burst spread over both.
fn cluster_scope(s: &mut Settings) {
    s.limits.scope = LimitScope::Cluster;
    s.stream.batch_size = 1;
}

/// Two daemons of one group on the world's Redis, as two hosts would run them.
fn two_daemons(w: &World) -> [TestDaemon; 2] {
    ["host-a", "host-b"].map(|name| {
        let mut settings = w.settings.clone();
        settings.stream.consumer = Some(name.into());
        TestDaemon::start(settings)
    })
}

/// Events each daemon finished, from its own metrics.
async fn events_seen(daemons: &[TestDaemon]) -> Vec<f64> {
    let mut seen = Vec::new();
    for d in daemons {
        let scrape = scrape::fetch(&d.admin_url()).await;
        seen.push(scrape.value("callpush_events_total", &[]).unwrap_or(0.0));
    }
    seen
}

fn count(results: &[HashMap<String, String>], outcome: &str) -> usize {
    results.iter().filter(|r| r["outcome"] == outcome).count()
}

#[tokio::test]
async fn two_daemons_ring_a_callee_no_more_than_the_limit_in_total() {
    let mut w = World::with(|s| {
        cluster_scope(s);
        s.limits.calls_per_identity_per_min = 10;
    })
    .await;
    w.register("carol", Platform::Fcm, "fcm-carol").await;
    let daemons = two_daemons(&w);
    for i in 0..30 {
        w.ring("carol", &format!("CA-burst-{i}")).await;
    }
    let results = w.results(30).await;
    assert_eq!(count(&results, "delivered"), 10, "{results:?}");
    assert_eq!(count(&results, "dead_lettered"), 20, "{results:?}");
    let dead = w.dead(20).await;
    assert!(
        dead.iter().all(|d| d["reason"] == "rate_limited"),
        "{dead:?}"
    );
    assert_eq!(w.fcm.count(), 10, "only the rung calls reached FCM");
    let seen = events_seen(&daemons).await;
    assert!(
        seen.iter().all(|&n| n > 0.0),
        "both daemons took calls of the burst: {seen:?}"
    );
    for d in daemons {
        d.stop().await;
    }
}

#[tokio::test]
async fn two_daemons_share_a_credentials_rate_limit() {
    let mut w = World::with(|s| {
        cluster_scope(s);
        s.limits.calls_per_identity_per_min = 0;
        for c in &mut s.credentials {
            if let CredentialSettings::Fcm(f) = c {
                f.rate_limit_per_sec = Some(5);
            }
        }
    })
    .await;
    for i in 0..20 {
        w.register(&format!("user{i}"), Platform::Fcm, &format!("fcm-{i}"))
            .await;
    }
    let daemons = two_daemons(&w);
    for i in 0..20 {
        w.ring(&format!("user{i}"), &format!("CA-rate-{i}")).await;
    }
    let results = w.results(20).await;
    assert_eq!(count(&results, "delivered"), 20, "{results:?}");
    let pushes = w.fcm.requests();
    assert_eq!(pushes.len(), 20);
    let first = pushes.iter().map(|p| p.received_at).min().unwrap();
    let last = pushes.iter().map(|p| p.received_at).max().unwrap();
    // 5 at once, then one every 200 ms for the whole group: 3 s for the other 15. Counted by
    // each daemon on its own, the two would send them in half that.
    assert!(
        last - first >= Duration::from_millis(2_600),
        "20 pushes at 5/s across both daemons took {:?}",
        last - first
    );
    let seen = events_seen(&daemons).await;
    assert!(seen.iter().all(|&n| n > 0.0), "{seen:?}");
    for d in daemons {
        d.stop().await;
    }
}

#[tokio::test]
async fn cluster_scope_on_the_in_memory_backend_counts_in_the_one_daemon() {
    let mut w = World::on(Backend::Memory, |s| {
        cluster_scope(s);
        s.limits.calls_per_identity_per_min = 2;
    })
    .await;
    w.register("dave", Platform::Fcm, "fcm-dave").await;
    let daemon = w.start_daemon();
    for i in 0..3 {
        w.ring("dave", &format!("CA-dev-{i}")).await;
    }
    let results = w.results(3).await;
    assert_eq!(count(&results, "delivered"), 2, "{results:?}");
    assert_eq!(count(&results, "dead_lettered"), 1, "{results:?}");
    daemon.stop().await;
}

/// How many lines of `log` contain `text`.
fn lines_with(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

#[tokio::test]
async fn when_the_shared_limit_fails_calls_ring_under_the_daemons_own_count_until_it_answers() {
    let mut w = World::with(|s| {
        cluster_scope(s);
        s.limits.calls_per_identity_per_min = 3;
    })
    .await;
    w.register("erin", Platform::Fcm, "fcm-erin").await;
    // The limit script fails on erin's limiter key (a list where it keeps a number), while the
    // stream, the bindings and the ledger work: what a user sees when the shared count fails.
    let mut conn = w.redis.multiplexed().await;
    let key = format!("{}limit:callee:erin", w.prefix);
    let _: () = redis::cmd("RPUSH")
        .arg(&key)
        .arg("not a limiter")
        .query_async(&mut conn)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let knobs = Knobs {
        batch_size: 1,
        ..Knobs::default()
    };
    let daemon = DaemonProcess::start_on(&w.settings, dir.path(), "host-a", &knobs);
    for i in 0..6 {
        w.ring("erin", &format!("CA-down-{i}")).await;
    }
    let results = w.results(6).await;
    assert_eq!(
        count(&results, "delivered"),
        3,
        "counted by the daemon: {results:?}"
    );
    assert_eq!(count(&results, "dead_lettered"), 3, "{results:?}");
    let log = daemon.log_text();
    assert_eq!(
        lines_with(&log, "Redis did not answer"),
        1,
        "said once, not per call:\n{log}"
    );

    // The shared count works again: a fresh limiter in Redis, not the daemon's spent one.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for i in 0..4 {
        w.ring("erin", &format!("CA-back-{i}")).await;
    }
    let results = w.results(10).await;
    let back: Vec<_> = results
        .iter()
        .filter(|r| r["call_sid"].starts_with("CA-back-"))
        .cloned()
        .collect();
    assert_eq!(
        count(&back, "delivered"),
        3,
        "counted in Redis again: {back:?}"
    );
    assert_eq!(count(&back, "dead_lettered"), 1, "{back:?}");
    let log = daemon.log_text();
    assert_eq!(lines_with(&log, "Redis answers again"), 1, "{log}");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "the shared limiter counts again");
}
