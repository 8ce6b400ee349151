//! Unit tests of the delivery guarantees inside one event: no double ring across attempts
//! (with the in-memory ledger), and a hanging credential leaving push slots to the others.

use std::sync::Arc;
use std::time::Duration;

use super::fixtures::{binding, entry, fail, final_of, incoming, shared, NoQueue, Scripted};
use super::ledger::{device_key, ClaimRequest, Holder, MemoryLedger, SentLedger};
use super::slots::CredentialSlots;
use crate::domain::{Platform, Push, PushKind};
use crate::outcome::{DeadReason, EventOutcome};
use crate::providers::{Outcome, Provider};

#[tokio::test(start_paused = true)]
async fn a_redelivered_event_rings_nobody_twice() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![
            binding("alice", Platform::Fcm, "CRf", "t1"),
            binding("alice", Platform::Fcm, "CRf", "t2"),
        ],
        vec![fcm.clone()],
        3,
    );
    let e = incoming("alice");
    let (first, _) = final_of(&s, &e).await;
    assert_eq!(first.outcome, EventOutcome::Delivered);
    let (again, dead) = final_of(&s, &e).await;
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!((again.devices, again.delivered), (2, 2));
    assert!(dead.is_none());
    let mut sent = fcm.sent();
    sent.sort();
    assert_eq!(sent, vec!["t1", "t2"], "each device pushed once");
}

/// A claim on t1 as another attempt (of entry `1-0`) left it.
async fn claimed_by(s: &mut super::Shared, consumer: &str, instance: &str) -> Arc<MemoryLedger> {
    let ledger = Arc::new(MemoryLedger::default());
    let t1 = device_key(PushKind::Incoming, "CRf", "t1");
    let holder = Holder {
        consumer: consumer.into(),
        instance: instance.into(),
        entry: "1-0".into(),
        since_ms: 0,
    };
    let request = ClaimRequest {
        device: &t1,
        take_over: None,
    };
    ledger
        .claim("CA1", &holder, &[request], u64::MAX)
        .await
        .unwrap();
    s.ledger = ledger.clone();
    ledger
}

fn two_devices(fcm: &Arc<Scripted>) -> super::Shared {
    shared(
        vec![
            binding("alice", Platform::Fcm, "CRf", "t1"),
            binding("alice", Platform::Fcm, "CRf", "t2"),
        ],
        vec![fcm.clone()],
        3,
    )
}

#[tokio::test(start_paused = true)]
async fn a_device_a_dead_attempt_left_claimed_is_pushed_again() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let mut s = two_devices(&fcm);
    // Its consumer no longer holds entry 1-0 (the fixture queue has nothing pending): it died,
    // or the entry was reclaimed from it.
    claimed_by(&mut s, "dead", "i-dead").await;
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!((result.devices, result.delivered), (2, 2));
    let mut sent = fcm.sent();
    sent.sort();
    assert_eq!(sent, vec!["t1", "t2"], "the unanswered push is sent again");
    let (again, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!((again.devices, again.delivered), (2, 2));
    assert_eq!(fcm.sent().len(), 2, "accepted pushes are never sent again");
}

#[tokio::test(start_paused = true)]
async fn a_device_a_live_attempt_holds_is_skipped() {
    for (consumer, instance) in [("other", "i-other"), ("test", "i-test")] {
        let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
        let mut s = two_devices(&fcm);
        claimed_by(&mut s, consumer, instance).await;
        // Entry 1-0 is being worked on: pending with the other consumer, or in flight here.
        let queue = NoQueue::default();
        queue
            .pending
            .lock()
            .unwrap()
            .insert("1-0".into(), "other".into());
        s.queue = Arc::new(queue);
        s.start("1-0");
        let (result, _) = final_of(&s, &incoming("alice")).await;
        assert_eq!(result.outcome, EventOutcome::Delivered, "{consumer}");
        assert_eq!((result.devices, result.delivered), (2, 1), "{consumer}");
        assert_eq!(
            fcm.sent(),
            vec!["t2"],
            "{consumer}: t1 is being pushed right now"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_final_failure_releases_the_device_for_a_replay() {
    let fcm = Arc::new(
        Scripted::new(Platform::Fcm, "CRf", true)
            .script("t1", vec![Outcome::Rejected(fail("SENDER_BLOCKED"))]),
    );
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        3,
    );
    let (first, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(first.outcome, EventOutcome::DeadLettered);
    assert_eq!(dead.unwrap().reason, DeadReason::ProviderRejected);
    let (replayed, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(replayed.outcome, EventOutcome::Delivered);
    assert_eq!(
        fcm.sent(),
        vec!["t1", "t1"],
        "never delivered, so pushed again"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cancel_of_a_call_reaches_the_devices_it_rang() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        3,
    );
    let (rang, _) = final_of(&s, &incoming("alice")).await;
    let cancel = entry(&[("type", "cancel"), ("to", "alice"), ("call_sid", "CA1")]);
    let (cancelled, _) = final_of(&s, &cancel).await;
    assert_eq!(rang.outcome, EventOutcome::Delivered);
    assert_eq!(cancelled.outcome, EventOutcome::Delivered);
    assert_eq!(fcm.sent().len(), 2);
}

/// A credential whose every request hangs until the deadline.
struct Hanging;

#[async_trait::async_trait]
impl Provider for Hanging {
    fn platform(&self) -> Platform {
        Platform::Apns
    }
    fn credential(&self) -> &str {
        "CRslow"
    }
    fn sends_cancel(&self) -> bool {
        false
    }
    async fn send(&self, _: &Push) -> Outcome {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_credential_leaves_push_slots_to_the_others() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let mut bindings: Vec<_> = (0..8)
        .map(|i| binding("slow", Platform::Apns, "CRslow", &format!("s{i}")))
        .collect();
    bindings.push(binding("alice", Platform::Fcm, "CRf", "t1"));
    let mut s = shared(bindings, vec![fcm.clone()], 3);
    s.providers
        .insert("CRslow", Arc::new(Hanging) as Arc<dyn Provider>);
    // A pool of 4 push slots: each credential may hold 2.
    s.pushes = tokio::sync::Semaphore::new(4);
    s.credential_slots = CredentialSlots::new(&s.providers.snapshot(), 4);
    let s = Arc::new(s);
    let slow = {
        let s = s.clone();
        tokio::spawn(async move { final_of(&s, &incoming("slow")).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        s.pushes.available_permits(),
        2,
        "the hanging credential holds only its share"
    );
    let fast = tokio::time::timeout(Duration::from_secs(1), final_of(&s, &incoming("alice")))
        .await
        .expect("the other credential is not held up");
    assert_eq!(fast.0.outcome, EventOutcome::Delivered);
    let (slow, dead) = slow.await.unwrap();
    assert_eq!(
        slow.outcome,
        EventOutcome::Expired,
        "the hanging pushes end at the deadline"
    );
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);
}

#[tokio::test(start_paused = true)]
async fn a_push_waiting_to_retry_holds_no_slot() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::Retry {
            failure: fail("QUOTA_EXCEEDED"),
            retry_after: Some(Duration::from_secs(5)),
        }],
    ));
    let mut s = shared(
        vec![
            binding("alice", Platform::Fcm, "CRf", "t1"),
            binding("bob", Platform::Fcm, "CRf", "t2"),
        ],
        vec![fcm.clone()],
        3,
    );
    // One push slot in all.
    s.pushes = tokio::sync::Semaphore::new(1);
    let s = Arc::new(s);
    let started = tokio::time::Instant::now();
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { final_of(&s, &incoming("alice")).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let (bob, _) = final_of(&s, &incoming("bob")).await;
    assert_eq!(bob.outcome, EventOutcome::Delivered);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "bob did not wait for alice's retry"
    );
    let (alice, _) = waiting.await.unwrap();
    assert_eq!(alice.outcome, EventOutcome::Delivered);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "alice's retry waited for Retry-After"
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_queued_for_a_slot_still_ends_at_its_deadline() {
    let bindings = vec![
        binding("first", Platform::Apns, "CRslow", "s1"),
        binding("second", Platform::Apns, "CRslow", "s2"),
    ];
    let mut s = shared(bindings, vec![], 3);
    s.providers
        .insert("CRslow", Arc::new(Hanging) as Arc<dyn Provider>);
    // One push slot: the second call waits for the first one's deadline to get it.
    s.pushes = tokio::sync::Semaphore::new(1);
    s.credential_slots = CredentialSlots::new(&s.providers.snapshot(), 1);
    let s = Arc::new(s);
    let call = |to: &str, ttl: &str| {
        entry(&[
            ("type", "incoming"),
            ("to", to),
            ("call_sid", to),
            ("ttl_ms", ttl),
        ])
    };
    let started = tokio::time::Instant::now();
    let first = {
        let (s, e) = (s.clone(), call("first", "2000"));
        tokio::spawn(async move { final_of(&s, &e).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let (second, dead) = final_of(&s, &call("second", "3000")).await;
    assert_eq!(second.outcome, EventOutcome::Expired);
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);
    // Deadlines are wall-clock times turned into a wait on the paused clock when the push
    // starts: the real milliseconds a loaded machine spends between making the entry and
    // starting its push come off the wait, so it ends at 3 s or a little before — and at 5 s
    // had the call waited its whole TTL after getting the slot.
    let elapsed = started.elapsed();
    assert!(
        elapsed <= Duration::from_secs(3) && elapsed > Duration::from_millis(2_900),
        "the second call gave up at its own deadline, not 3 s after it got the slot: {elapsed:?}"
    );
    assert_eq!(first.await.unwrap().0.outcome, EventOutcome::Expired);
}

#[tokio::test(start_paused = true)]
async fn the_callee_limit_is_charged_once_per_call_that_pushes() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let store = Arc::new(super::fixtures::Store {
        bindings: vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        ..Default::default()
    });
    // Redis fails the first two reads of alice's bindings: the event waits the outage out in
    // its slot, and is charged only once it pushes.
    store
        .failing_lists
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let mut s = super::fixtures::shared_with_store(store, vec![fcm.clone()], 3);
    let settings = crate::config::Settings::from_toml_with_env(
        "[limits]\ncalls_per_identity_per_min = 2\n",
        Vec::new(),
    )
    .unwrap();
    s.limits = super::limits::Limits::new(&settings);
    let first = entry(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA-1")]);
    let (r, _) = final_of(&s, &first).await;
    assert_eq!(
        r.outcome,
        EventOutcome::Delivered,
        "the outage charged nothing"
    );
    // A redelivery with nothing left to push and a call to nobody do not count either.
    assert_eq!(
        final_of(&s, &first).await.0.outcome,
        EventOutcome::Duplicate
    );
    let nobody = entry(&[("type", "incoming"), ("to", "nobody"), ("call_sid", "CA-0")]);
    assert_eq!(
        final_of(&s, &nobody).await.0.outcome,
        EventOutcome::NoBindings
    );
    let second = entry(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA-2")]);
    assert_eq!(
        final_of(&s, &second).await.0.outcome,
        EventOutcome::Delivered
    );
    let third = entry(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA-3")]);
    let (r, dead) = final_of(&s, &third).await;
    assert_eq!(
        r.outcome,
        EventOutcome::DeadLettered,
        "the third call is over the limit"
    );
    assert_eq!(dead.unwrap().reason, DeadReason::RateLimited);
    assert_eq!(fcm.sent().len(), 2);
}
