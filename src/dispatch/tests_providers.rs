//! Unit tests of the rules that come from the providers themselves: APNs environments learned
//! on the way ([`super::environment`]) and a credential paused for its quota
//! ([`super::quota`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixtures::{binding, fail, final_of, incoming, shared_with_store, Scripted, Store};
use crate::domain::ApnsEnvironment::{Production, Sandbox};
use crate::domain::{ApnsEnvironments, Platform};
use crate::outcome::EventOutcome;
use crate::providers::Outcome;

const BOTH: ApnsEnvironments = ApnsEnvironments {
    default: Production,
    other: Some(Sandbox),
};

fn bad_device_token() -> Outcome {
    Outcome::InvalidToken {
        failure: fail("BadDeviceToken"),
        judged_at_ms: 0,
    }
}

fn apns(answers: Vec<Outcome>, environments: ApnsEnvironments) -> Arc<Scripted> {
    Arc::new(
        Scripted::new(Platform::Apns, "CRa", true)
            .in_environments(environments)
            .script("t1", answers),
    )
}

fn store_of(bindings: Vec<crate::bindings::Binding>) -> Arc<Store> {
    Arc::new(Store {
        bindings,
        ..Store::default()
    })
}

#[tokio::test]
async fn a_device_of_unknown_environment_is_tried_on_the_other_and_learned() {
    let provider = apns(vec![bad_device_token(), Outcome::Delivered], BOTH);
    let store = store_of(vec![binding("alice", Platform::Apns, "CRa", "t1")]);
    let s = shared_with_store(store.clone(), vec![provider.clone()], 3);
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::Delivered);
    assert_eq!(
        provider.environments_sent(),
        vec![Some(Production), Some(Sandbox)]
    );
    assert_eq!(*store.learned.lock().unwrap(), vec![("t1".into(), Sandbox)]);
    assert!(
        store.pruned.lock().unwrap().is_empty(),
        "a live device stays"
    );
}

#[tokio::test]
async fn a_token_both_environments_refuse_is_pruned_and_one_of_a_single_environment_at_once() {
    let provider = apns(vec![bad_device_token(), bad_device_token()], BOTH);
    let store = store_of(vec![binding("alice", Platform::Apns, "CRa", "t1")]);
    let s = shared_with_store(store.clone(), vec![provider.clone()], 3);
    let (result, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(result.outcome, EventOutcome::NoBindings);
    assert_eq!(provider.environments_sent().len(), 2);
    assert_eq!(store.pruned.lock().unwrap().len(), 1);

    let production_only = ApnsEnvironments {
        default: Production,
        other: None,
    };
    let provider = apns(vec![bad_device_token()], production_only);
    let store = store_of(vec![binding("alice", Platform::Apns, "CRa", "t1")]);
    let s = shared_with_store(store.clone(), vec![provider.clone()], 3);
    final_of(&s, &incoming("alice")).await;
    assert_eq!(provider.environments_sent(), vec![Some(Production)]);
    assert_eq!(store.pruned.lock().unwrap().len(), 1);
    assert!(store.learned.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_device_that_knows_its_environment_is_pushed_there_only() {
    let provider = apns(vec![bad_device_token()], BOTH);
    let mut known = binding("alice", Platform::Apns, "CRa", "t1");
    known.environment = Some(Sandbox);
    let store = store_of(vec![known]);
    let s = shared_with_store(store.clone(), vec![provider.clone()], 3);
    final_of(&s, &incoming("alice")).await;
    assert_eq!(provider.environments_sent(), vec![Some(Sandbox)]);
    assert_eq!(store.pruned.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_credential_over_quota_holds_its_other_pushes_until_the_pause_ends() {
    let pause = Duration::from_millis(300);
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true).script(
        "t1",
        vec![Outcome::OverQuota {
            failure: fail("RESOURCE_EXHAUSTED"),
            pause,
        }],
    ));
    let store = store_of(vec![
        binding("alice", Platform::Fcm, "CRf", "t1"),
        binding("bob", Platform::Fcm, "CRf", "t2"),
    ]);
    let s = shared_with_store(store, vec![fcm.clone()], 3);
    let started = Instant::now();
    let (alice, _) = final_of(&s, &incoming("alice")).await;
    assert_eq!(alice.outcome, EventOutcome::Delivered);
    assert!(
        started.elapsed() >= pause,
        "alice's retry waited out the pause"
    );
    assert_eq!(fcm.sent(), vec!["t1", "t1"]);

    // Paused again: bob's push waits for the pause instead of spending a request on it.
    s.quota.pause(
        "CRf",
        pause,
        &fail("RESOURCE_EXHAUSTED"),
        &s.metrics,
        &s.hard_stop,
    );
    let started = Instant::now();
    let (bob, _) = final_of(&s, &incoming("bob")).await;
    assert_eq!(bob.outcome, EventOutcome::Delivered);
    assert!(started.elapsed() >= pause - Duration::from_millis(20));
    assert_eq!(fcm.sent(), vec!["t1", "t1", "t2"]);
}

#[tokio::test]
async fn a_pause_past_the_deadline_ends_the_push_at_once_as_expired() {
    let fcm = Arc::new(Scripted::new(Platform::Fcm, "CRf", true));
    let store = store_of(vec![binding("alice", Platform::Fcm, "CRf", "t1")]);
    let s = shared_with_store(store, vec![fcm.clone()], 3);
    s.quota.pause(
        "CRf",
        Duration::from_secs(60),
        &fail("RESOURCE_EXHAUSTED"),
        &s.metrics,
        &s.hard_stop,
    );
    let short = super::fixtures::entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("ttl_ms", "5000"),
    ]);
    let started = Instant::now();
    let (result, dead) = final_of(&s, &short).await;
    assert_eq!(result.outcome, EventOutcome::Expired);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "ended before its deadline"
    );
    let dead = dead.expect("a dead letter");
    assert!(
        dead.detail.contains("RESOURCE_EXHAUSTED"),
        "{}",
        dead.detail
    );
    assert!(fcm.sent().is_empty(), "no request spent");
}
