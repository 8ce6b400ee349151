//! The in-memory backend keeps the promises the pipeline relies on.

use std::time::Duration;

use super::*;
use crate::bindings::{BindingStore, NewBinding};
use crate::domain::Platform;
use crate::event::StreamEntry;
use crate::ingest::CallQueue;
use crate::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};

fn limits() -> MemoryLimits {
    MemoryLimits {
        calls: 100,
        results: 2,
        dead: 100,
    }
}

fn fields(call: &str) -> Vec<(String, String)> {
    vec![
        ("call_sid".into(), call.into()),
        ("to".into(), "alice".into()),
    ]
}

fn result() -> EventResult {
    EventResult {
        call_sid: "CA1".into(),
        to: "alice".into(),
        outcome: EventOutcome::DeadLettered,
        devices: 1,
        delivered: 0,
    }
}

fn dead() -> DeadLetter {
    DeadLetter {
        reason: DeadReason::ProviderRejected,
        detail: "400 TopicDisallowed".into(),
        attempts: 1,
        failed_at_ms: 0,
    }
}

#[tokio::test]
async fn entries_are_pending_until_finished_and_finished_once() {
    let q = MemoryCallQueue::new("a", limits());
    let other = q.with_consumer("b");
    q.enqueue(&fields("CA1")).await.unwrap();
    let batch = q.read_new(10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(other.read_new(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(q.owners(&[&batch[0].id]).await.unwrap(), [Some("a".into())]);
    assert_eq!(q.read_own_pending("0", 10).await.unwrap(), batch);
    assert!(other.read_own_pending("0", 10).await.unwrap().is_empty());

    q.finish(&batch[0], &result(), Some(&dead())).await.unwrap();
    // A second finish (another consumer got there first) writes nothing.
    other
        .finish(&batch[0], &result(), Some(&dead()))
        .await
        .unwrap();
    assert_eq!(q.pending(), 0);
    assert_eq!(q.owners(&[&batch[0].id]).await.unwrap(), [None]);
    assert_eq!(q.results().len(), 1);
    let letters = q.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].field("reason"), Some("provider_rejected"));
    assert_eq!(letters[0].field("source_id"), Some(batch[0].id.as_str()));
}

#[tokio::test]
async fn idle_entries_are_reclaimed_and_touch_keeps_them() {
    let q = MemoryCallQueue::new("a", limits());
    let other = q.with_consumer("b");
    q.enqueue(&fields("CA1")).await.unwrap();
    q.enqueue(&fields("CA2")).await.unwrap();
    let batch = q.read_new(10, Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(q.touch(&[batch[0].id.clone()]).await.unwrap(), 0);
    let claimed = other
        .claim_stale(Duration::from_millis(20), 10)
        .await
        .unwrap();
    assert_eq!(claimed, vec![batch[1].clone()]);
    // The loser notices, and its finish of the reclaimed entry is still the one outcome.
    assert_eq!(q.touch(&[batch[1].id.clone()]).await.unwrap(), 1);
    assert_eq!(
        q.owners(&[&batch[0].id, &batch[1].id]).await.unwrap(),
        [Some("a".into()), Some("b".into())]
    );
}

#[tokio::test]
async fn read_new_wakes_on_enqueue_and_times_out_empty() {
    let q = MemoryCallQueue::new("a", limits());
    assert!(q
        .read_new(10, Duration::from_millis(10))
        .await
        .unwrap()
        .is_empty());
    let writer = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.enqueue(&fields("CA1")).await.unwrap();
    });
    let batch = q.read_new(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch[0].field("call_sid"), Some("CA1"));
}

#[tokio::test]
async fn streams_are_capped() {
    let q = MemoryCallQueue::new("a", limits());
    for n in 0..3 {
        q.enqueue(&fields(&format!("CA{n}"))).await.unwrap();
    }
    let batch = q.read_new(10, Duration::ZERO).await.unwrap();
    for entry in &batch {
        q.finish(entry, &result(), None).await.unwrap();
    }
    assert_eq!(q.results().len(), 2, "results.max_len");
    assert!(q.dead_letters().is_empty());
}

#[tokio::test]
async fn trimmed_pending_entries_are_acknowledged_on_reclaim() {
    let q = MemoryCallQueue::new(
        "a",
        MemoryLimits {
            calls: 1,
            ..limits()
        },
    );
    q.enqueue(&fields("CA1")).await.unwrap();
    q.read_new(1, Duration::ZERO).await.unwrap();
    q.enqueue(&fields("CA2")).await.unwrap();
    assert!(q.claim_stale(Duration::ZERO, 10).await.unwrap().is_empty());
    assert_eq!(q.pending(), 0);
    let entry = StreamEntry::of("bogus", &[]);
    assert!(q.finish(&entry, &result(), None).await.is_err());
}

fn new(identity: &str, token: &str) -> NewBinding {
    NewBinding {
        identity: identity.into(),
        platform: Platform::Fcm,
        credential: "CR1".into(),
        device_token: token.into(),
        target: Default::default(),
        environment: None,
    }
}

#[tokio::test]
async fn registration_refreshes_moves_and_caps() {
    let store = MemoryBindingStore::new(1, 2);
    let t0 = crate::domain::now_ms();
    let first = store
        .register(new("alice", "t1"), t0 + 1_000)
        .await
        .unwrap();
    assert!(first.created);
    let again = store
        .register(new("alice", "t1"), t0 + 2_000)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.binding.binding_id, first.binding.binding_id);
    assert_eq!(again.binding.created_at_ms, t0 + 1_000);

    let moved = store.register(new("bob", "t1"), t0 + 3_000).await.unwrap();
    assert_eq!(moved.moved_from.as_deref(), Some("alice"));
    assert!(store.list("alice").await.unwrap().is_empty());

    store.register(new("bob", "t2"), t0 + 4_000).await.unwrap();
    let capped = store.register(new("bob", "t3"), t0 + 5_000).await.unwrap();
    assert_eq!(capped.evicted.len(), 1);
    assert_eq!(
        capped.evicted[0].device_token, "t1",
        "least recently updated"
    );
    let tokens: Vec<String> = store
        .list("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.device_token)
        .collect();
    assert_eq!(tokens, ["t3", "t2"], "most recently updated first");
}

#[tokio::test]
async fn expired_bindings_are_not_listed() {
    let store = MemoryBindingStore::new(1, 5);
    store.register(new("alice", "t1"), 1_000).await.unwrap();
    assert!(
        store.list("alice").await.unwrap().is_empty(),
        "expired in 1970"
    );
}

#[tokio::test]
async fn pruning_spares_a_binding_refreshed_after_the_verdict() {
    let store = MemoryBindingStore::new(1, 5);
    let now = crate::domain::now_ms();
    let b = store
        .register(new("alice", "t1"), now)
        .await
        .unwrap()
        .binding;
    store.register(new("alice", "t1"), now + 10).await.unwrap();
    assert!(
        !store.prune(&b, now + 5, "Unregistered").await.unwrap(),
        "re-registered after"
    );
    assert!(store.prune(&b, now + 20, "Unregistered").await.unwrap());
    assert!(
        !store.prune(&b, now + 20, "Unregistered").await.unwrap(),
        "gone already"
    );
    assert!(store.list("alice").await.unwrap().is_empty());

    let b = store
        .register(new("alice", "t2"), now)
        .await
        .unwrap()
        .binding;
    assert!(!store.unregister("bob", "CR1", "t2").await.unwrap());
    assert!(store.unregister("alice", "CR1", "t2").await.unwrap());
    assert!(!store.delete("alice", &b.binding_id).await.unwrap());
}

#[tokio::test]
async fn an_idempotency_key_adds_its_event_once_until_it_expires() {
    let q = MemoryCallQueue::new("c1", limits());
    let keys = |names: &[&str]| -> Vec<String> { names.iter().map(|k| k.to_string()).collect() };
    let first = q
        .enqueue_once(&keys(&["msg-1", "token-1"]), 60_000, &fields("CA1"))
        .await
        .unwrap();
    assert!(first.is_some());
    for retry in [keys(&["msg-1"]), keys(&["msg-9", "token-1"])] {
        let again = q
            .enqueue_once(&retry, 60_000, &fields("CA1"))
            .await
            .unwrap();
        assert_eq!(again, None, "a retried key adds nothing: {retry:?}");
    }
    assert_eq!(q.len(), 1);
    assert!(q
        .enqueue_once(&keys(&["msg-2"]), 1, &fields("CA2"))
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let expired = q
        .enqueue_once(&keys(&["msg-2"]), 1, &fields("CA2"))
        .await
        .unwrap();
    assert!(expired.is_some(), "an expired key adds again");
    assert_eq!(q.len(), 3);
}
