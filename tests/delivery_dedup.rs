//! No double ring and one outcome per event, against a real redis-server: a call added twice,
//! a device an earlier (crashed) attempt left `sending`, and two consumers finishing one entry.

mod support;

use callpush::dispatch::dedup::device_key;
use callpush::domain::{Platform, PushKind};
use support::daemon::TestDaemon;
use support::tally::Tally;
use support::world::World;

fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

#[tokio::test]
async fn a_call_added_twice_rings_each_device_once_and_the_second_is_duplicate() {
    let mut w = World::new().await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("alice", Platform::Fcm, "fcm-alice").await;
    let daemon = TestDaemon::start(w.settings.clone());
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

#[tokio::test]
async fn a_device_a_crashed_attempt_left_sending_is_not_rung_again() {
    let mut w = World::new().await;
    w.register("bob", Platform::Fcm, "fcm-bob-1").await;
    w.register("bob", Platform::Fcm, "fcm-bob-2").await;
    // What a daemon killed between claiming and settling leaves behind.
    let key = format!("{}sent:{{CA-crash}}", w.prefix);
    let field = device_key(PushKind::Incoming, "CRfcm", "fcm-bob-1");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(&field)
        .arg("sending")
        .query_async(&mut w.conn)
        .await
        .unwrap();
    let daemon = TestDaemon::start(w.settings.clone());
    w.call(&[
        ("type", "incoming"),
        ("to", "bob"),
        ("call_sid", "CA-crash"),
    ])
    .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["devices"], "2");
    let tokens: Vec<_> = w
        .fcm
        .requests()
        .into_iter()
        .filter_map(|r| r.token)
        .collect();
    assert_eq!(tokens, vec!["fcm-bob-2"]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut w.conn)
        .await
        .unwrap();
    assert!(ttl > 30_000, "the ledger lives past the deadline: {ttl}");
    daemon.stop().await;
}

#[tokio::test]
async fn two_consumers_finishing_one_entry_write_one_outcome() {
    use callpush::ingest::CallQueue;
    use callpush::outcome::{EventOutcome, EventResult};
    let mut w = World::new().await;
    let mut a = w.settings.clone();
    a.stream.consumer = Some("a".into());
    let mut b = w.settings.clone();
    b.stream.consumer = Some("b".into());
    let qa = callpush::daemon::redis_backends(&a).await.unwrap().0;
    let qb = callpush::daemon::redis_backends(&b).await.unwrap().0;
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
