//! Unit tests of event resolution with in-memory stand-ins for Redis and scripted providers.
//! (The integration tests in `tests/` run the same paths against real Redis and HTTP/2 doubles.)

use std::sync::Arc;
use std::time::Duration;

use super::fixtures::*;
use crate::domain::Platform;
use crate::outcome::{DeadReason, EventOutcome};
use crate::providers::Outcome;

#[tokio::test(start_paused = true)]
async fn one_good_device_is_enough_for_delivered() {
    let apns = Arc::new(
        Scripted::new(Platform::Apns, "CRa", false)
            .script("t1", vec![Outcome::Rejected(fail("BadTopic"))]),
    );
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![
            binding("alice", Platform::Apns, "CRa", "t1"),
            binding("alice", Platform::Fcm, "CRf", "t2"),
            binding("bob", Platform::Fcm, "CRf", "t3"),
        ],
        vec![apns, fcm.clone()],
        3,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!((result.devices, result.delivered), (2, 1));
    assert!(dead.is_none());
    assert_eq!(fcm.sent(), vec!["t2"]);
}

#[tokio::test(start_paused = true)]
async fn retries_then_delivers() {
    let fcm = Arc::new(
        Scripted::new(Platform::Fcm, "CRf", true)
            .script("t1", vec![retry("UNAVAILABLE"), retry("UNAVAILABLE")]),
    );
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        3,
    );
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!(fcm.sent().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded() {
    let fcm = Arc::new(
        Scripted::new(Platform::Fcm, "CRf", true).script("t1", vec![retry("INTERNAL"); 10]),
    );
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        4,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::DeadLettered);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::RetriesExhausted);
    assert_eq!(dead.attempts, 4);
    assert!(dead.detail.contains("test INTERNAL"), "{}", dead.detail);
    assert_eq!(fcm.sent().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_expires_the_event() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::Retry {
            failure: fail("QUOTA_EXCEEDED"),
            retry_after: Some(Duration::from_secs(60)),
        }],
    ));
    let s = shared(
        vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        vec![fcm.clone()],
        6,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Expired);
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);
    assert_eq!(fcm.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dead_tokens_are_pruned_and_leave_no_bindings() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::InvalidToken {
            failure: fail("UNREGISTERED"),
            judged_at_ms: 1234,
        }],
    ));
    let store = Arc::new(Store {
        bindings: vec![binding("alice", Platform::Fcm, "CRf", "t1")],
        ..Store::default()
    });
    let s = shared_with_store(store.clone(), vec![fcm], 6);
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::NoBindings);
    assert_eq!(result.devices, 1);
    assert!(dead.is_none());
    assert_eq!(
        *store.pruned.lock().unwrap(),
        vec![("t1".to_string(), 1234)],
        "pruned with the provider's judgement time"
    );
}

#[tokio::test(start_paused = true)]
async fn rejection_is_dead_lettered_with_the_provider_reason() {
    let apns = Arc::new(
        Scripted::new(Platform::Apns, "CRa", false)
            .script("t1", vec![Outcome::Rejected(fail("TopicDisallowed"))]),
    );
    let s = shared(
        vec![binding("alice", Platform::Apns, "CRa", "t1")],
        vec![apns.clone()],
        6,
    );
    let (result, dead) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::DeadLettered);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::ProviderRejected);
    assert!(
        dead.detail.contains("test TopicDisallowed"),
        "{}",
        dead.detail
    );
    assert!(dead.detail.contains("apns CRa"), "{}", dead.detail);
    assert_eq!(apns.sent().len(), 1, "a rejection is not retried");
}

#[tokio::test(start_paused = true)]
async fn cancel_skips_apns_unless_send_cancel() {
    let quiet = Arc::new(Scripted::new(Platform::Apns, "CRa", false));
    let loud = Arc::new(Scripted::new(Platform::Apns, "CRb", true));
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let s = shared(
        vec![
            binding("alice", Platform::Apns, "CRa", "t1"),
            binding("alice", Platform::Apns, "CRb", "t2"),
            binding("alice", Platform::Fcm, "CRf", "t3"),
        ],
        vec![quiet.clone(), loud.clone(), fcm.clone()],
        6,
    );
    let cancel = entry(&[("type", "cancel"), ("to", "alice"), ("call_sid", "CA1")]);
    let (result, _) = final_of(&s, &cancel).await;
    assert_eq!((result.devices, result.delivered), (2, 2));
    assert!(quiet.sent().is_empty());
    assert_eq!(loud.sent(), vec!["t2"]);
    assert_eq!(fcm.sent(), vec!["t3"]);
}

#[tokio::test(start_paused = true)]
async fn credential_field_restricts_the_fan_out() {
    let a = Arc::new(Scripted::new(Platform::Fcm, "CRa", true));
    let b = Arc::new(Scripted::new(Platform::Fcm, "CRb", true));
    let s = shared(
        vec![
            binding("alice", Platform::Fcm, "CRa", "t1"),
            binding("alice", Platform::Fcm, "CRb", "t2"),
        ],
        vec![a.clone(), b.clone()],
        6,
    );
    let e = entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("credential", "CRb"),
    ]);
    let (result, _) = final_of(&s, &e).await;
    assert_eq!(result.devices, 1);
    assert!(a.sent().is_empty());
    assert_eq!(b.sent(), vec!["t2"]);
}

#[tokio::test(start_paused = true)]
async fn malformed_and_expired_entries_end_at_once() {
    let s = shared(Vec::new(), Vec::new(), 6);
    let (result, dead) = final_of(&s, &entry(&[("type", "incoming"), ("call_sid", "CA1")])).await;
    assert_eq!(result.outcome, EventOutcome::Malformed);
    let dead = dead.unwrap();
    assert_eq!(dead.reason, DeadReason::Malformed);
    assert!(dead.detail.contains("`to`"), "{}", dead.detail);

    let mut old = incoming("alice");
    old.id = "1000-0".into();
    let (result, dead) = final_of(&s, &old).await;
    assert_eq!(result.outcome, EventOutcome::Expired);
    assert_eq!(dead.unwrap().reason, DeadReason::Expired);

    let (result, dead) = final_of(&s, &incoming("nobody")).await;
    assert_eq!(result.outcome, EventOutcome::NoBindings);
    assert!(dead.is_none());
}
