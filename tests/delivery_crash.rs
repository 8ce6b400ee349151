//! The real binary killed and stopped mid-burst, and two daemons sharing one group: nothing is
//! lost (every call gets exactly one outcome and rings), a push that was in flight when its
//! daemon died is sent again, and a push a provider accepted is never sent twice.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callpush::dispatch::ledger::device_key;
use callpush::domain::{Platform, PushKind};
use support::fcm_double;
use support::fixtures::numbered_apns_token;
use support::process::{DaemonProcess, Knobs};
use support::tally::{
    add_calls, add_calls_to, assert_one_outcome_each, register_users, wait_results, Tally,
};
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

/// Calls to 200 identities: `both<i>` (an APNs device Apple answers at once, and an FCM device)
/// and `fcm<i>` (an FCM device only), while Google holds every answer: the daemon is killed with
/// about 500 FCM pushes in flight and every APNs push accepted.
struct InFlight {
    w: World,
    dir: tempfile::TempDir,
    sids: Vec<String>,
    knobs: Knobs,
    /// When the first daemon was dead.
    killed_at: tokio::time::Instant,
}

const CALLS: usize = 1_000;
const USERS: usize = 100;

async fn kill_with_pushes_in_flight() -> InFlight {
    let mut w = unlimited_world().await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..USERS {
        w.register(
            &format!("both{i}"),
            Platform::Apns,
            &numbered_apns_token(i as u64),
        )
        .await;
        w.register(&format!("both{i}"), Platform::Fcm, &format!("fcm-both-{i}"))
            .await;
        w.register(&format!("fcm{i}"), Platform::Fcm, &format!("fcm-only-{i}"))
            .await;
    }
    // Google answers nothing before the kill: every FCM push is in flight when it comes.
    w.fcm
        .set_default(fcm_double::Answer::ok().delayed(Duration::from_secs(3_600)));
    let sids = add_calls_to(&mut w, "kill", CALLS, |k| match k % 2 {
        0 => format!("both{}", (k / 2) % USERS),
        _ => format!("fcm{}", (k / 2) % USERS),
    })
    .await;
    // Room for every event; FCM (one of two credentials) gets half the push slots.
    let knobs = Knobs {
        max_in_flight: 1_024,
        batch_size: 256,
        ..Knobs::default()
    };
    let first = DaemonProcess::start(&w, dir.path(), "crashy", &knobs);
    let both_calls = CALLS / 2;
    assert!(
        w.apns.wait_for(both_calls, RUN).await,
        "only {} APNs pushes",
        w.apns.count()
    );
    assert!(
        w.fcm.wait_for_received(knobs.max_in_flight / 2, RUN).await,
        "only {} FCM pushes in flight",
        w.fcm.received()
    );
    // Every accepted APNs push is recorded `sent` in the ledger before the kill.
    let started = Instant::now();
    while accepted_in_ledger(&mut w, &sids).await < both_calls {
        assert!(started.elapsed() < RUN, "APNs deliveries not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill9();
    let killed_at = tokio::time::Instant::now();
    assert_eq!(w.fcm.count(), 0, "no FCM push was answered before the kill");
    assert!(w.fcm.received() < CALLS, "killed mid-burst");
    // Google answers at once from now on.
    w.fcm.set_default(fcm_double::Answer::ok());
    InFlight {
        w,
        dir,
        sids,
        knobs,
        killed_at,
    }
}

/// How many calls' APNs devices the ledger records as accepted.
async fn accepted_in_ledger(w: &mut World, sids: &[String]) -> usize {
    let mut pipe = redis::pipe();
    let mut asked = 0;
    for (k, sid) in sids.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
        let device = device_key(
            PushKind::Incoming,
            "CRapns",
            &numbered_apns_token(((k / 2) % USERS) as u64),
        );
        pipe.cmd("HGET").arg(w.keys.sent(sid)).arg(device);
        asked += 1;
    }
    let states: Vec<Option<String>> = pipe.query_async(&mut w.conn).await.unwrap();
    assert_eq!(states.len(), asked);
    states
        .iter()
        // `sent|<stream id>`: accepted, for that entry (`sent` before device acks).
        .filter(|s| s.as_deref().is_some_and(|s| s.starts_with("sent")))
        .count()
}

/// After the restart or takeover: each call got one outcome and rang; the APNs pushes accepted
/// before the kill were not sent again; every FCM push in flight at the kill was sent again by
/// the daemon that took over, exactly once per device. (Pushes the dead daemon had on the wire
/// may still reach Google after its death — that is the window in which a device may ring
/// twice, and the doubles count them apart: they carry the dead daemon's OAuth token.)
async fn assert_every_call_rang_once(run: &mut InFlight) {
    let w = &mut run.w;
    let results = wait_results(w, run.sids.len(), RUN).await;
    let outcomes = assert_one_outcome_each(&results, &run.sids);
    let not_delivered: Vec<_> = outcomes.iter().filter(|(_, o)| *o != "delivered").collect();
    assert!(
        not_delivered.is_empty(),
        "{} calls not delivered, e.g. {:?}",
        not_delivered.len(),
        &not_delivered[..not_delivered.len().min(5)]
    );
    let tally = Tally::of(w);
    assert_eq!(
        tally.calls_rung(),
        run.sids.len(),
        "every call rang a device"
    );
    assert_eq!(
        w.apns.count(),
        CALLS / 2,
        "no accepted APNs push was sent again"
    );
    let mut by_survivor: HashMap<(String, String), usize> = HashMap::new();
    let mut from_the_dead = 0;
    for r in w.fcm.requests() {
        let issued = r.bearer.as_deref().and_then(|b| w.fcm.issued_at(b));
        if issued.is_some_and(|at| at > run.killed_at) {
            let sid = r.body["message"]["data"]["call_sid"].as_str().unwrap_or("");
            *by_survivor
                .entry((sid.to_string(), r.token.clone()))
                .or_default() += 1;
        } else {
            from_the_dead += 1;
        }
    }
    let twice: Vec<_> = by_survivor.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "pushed twice after the takeover: {twice:?}"
    );
    assert_eq!(
        by_survivor.len(),
        CALLS,
        "every FCM device was pushed again after the kill"
    );
    assert!(
        w.fcm.received() >= CALLS + run.knobs.max_in_flight / 2,
        "the pushes in flight at the kill were sent again ({} received)",
        w.fcm.received()
    );
    eprintln!(
        "{} FCM pushes in flight at the kill; {from_the_dead} of them reached Google after it",
        run.knobs.max_in_flight / 2
    );
}

#[tokio::test]
async fn kill_9_with_pushes_in_flight_then_restart_rings_every_call() {
    let mut run = kill_with_pushes_in_flight().await;
    let second = DaemonProcess::start(&run.w, run.dir.path(), "crashy", &run.knobs);
    assert_every_call_rang_once(&mut run).await;
    assert!(second.sigterm(Duration::from_secs(15)).await.success());
    assert_eq!(run.w.pending().await, 0);
}

#[tokio::test]
async fn kill_9_with_pushes_in_flight_then_another_daemon_takes_over_and_rings_every_call() {
    let mut run = kill_with_pushes_in_flight().await;
    // Another consumer reclaims the dead one's entries after `claim_idle_ms`.
    let other = DaemonProcess::start(&run.w, run.dir.path(), "other", &run.knobs);
    assert_every_call_rang_once(&mut run).await;
    assert!(other.sigterm(Duration::from_secs(15)).await.success());
    assert_eq!(run.w.pending().await, 0);
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
async fn sigterm_stops_within_one_grace_period_whatever_is_still_running() {
    use tokio::io::AsyncWriteExt;
    let mut w = unlimited_world().await;
    let dir = tempfile::tempdir().unwrap();
    register_users(&w, 1).await;
    // A push Google never answers, and an HTTP request whose body never arrives.
    w.fcm
        .set_default(fcm_double::Answer::ok().delayed(Duration::from_secs(3_600)));
    let knobs = Knobs {
        grace_ms: 3_000,
        ..Knobs::default()
    };
    let daemon = DaemonProcess::start(&w, dir.path(), "stopper", &knobs);
    w.call(&[
        ("type", "incoming"),
        ("to", "user0"),
        ("call_sid", "CAhang"),
        ("ttl_ms", "60000"),
    ])
    .await;
    assert!(w.fcm.wait_for_received(1, RUN).await);
    let (_, admin) = daemon.listeners().await;
    let mut slow = tokio::net::TcpStream::connect(&admin).await.unwrap();
    slow.write_all(
        b"POST /v1/calls HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"type\":",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    let status = daemon.sigterm(Duration::from_secs(15)).await;
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    // One grace period (3 s) and the moment it takes to drop what is left; the daemon used to
    // wait a second grace period for the HTTP request after the first for the event.
    assert!(
        took < Duration::from_millis(4_500),
        "stopping took {took:?}"
    );
    assert_eq!(w.pending().await, 1, "the unfinished event stays pending");
    drop(slow);
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
            .arg(&w.keys.results)
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
        .arg(&w.keys.calls)
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
