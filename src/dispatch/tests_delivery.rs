//! Unit tests of the delivery guarantees inside one event: no double ring across attempts
//! (with the in-memory ledger), and a hanging credential leaving push slots to the others.

use std::sync::Arc;
use std::time::Duration;

use super::credential_slots;
use super::dedup::{device_key, MemoryLedger, SentLedger};
use super::fixtures::{binding, entry, fail, final_of, incoming, shared, Scripted};
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

#[tokio::test(start_paused = true)]
async fn a_device_left_sending_by_a_crash_is_skipped_and_the_rest_are_pushed() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let mut s = shared(
        vec![
            binding("alice", Platform::Fcm, "CRf", "t1"),
            binding("alice", Platform::Fcm, "CRf", "t2"),
        ],
        vec![fcm.clone()],
        3,
    );
    let ledger = Arc::new(MemoryLedger::default());
    // An earlier attempt claimed t1 and died before it settled.
    let t1 = device_key(PushKind::Incoming, "CRf", "t1");
    ledger.claim("CA1", &[t1], u64::MAX).await.unwrap();
    s.ledger = ledger;
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!((result.devices, result.delivered), (2, 1));
    assert_eq!(fcm.sent(), vec!["t2"], "t1 may have rung: not pushed again");
    let (again, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!((again.devices, again.delivered), (2, 1));
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
        .insert("CRslow".into(), Arc::new(Hanging) as Arc<dyn Provider>);
    // A pool of 4 push slots: each credential may hold 2.
    s.pushes = tokio::sync::Semaphore::new(4);
    s.credential_slots = credential_slots(&s.providers, 4);
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
