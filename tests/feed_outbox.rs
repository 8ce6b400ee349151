//! The binding feed on a Redis Cluster (SPEC §11, issue #23): the feed stream lives in another
//! slot than an identity's keys, so each change's script adds its events to an outbox in the
//! identity's slot and the store forwards them to the feed right after. A crash between the two
//! must not lose an event:
//!
//! - changes made by a store that "crashes" right after each script (it never forwards) are all
//!   on the feed once a daemon's sweep has run, each once, in each identity's order;
//! - a forward cut between the feed's `XADD` and the outbox's `XDEL` repeats the events with the
//!   same `event_id`, so a backend can drop the copies;
//! - in the normal case the feed has the events as soon as the change returns, and the outbox
//!   is empty. It prints what the forward costs a registration.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use callpush::bindings::feed::FeedEvent;
use callpush::bindings::redis::RedisBindingStore;
use callpush::bindings::{BindingStore, NewBinding};
use callpush::domain::{now_ms, Platform};
use futures::StreamExt;
use support::cluster_world::ClusterWorld;
use support::fixtures::numbered_apns_token as apns_token;
use support::process::Knobs;

/// Identities the tests change: enough to spread over the three masters' slots.
const USERS: usize = 12;

/// A store on the world's cluster that never forwards: every change's events stay in their
/// outbox, as when the daemon is killed right after each script.
async fn crashing_store(w: &ClusterWorld) -> RedisBindingStore {
    let conn = callpush::redis_conn::connect(&w.settings.redis)
        .await
        .unwrap();
    RedisBindingStore::new(
        conn,
        w.layout.first().clone(),
        w.settings.bindings.ttl_days,
        w.settings.bindings.max_per_identity,
    )
    .without_forwarding()
}

fn phone(identity: &str, token: String) -> NewBinding {
    NewBinding {
        identity: identity.into(),
        platform: Platform::Apns,
        credential: "CRapns".into(),
        device_token: token,
        target: Default::default(),
        environment: None,
    }
}

/// Every kind of change a store makes: per user a phone registered, refreshed, a second phone,
/// one unregistered; user 0's phone moving to user 1; user 2 erased. The events each identity
/// should see, in order.
async fn changes(store: &dyn BindingStore) -> BTreeMap<String, Vec<String>> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |who: &str, what: &str| {
        expected
            .entry(who.to_string())
            .or_default()
            .push(what.to_string())
    };
    for u in 0..USERS {
        let who = format!("user{u}");
        let (a, b) = (apns_token(100 + u as u64), apns_token(200 + u as u64));
        store
            .register(phone(&who, a.clone()), now_ms())
            .await
            .unwrap();
        store
            .register(phone(&who, a.clone()), now_ms())
            .await
            .unwrap();
        store.register(phone(&who, b), now_ms()).await.unwrap();
        assert!(store.unregister(&who, "CRapns", &a).await.unwrap());
        for what in ["registered", "refreshed", "registered", "unregistered"] {
            note(&who, what);
        }
    }
    let moving = apns_token(200);
    let moved = store
        .register(phone("user1", moving), now_ms())
        .await
        .unwrap();
    assert_eq!(moved.moved_from.as_deref(), Some("user0"));
    note("user1", "registered");
    note("user0", "moved");
    assert_eq!(store.erase("user2").await.unwrap().len(), 1);
    note("user2", "unregistered");
    expected
}

/// The feed per identity: its events' names, in feed order.
fn per_identity(events: &[FeedEvent]) -> BTreeMap<String, Vec<String>> {
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        got.entry(e.identity.clone())
            .or_default()
            .push(e.event.clone());
    }
    got
}

fn count(expected: &BTreeMap<String, Vec<String>>) -> usize {
    expected.values().map(Vec::len).sum()
}

/// Every outbox's entries: (slot, entry id, fields).
async fn outbox_entries(w: &ClusterWorld) -> Vec<(u16, String, Vec<String>)> {
    let reads = (0..16384u16).map(|slot| {
        let key = format!(
            "{}binding-events:outbox:{{{}}}",
            w.settings.redis.key_prefix,
            callpush::bindings::redis::outbox::slot_tag(slot)
        );
        let mut conn = w.conn.clone();
        async move {
            let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            entries.into_iter().map(move |(id, f)| (slot, id, f))
        }
    });
    // A few hundred reads at a time, as the daemon's sweep does: 16,384 at once can outlast
    // the connection's response timeout on a loaded machine.
    futures::stream::iter(reads)
        .buffered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A daemon started after the crash forwards everything the outboxes hold, each event once and
/// every identity's events in the order they happened.
#[tokio::test]
async fn changes_whose_forward_a_crash_cut_reach_the_feed_by_the_sweep() {
    let w = ClusterWorld::start().await;
    let crashed = crashing_store(&w).await;
    let expected = changes(&crashed).await;
    assert_eq!(
        w.store.feed(None, 1000).await.unwrap(),
        vec![],
        "nothing forwarded yet"
    );
    assert_eq!(outbox_entries(&w).await.len(), count(&expected));

    let started = Instant::now();
    let daemon = w.daemon("d1", &Knobs::default());
    let deadline = started + Duration::from_secs(60);
    let mut events = Vec::new();
    while Instant::now() < deadline {
        events = w.store.feed(None, 1000).await.unwrap();
        if events.len() >= count(&expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the sweep forwarded {} events {:?} after the daemon started",
        events.len(),
        started.elapsed()
    );
    assert_eq!(per_identity(&events), expected, "{}", daemon.warnings());
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "each event once");
    assert_eq!(
        outbox_entries(&w).await.len(),
        0,
        "the outboxes are emptied"
    );
    // Another sweep finds nothing more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(w.store.feed(None, 1000).await.unwrap().len(), events.len());
}

/// A forward that added the events to the feed but died before removing them from the outbox:
/// the sweep adds them again, each copy with the same `event_id`; dropping repeats by
/// `event_id` gives every change exactly once.
#[tokio::test]
async fn an_event_forwarded_twice_keeps_its_event_id() {
    let mut w = ClusterWorld::start().await;
    let crashed = crashing_store(&w).await;
    let expected = changes(&crashed).await;
    // The first forward gets as far as the feed and dies before the outbox's XDEL.
    let key = format!("{}binding-events", w.settings.redis.key_prefix);
    for (slot, id, fields) in outbox_entries(&w).await {
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg(fields)
            .arg("event_id")
            .arg(format!("{id}@{slot}"))
            .query_async(&mut w.conn)
            .await
            .unwrap();
    }
    let first = w.store.feed(None, 1000).await.unwrap();
    assert_eq!(per_identity(&first), expected);
    // The sweep finds them still in their outboxes.
    assert_eq!(
        w.store.sweep_feed(Duration::ZERO).await.unwrap(),
        count(&expected)
    );
    let all = w.store.feed(None, 1000).await.unwrap();
    assert_eq!(all.len(), 2 * count(&expected), "at least once: repeated");
    let mut seen = BTreeSet::new();
    let deduped: Vec<FeedEvent> = all
        .into_iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .collect();
    assert_eq!(
        deduped, first,
        "the repeats carry the ids of the first copies"
    );
    assert_eq!(per_identity(&deduped), expected);
}

/// Without a crash the feed has every event when the change returns, nothing stays in an
/// outbox, and each event's `event_id` names its outbox entry and slot.
#[tokio::test]
async fn without_a_crash_the_feed_is_prompt_and_the_outboxes_empty() {
    let w = ClusterWorld::start().await;
    let expected = changes(w.store.as_ref()).await;
    let events = w.store.feed(None, 1000).await.unwrap();
    assert_eq!(per_identity(&events), expected);
    assert!(
        events.iter().all(|e| e.event_id.contains('@')),
        "{events:?}"
    );
    assert_eq!(outbox_entries(&w).await.len(), 0);

    // What the forward costs: registrations (refreshes, one event each) with it and without.
    let crashed = crashing_store(&w).await;
    let n = 300u64;
    let mut timings = Vec::new();
    for (name, store) in [
        ("forwarded", w.store.as_ref()),
        ("not forwarded", &crashed as &dyn BindingStore),
    ] {
        let started = Instant::now();
        for i in 0..n {
            let who = format!("bench{}", i % 30);
            store
                .register(phone(&who, apns_token(1000 + i % 30)), now_ms())
                .await
                .unwrap();
        }
        timings.push((name, started.elapsed() / n as u32));
    }
    println!("mean registration on the cluster, {n} each: {timings:?}");
}
