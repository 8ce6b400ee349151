//! The real binary killed and stopped mid-burst, and two daemons sharing one group: nothing is
//! lost (every call gets exactly one outcome) and no device is rung twice for one call.

mod support;

use std::time::{Duration, Instant};

use support::process::{DaemonProcess, Knobs};
use support::tally::{add_calls, assert_one_outcome_each, register_users, wait_results, Tally};
use support::world::World;

/// Long enough for a few thousand events on a busy 2-core machine.
const RUN: Duration = Duration::from_secs(40);

async fn unlimited_world() -> World {
    World::with(|s| s.limits.calls_per_identity_per_min = 0).await
}

async fn wait_pushes(w: &World, n: usize) {
    let start = Instant::now();
    while w.apns.count() + w.fcm.count() < n {
        assert!(
            start.elapsed() < RUN,
            "only {} pushes",
            w.apns.count() + w.fcm.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_burst_then_restart_loses_nothing_and_rings_nobody_twice() {
    let mut w = unlimited_world().await;
    let dir = tempfile::tempdir().unwrap();
    register_users(&w, 100).await;
    let sids = add_calls(&mut w, "k", 2_000, 100).await;
    let knobs = Knobs::default();
    let first = DaemonProcess::start(&w, dir.path(), "crashy", &knobs);
    // Two pushes per call: kill it about a third of the way through.
    wait_pushes(&w, 1_300).await;
    first.kill9();
    let killed_at = w.apns.count() + w.fcm.count();
    assert!(
        killed_at < 4_000,
        "killed before the end ({killed_at} pushes)"
    );

    let second = DaemonProcess::start(&w, dir.path(), "crashy", &knobs);
    let results = wait_results(&mut w, sids.len(), RUN).await;
    let outcomes = assert_one_outcome_each(&results, &sids);
    let tally = Tally::of(&w);
    tally.assert_no_double_ring();
    let duplicates = outcomes.values().filter(|o| *o == "duplicate").count();
    let delivered = outcomes.values().filter(|o| *o == "delivered").count();
    eprintln!(
        "killed after {killed_at} pushes; {delivered} delivered, {duplicates} duplicate, {} rang",
        tally.calls_rung()
    );
    assert_eq!(delivered + duplicates, sids.len(), "{outcomes:?}");
    // Only events in flight at the kill can end `duplicate`, and only those may have lost a
    // push that was claimed but never sent.
    assert!(duplicates <= knobs.max_in_flight, "{duplicates} duplicates");
    assert!(
        tally.calls_rung() >= sids.len() - knobs.max_in_flight,
        "{} calls rang a device",
        tally.calls_rung()
    );
    let status = second.sigterm(Duration::from_secs(15)).await;
    assert!(status.success());
    assert_eq!(w.pending().await, 0);
}

#[tokio::test]
async fn sigterm_mid_burst_exits_0_and_a_second_daemon_finishes_the_rest() {
    let mut w = unlimited_world().await;
    let dir = tempfile::tempdir().unwrap();
    register_users(&w, 50).await;
    // Slow providers and few slots, so the burst is far from done at SIGTERM.
    w.fcm
        .set_default(support::fcm_double::Answer::ok().delayed(Duration::from_millis(100)));
    let sids = add_calls(&mut w, "t", 600, 50).await;
    let knobs = Knobs {
        max_in_flight: 32,
        batch_size: 16,
        ..Knobs::default()
    };
    let first = DaemonProcess::start(&w, dir.path(), "first", &knobs);
    wait_pushes(&w, 100).await;
    let status = first.sigterm(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}");
    let done_by_first = wait_results(&mut w, 0, Duration::ZERO).await.len();
    assert!(
        done_by_first > 0 && done_by_first < sids.len(),
        "the first daemon finished {done_by_first} of {}",
        sids.len()
    );
    assert_eq!(
        w.pending().await,
        0,
        "in-flight events finished within the grace period"
    );

    let second = DaemonProcess::start(&w, dir.path(), "second", &knobs);
    let results = wait_results(&mut w, sids.len(), RUN).await;
    let outcomes = assert_one_outcome_each(&results, &sids);
    assert!(outcomes.values().all(|o| o == "delivered"), "{outcomes:?}");
    Tally::of(&w).assert_no_double_ring();
    assert!(second.sigterm(Duration::from_secs(15)).await.success());
}

#[tokio::test]
async fn two_daemons_in_one_group_share_the_work_without_duplicates() {
    let mut w = unlimited_world().await;
    let dir = tempfile::tempdir().unwrap();
    register_users(&w, 50).await;
    w.fcm
        .set_default(support::fcm_double::Answer::ok().delayed(Duration::from_millis(20)));
    let knobs = Knobs {
        max_in_flight: 64,
        batch_size: 16,
        ..Knobs::default()
    };
    let a = DaemonProcess::start(&w, dir.path(), "left", &knobs);
    let b = DaemonProcess::start(&w, dir.path(), "right", &knobs);
    let sids = add_calls(&mut w, "s", 1_000, 50).await;
    // Watch who holds work while it runs.
    let mut busy = std::collections::HashSet::new();
    let start = Instant::now();
    loop {
        for (name, pending) in consumers(&mut w).await {
            if pending > 0 {
                busy.insert(name);
            }
        }
        let len: usize = redis::cmd("XLEN")
            .arg(format!("{}results", w.prefix))
            .query_async(&mut w.conn)
            .await
            .unwrap();
        if len >= sids.len() || start.elapsed() > RUN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let results = wait_results(&mut w, sids.len(), Duration::ZERO).await;
    let outcomes = assert_one_outcome_each(&results, &sids);
    assert!(outcomes.values().all(|o| o == "delivered"), "{outcomes:?}");
    Tally::of(&w).assert_no_double_ring();
    assert_eq!(w.apns.count() + w.fcm.count(), 2 * sids.len());
    let mut busy: Vec<_> = busy.into_iter().collect();
    busy.sort();
    assert_eq!(busy, vec!["left", "right"], "both daemons consumed");
    assert!(a.sigterm(Duration::from_secs(15)).await.success());
    assert!(b.sigterm(Duration::from_secs(15)).await.success());
}

/// `XINFO CONSUMERS`: each consumer's name and pending count.
async fn consumers(w: &mut World) -> Vec<(String, u64)> {
    let reply: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(format!("{}calls", w.prefix))
        .arg("callpush")
        .query_async(&mut w.conn)
        .await
        .unwrap_or_default();
    reply
        .into_iter()
        .filter_map(|c| {
            let name = redis::from_redis_value_ref::<String>(c.get("name")?).ok()?;
            let pending = redis::from_redis_value_ref::<u64>(c.get("pending")?).ok()?;
            Some((name, pending))
        })
        .collect()
}
