//! Failures stay where they start, on one real redis-server with the real daemon: a stored
//! binding that does not decode, an identity whose binding key holds the wrong type, and a
//! call whose ledger key holds the wrong type each cost that call (or that one device) alone.
//! The calls beside them in the same batches ring, and nothing is left pending.
//!
//! Entries a failed batch left pending would come back only after `stream.claim_idle_ms`,
//! which these tests set far beyond their wait: a call that rings at all was not held by its
//! neighbour's failure.

mod support;

use std::collections::HashMap;

use callpush::domain::Platform;
use support::fixtures::apns_token;
use support::scrape;
use support::world::World;

/// Longer than any wait here: a call left pending by a failed batch would not come back.
const NO_RECLAIM_MS: u64 = 120_000;

async fn world() -> World {
    World::with(|s| {
        s.stream.claim_idle_ms = NO_RECLAIM_MS;
        s.limits.calls_per_identity_per_min = 0;
    })
    .await
}

/// The results, by call sid.
fn by_call(results: Vec<HashMap<String, String>>) -> HashMap<String, HashMap<String, String>> {
    results
        .into_iter()
        .map(|r| (r["call_sid"].clone(), r))
        .collect()
}

fn incoming<'a>(to: &'a str, call_sid: &'a str) -> [(&'a str, &'a str); 3] {
    [("type", "incoming"), ("to", to), ("call_sid", call_sid)]
}

#[tokio::test]
async fn an_undecodable_binding_is_skipped_and_the_identitys_other_devices_ring() {
    let mut w = world().await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("alice", Platform::Apns, &apns_token(2)).await;
    w.register("bob", Platform::Apns, &apns_token(3)).await;
    w.register("carol", Platform::Fcm, "fcm-token-carol").await;
    // A newer version (or a hand edit) wrote alice's first binding in a form this one cannot
    // read.
    let store = w.store().await;
    let first = store
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.device_token == apns_token(1))
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(w.keys.identity_bindings("alice"))
        .arg(&first.binding_id)
        .arg(r#"{"format":2,"device":{"token":"…"}}"#)
        .query_async(&mut w.conn)
        .await
        .unwrap();

    let daemon = w.start_daemon();
    // Added together, so they share the lookup batch.
    w.call(&incoming("alice", "CA-alice")).await;
    w.call(&incoming("bob", "CA-bob")).await;
    w.call(&incoming("carol", "CA-carol")).await;
    let results = by_call(w.results(3).await);
    assert_eq!(results["CA-alice"]["outcome"], "delivered");
    assert_eq!(
        results["CA-alice"]["devices"], "1",
        "the readable binding only"
    );
    assert_eq!(results["CA-bob"]["outcome"], "delivered");
    assert_eq!(results["CA-carol"]["outcome"], "delivered");
    let mut pushed: Vec<String> = w.apns.requests().iter().map(|r| r.token.clone()).collect();
    pushed.sort();
    assert_eq!(pushed, vec![apns_token(2), apns_token(3)]);
    assert_eq!(w.fcm.count(), 1);
    assert_eq!(w.pending().await, 0);

    // Counted for the dashboards (the sampler reads the store's count every few seconds),
    // and the record is left for an operator.
    let admin = daemon.admin_url();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let seen = scrape::fetch(&admin)
            .await
            .value("callpush_bindings_undecodable_total", &[])
            .unwrap_or(0.0);
        if seen >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "callpush_bindings_undecodable_total stayed at {seen}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let kept: Option<String> = redis::cmd("HGET")
        .arg(w.keys.identity_bindings("alice"))
        .arg(&first.binding_id)
        .query_async(&mut w.conn)
        .await
        .unwrap();
    assert!(kept.is_some(), "the record is not deleted by a listing");
    daemon.stop().await;
}

#[tokio::test]
async fn a_key_redis_refuses_dead_letters_its_call_alone() {
    let mut w = world().await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("bob", Platform::Apns, &apns_token(2)).await;
    // eve's bindings key and one call's ledger key hold strings (a hand edit, another tool
    // sharing the prefix): Redis answers WRONGTYPE to every command on them.
    for key in [w.keys.identity_bindings("eve"), w.keys.sent("CA-ledger")] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("not a hash")
            .query_async(&mut w.conn)
            .await
            .unwrap();
    }

    let daemon = w.start_daemon();
    w.call(&incoming("eve", "CA-eve")).await;
    w.call(&incoming("bob", "CA-ledger")).await;
    w.call(&incoming("alice", "CA-alice")).await;
    let results = by_call(w.results(3).await);
    assert_eq!(results["CA-alice"]["outcome"], "delivered");
    assert_eq!(results["CA-eve"]["outcome"], "dead_lettered");
    assert_eq!(results["CA-ledger"]["outcome"], "dead_lettered");
    let dead: HashMap<String, HashMap<String, String>> = w
        .dead(2)
        .await
        .into_iter()
        .map(|d| (d["call_sid"].clone(), d))
        .collect();
    for sid in ["CA-eve", "CA-ledger"] {
        assert_eq!(dead[sid]["reason"], "store_error", "{:?}", dead[sid]);
        assert!(
            dead[sid]["detail"].contains("WRONGTYPE"),
            "the detail names the store's complaint: {:?}",
            dead[sid]["detail"]
        );
    }
    assert!(dead["CA-eve"]["detail"].starts_with("resolving bindings"));
    assert!(dead["CA-ledger"]["detail"].starts_with("claiming devices"));
    // bob's device was never claimed, so never pushed; alice's was.
    let pushed: Vec<String> = w.apns.requests().iter().map(|r| r.token.clone()).collect();
    assert_eq!(pushed, vec![apns_token(1)]);
    assert_eq!(w.pending().await, 0, "nothing is retried forever");
    daemon.stop().await;
}
