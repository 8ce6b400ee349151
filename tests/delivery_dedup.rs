//! No double ring and one outcome per event, against a real redis-server: a call added twice,
//! a device a dead attempt left claimed (pushed again) or a live one is pushing (not pushed
//! twice), and two consumers finishing one entry. The call added twice and the two consumers
//! also run on the in-memory backend ([`on_both_backends!`]); the claims left behind are written
//! into Redis by hand, so those two tests are Redis-only.

#[macro_use]
mod support;

on_both_backends!(
    a_call_added_twice_rings_each_device_once_and_the_second_is_duplicate,
    two_consumers_finishing_one_entry_write_one_outcome,
);

use callpush::dispatch::ledger::device_key;
use callpush::domain::{Platform, PushKind};
use support::daemon::TestDaemon;
use support::fixtures::apns_token;
use support::tally::Tally;
use support::world::{Backend, World};

async fn a_call_added_twice_rings_each_device_once_and_the_second_is_duplicate(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("alice", Platform::Fcm, "fcm-alice").await;
    let daemon = w.start_daemon();
    let call = [
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA-twice"),
    ];
    w.call(&call).await;
    w.results(1).await;
    w.call(&call).await;
    let results = w.results(2).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[1]["outcome"], "duplicate");
    assert_eq!(results[1]["devices"], "2");
    assert_eq!(results[1]["delivered"], "2", "both known delivered");
    Tally::of(&w).assert_no_double_ring();
    assert_eq!(w.apns.count() + w.fcm.count(), 2);
    // The cancel of the same call still reaches the FCM device.
    w.call(&[
        ("type", "cancel"),
        ("to", "alice"),
        ("call_sid", "CA-twice"),
    ])
    .await;
    assert_eq!(w.results(3).await[2]["outcome"], "delivered");
    assert_eq!(w.fcm.count(), 2);
    daemon.stop().await;
}

/// Write the ledger claim a daemon leaves on `token` when it dies mid-push: held by `consumer`
/// for entry `1-0` since a second ago.
async fn leave_claim(w: &mut World, call_sid: &str, token: &str, consumer: &str) {
    let key = w.keys.sent(call_sid);
    let field = device_key(PushKind::Incoming, "CRfcm", token);
    let since = callpush::domain::now_ms() - 1_000;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(&field)
        .arg(format!("sending|{since}|i-dead|1-0|{consumer}"))
        .query_async(&mut w.conn)
        .await
        .unwrap();
}

fn fcm_tokens(w: &World) -> Vec<String> {
    let mut tokens: Vec<_> = w.fcm.requests().into_iter().map(|r| r.token).collect();
    tokens.sort();
    tokens
}

#[tokio::test]
async fn a_device_a_dead_attempt_left_claimed_is_pushed_again() {
    let mut w = World::new().await;
    w.register("bob", Platform::Fcm, "fcm-bob-1").await;
    w.register("bob", Platform::Fcm, "fcm-bob-2").await;
    // Its daemon died with entry 1-0, which is pending with nobody now.
    leave_claim(&mut w, "CA-crash", "fcm-bob-1", "gone").await;
    let daemon = TestDaemon::start(w.settings.clone());
    w.call(&[
        ("type", "incoming"),
        ("to", "bob"),
        ("call_sid", "CA-crash"),
    ])
    .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(
        (&*results[0]["devices"], &*results[0]["delivered"]),
        ("2", "2")
    );
    assert_eq!(
        fcm_tokens(&w),
        vec!["fcm-bob-1", "fcm-bob-2"],
        "the lost ring is sent again"
    );
    let key = w.keys.sent("CA-crash");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut w.conn)
        .await
        .unwrap();
    assert!(ttl > 30_000, "the ledger lives past the deadline: {ttl}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_device_a_live_daemon_is_pushing_is_not_pushed_twice() {
    let mut w = World::new().await;
    w.register("bob", Platform::Fcm, "fcm-bob-1").await;
    w.register("bob", Platform::Fcm, "fcm-bob-2").await;
    // Another daemon ("busy") holds entry 1-0 of the same call and is pushing fcm-bob-1.
    let calls = w.keys.calls.clone();
    let _: () = redis::cmd("XADD")
        .arg(&calls)
        .arg("1-0")
        .arg("type")
        .arg("incoming")
        .query_async(&mut w.conn)
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&calls)
        .arg("callpush")
        .arg("0")
        .query_async(&mut w.conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("callpush")
        .arg("busy")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&calls)
        .arg(">")
        .query_async(&mut w.conn)
        .await
        .unwrap();
    leave_claim(&mut w, "CA-busy", "fcm-bob-1", "busy").await;
    let daemon = TestDaemon::start(w.settings.clone());
    w.call(&[("type", "incoming"), ("to", "bob"), ("call_sid", "CA-busy")])
        .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(
        (&*results[0]["devices"], &*results[0]["delivered"]),
        ("2", "1")
    );
    assert_eq!(
        fcm_tokens(&w),
        vec!["fcm-bob-2"],
        "fcm-bob-1 is being pushed by busy"
    );
    daemon.stop().await;
}

async fn two_consumers_finishing_one_entry_write_one_outcome(backend: Backend) {
    use callpush::outcome::{EventOutcome, EventResult};
    let mut w = World::on(backend, |_| {}).await;
    let qa = w.queue_as("a").await;
    let qb = w.queue_as("b").await;
    qa.ensure_group().await.unwrap();
    w.call(&[("type", "incoming"), ("to", "x"), ("call_sid", "CA1")])
        .await;
    let read = qa
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .unwrap();
    // b reclaims it as if a were dead, then both finish it.
    let claimed = qb.claim_stale(std::time::Duration::ZERO, 10).await.unwrap();
    assert_eq!(read, claimed);
    let result = EventResult {
        call_sid: "CA1".into(),
        to: "x".into(),
        outcome: EventOutcome::NoBindings,
        devices: 0,
        delivered: 0,
    };
    qb.finish(&claimed[0], &result, None).await.unwrap();
    qa.finish(&read[0], &result, None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(w.results(1).await.len(), 1, "exactly one outcome");
    assert_eq!(w.pending().await, 0);
}
