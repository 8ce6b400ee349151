//! End to end: call events on a real Redis stream, the daemon, and the APNs and FCM HTTP/2 test
//! doubles. Each test asserts what a call server or a callee would notice: the pushes that
//! arrived, the outcome on the results stream, the dead letters, the bindings left. Every test
//! body runs twice: on Redis and on the in-memory backend of `callpush dev`
//! ([`on_both_backends!`]).

#[macro_use]
mod support;

on_both_backends!(
    incoming_call_rings_every_device_with_the_spec_requests,
    nobody_registered_is_no_bindings_and_cancel_skips_apns,
    dead_tokens_are_pruned_unless_registered_again_after_the_verdict,
    permanent_errors_dead_letter_and_transient_ones_are_retried,
    malformed_entries_are_dead_lettered_and_the_stream_keeps_flowing,
    a_device_follows_its_new_owner_and_the_cap_evicts_the_oldest,
    the_fcm_oauth_token_is_fetched_once_for_many_pushes,
    a_flood_of_calls_to_one_callee_is_cut_at_the_limit_but_cancels_pass,
);

use std::collections::HashMap;

use callpush::config::CredentialSettings;
use callpush::domain::{now_ms, Platform};
use support::apns_double;
use support::fixtures::apns_token;
use support::world::{Backend, World};

async fn incoming_call_rings_every_device_with_the_spec_requests(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    w.register("alice", Platform::Apns, &apns_token(2)).await;
    w.register("alice", Platform::Fcm, "fcm-token-alice").await;
    let daemon = w.start_daemon();
    let id = w
        .call(&[
            ("type", "incoming"),
            ("to", "alice"),
            ("call_sid", "CA0001"),
            ("from", "+15551234567"),
            ("params", r#"{"display":"Bob"}"#),
        ])
        .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["call_sid"], "CA0001");
    assert_eq!(results[0]["to"], "alice");
    assert_eq!(results[0]["devices"], "3");
    assert_eq!(results[0]["delivered"], "3");
    assert_eq!(w.apns.count(), 2, "two APNs pushes");
    assert_eq!(w.fcm.count(), 1, "one FCM push");

    let deadline_secs = (id.split('-').next().unwrap().parse::<u64>().unwrap() + 30_000) / 1000;
    let mut tokens: Vec<String> = w.apns.requests().iter().map(|r| r.token.clone()).collect();
    tokens.sort();
    assert_eq!(tokens, vec![apns_token(1), apns_token(2)]);
    for push in w.apns.requests() {
        assert_eq!(push.status, 200);
        assert_eq!(push.header("apns-push-type"), Some("voip"));
        assert_eq!(push.header("apns-topic"), Some("com.example.app.voip"));
        assert_eq!(push.header("apns-priority"), Some("10"));
        assert_eq!(push.header("apns-collapse-id"), Some("CA0001"));
        assert_eq!(
            push.header("apns-expiration"),
            Some(deadline_secs.to_string().as_str())
        );
        assert_eq!(
            push.body,
            serde_json::json!({"aps": {}, "callpush": {
                "type": "incoming", "call_sid": "CA0001", "caller": "+15551234567",
                "callee": "alice", "params": {"display": "Bob"}}})
        );
    }
    let fcm = &w.fcm.requests()[0];
    assert_eq!(fcm.status, 200);
    let message = &fcm.body["message"];
    assert_eq!(message["token"], "fcm-token-alice");
    assert_eq!(message["android"]["priority"], "HIGH");
    let ttl = message["android"]["ttl"].as_str().unwrap();
    let secs: u64 = ttl.trim_end_matches('s').parse().unwrap();
    assert!((1..=30).contains(&secs), "ttl {ttl}");
    assert_eq!(
        message["data"],
        serde_json::json!({"type": "incoming", "call_sid": "CA0001", "caller": "+15551234567",
            "callee": "alice", "params": "{\"display\":\"Bob\"}"})
    );
    assert_eq!(w.pending().await, 0, "the entry is acknowledged");
    daemon.stop().await;
}

async fn nobody_registered_is_no_bindings_and_cancel_skips_apns(backend: Backend) {
    let mut w = World::on(backend, |s| {
        let CredentialSettings::Apns(loud) = s.credentials[0].clone() else {
            unreachable!()
        };
        s.credentials
            .push(CredentialSettings::Apns(callpush::config::ApnsCredential {
                sid: "CRloud".into(),
                send_cancel: true,
                ..loud
            }));
    })
    .await;
    w.register("bob", Platform::Apns, &apns_token(3)).await;
    w.register("bob", Platform::Fcm, "fcm-token-bob").await;
    w.register_at("bob", Platform::Apns, "CRloud", &apns_token(4), now_ms())
        .await;
    let daemon = w.start_daemon();
    w.call(&[("type", "incoming"), ("to", "nobody"), ("call_sid", "CA1")])
        .await;
    w.call(&[("type", "cancel"), ("to", "bob"), ("call_sid", "CA2")])
        .await;
    let results = w.results(2).await;
    let by_sid: HashMap<&str, &HashMap<String, String>> = results
        .iter()
        .map(|r| (r["call_sid"].as_str(), r))
        .collect();
    assert_eq!(by_sid["CA1"]["outcome"], "no_bindings");
    assert_eq!(by_sid["CA2"]["outcome"], "delivered");
    assert_eq!(by_sid["CA2"]["devices"], "2");
    assert_eq!(w.fcm.count(), 1);
    assert_eq!(
        w.fcm.requests()[0].body["message"]["data"]["type"],
        "cancel"
    );
    let apns: Vec<String> = w.apns.requests().iter().map(|r| r.token.clone()).collect();
    assert_eq!(
        apns,
        vec![apns_token(4)],
        "only the send_cancel credential gets the cancel"
    );
    assert!(w.dead(0).await.is_empty());
    daemon.stop().await;
}

async fn dead_tokens_are_pruned_unless_registered_again_after_the_verdict(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    let gone = apns_token(5);
    let back = apns_token(6);
    w.register("carol", Platform::Apns, &gone).await;
    w.register("carol", Platform::Fcm, "fcm-token-gone").await;
    w.register("dave", Platform::Apns, &back).await;
    // Apple judged `back` dead a minute ago, but dave's app registered it again just now.
    w.apns.set_unregistered(&gone, now_ms());
    w.apns.set_unregistered(&back, now_ms() - 60_000);
    w.fcm.set_unregistered("fcm-token-gone");
    let daemon = w.start_daemon();
    w.call(&[("type", "incoming"), ("to", "carol"), ("call_sid", "CA1")])
        .await;
    w.call(&[("type", "incoming"), ("to", "dave"), ("call_sid", "CA2")])
        .await;
    let results = w.results(2).await;
    assert!(
        results.iter().all(|r| r["outcome"] == "no_bindings"),
        "{results:?}"
    );
    let store = w.store().await;
    assert!(
        store.list("carol").await.unwrap().is_empty(),
        "both carol's bindings pruned"
    );
    let dave = store.list("dave").await.unwrap();
    assert_eq!(
        dave.len(),
        1,
        "dave re-registered after Apple's timestamp: kept"
    );
    assert_eq!(dave[0].device_token, back);
    assert!(
        w.dead(0).await.is_empty(),
        "dead tokens are not dead letters"
    );
    daemon.stop().await;
}

async fn permanent_errors_dead_letter_and_transient_ones_are_retried(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    let bad = apns_token(7);
    let flaky = apns_token(8);
    w.register("erin", Platform::Apns, &bad).await;
    w.register("frank", Platform::Apns, &flaky).await;
    w.apns
        .script(&bad, vec![apns_double::Answer::error(400, "BadTopic")]);
    w.apns.script(
        &flaky,
        vec![
            apns_double::Answer::error(503, "ServiceUnavailable"),
            apns_double::Answer::ok(),
        ],
    );
    let daemon = w.start_daemon();
    let erin_id = w
        .call(&[
            ("type", "incoming"),
            ("to", "erin"),
            ("call_sid", "CA-bad"),
            ("x_custom", "kept"),
        ])
        .await;
    w.call(&[
        ("type", "incoming"),
        ("to", "frank"),
        ("call_sid", "CA-flaky"),
    ])
    .await;
    let results = w.results(2).await;
    let outcome =
        |sid: &str| results.iter().find(|r| r["call_sid"] == sid).unwrap()["outcome"].clone();
    assert_eq!(outcome("CA-bad"), "dead_lettered");
    assert_eq!(outcome("CA-flaky"), "delivered");
    let dead = w.dead(1).await;
    assert_eq!(dead[0]["reason"], "provider_rejected");
    assert!(
        dead[0]["detail"].contains("APNs 400 BadTopic"),
        "{:?}",
        dead[0]
    );
    assert_eq!(dead[0]["attempts"], "1");
    assert_eq!(dead[0]["source_id"], erin_id);
    assert_eq!(dead[0]["x_custom"], "kept", "unknown fields are kept");
    assert_eq!(dead[0]["to"], "erin");
    let pushes_to = |t: &str| w.apns.requests().iter().filter(|r| r.token == t).count();
    assert_eq!(pushes_to(&bad), 1, "a permanent error is not retried");
    assert_eq!(pushes_to(&flaky), 2, "503 then 200");
    daemon.stop().await;
}

async fn malformed_entries_are_dead_lettered_and_the_stream_keeps_flowing(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    w.register("gina", Platform::Fcm, "fcm-token-gina").await;
    let daemon = w.start_daemon();
    w.call(&[("type", "incoming"), ("call_sid", "CA-noto")])
        .await;
    w.call(&[
        ("type", "incoming"),
        ("to", "gina"),
        ("call_sid", "CA-params"),
        ("params", "{not json"),
    ])
    .await;
    w.call(&[("type", "ring"), ("to", "gina"), ("call_sid", "CA-type")])
        .await;
    w.call(&[
        ("type", "incoming"),
        ("to", "gina"),
        ("call_sid", "CA-good"),
    ])
    .await;
    let results = w.results(4).await;
    let outcomes: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["call_sid"].as_str(), r["outcome"].as_str()))
        .collect();
    for sid in ["CA-noto", "CA-params", "CA-type"] {
        assert!(outcomes.contains(&(sid, "malformed")), "{outcomes:?}");
    }
    assert!(outcomes.contains(&("CA-good", "delivered")), "{outcomes:?}");
    let dead = w.dead(3).await;
    let detail = |sid: &str| dead.iter().find(|d| d["call_sid"] == sid).unwrap()["detail"].clone();
    assert!(dead.iter().all(|d| d["reason"] == "malformed"));
    assert!(detail("CA-noto").contains("`to`"), "{}", detail("CA-noto"));
    assert!(detail("CA-params").contains("`params`"));
    assert!(detail("CA-type").contains("`type`"));
    assert_eq!(w.fcm.count(), 1, "only the good event pushed");
    assert_eq!(w.pending().await, 0);
    daemon.stop().await;
}

async fn a_device_follows_its_new_owner_and_the_cap_evicts_the_oldest(backend: Backend) {
    let mut w = World::on(backend, |s| s.bindings.max_per_identity = 2).await;
    let t0 = now_ms() - 10_000;
    w.register_at("alice", Platform::Fcm, "CRfcm", "shared-phone", t0)
        .await;
    w.register_at("bob", Platform::Fcm, "CRfcm", "shared-phone", t0 + 1)
        .await;
    w.register_at("hank", Platform::Fcm, "CRfcm", "hank-old", t0 + 2)
        .await;
    w.register_at("hank", Platform::Fcm, "CRfcm", "hank-mid", t0 + 3)
        .await;
    w.register_at("hank", Platform::Fcm, "CRfcm", "hank-new", t0 + 4)
        .await;
    let daemon = w.start_daemon();
    w.call(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA1")])
        .await;
    w.call(&[("type", "incoming"), ("to", "bob"), ("call_sid", "CA2")])
        .await;
    w.call(&[("type", "incoming"), ("to", "hank"), ("call_sid", "CA3")])
        .await;
    let results = w.results(3).await;
    let outcome = |sid: &str| {
        let r = results.iter().find(|r| r["call_sid"] == sid).unwrap();
        (r["outcome"].clone(), r["devices"].clone())
    };
    assert_eq!(outcome("CA1"), ("no_bindings".into(), "0".into()));
    assert_eq!(outcome("CA2"), ("delivered".into(), "1".into()));
    assert_eq!(outcome("CA3"), ("delivered".into(), "2".into()));
    let mut tokens: Vec<String> = w.fcm.requests().iter().map(|r| r.token.clone()).collect();
    tokens.sort();
    assert_eq!(tokens, vec!["hank-mid", "hank-new", "shared-phone"]);
    daemon.stop().await;
}

async fn the_fcm_oauth_token_is_fetched_once_for_many_pushes(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    for i in 0..20 {
        w.register(
            &format!("user{i}"),
            Platform::Fcm,
            &format!("fcm-token-{i}"),
        )
        .await;
    }
    let daemon = w.start_daemon();
    for round in 0..5 {
        for i in 0..20 {
            let sid = format!("CA{round}-{i}");
            let to = format!("user{i}");
            w.call(&[("type", "incoming"), ("to", &to), ("call_sid", &sid)])
                .await;
        }
    }
    let results = w.results(100).await;
    assert!(results.iter().all(|r| r["outcome"] == "delivered"));
    assert_eq!(w.fcm.count(), 100);
    assert_eq!(w.fcm.token_requests(), 1, "one OAuth token for 100 pushes");
    let bearers: std::collections::HashSet<_> =
        w.fcm.requests().iter().map(|r| r.bearer.clone()).collect();
    assert_eq!(bearers.len(), 1);
    daemon.stop().await;
}

async fn a_flood_of_calls_to_one_callee_is_cut_at_the_limit_but_cancels_pass(backend: Backend) {
    let mut w = World::on(backend, |s| s.limits.calls_per_identity_per_min = 3).await;
    w.register("ivy", Platform::Fcm, "fcm-token-ivy").await;
    let daemon = w.start_daemon();
    for i in 0..5 {
        let sid = format!("CA{i}");
        w.call(&[("type", "incoming"), ("to", "ivy"), ("call_sid", &sid)])
            .await;
    }
    w.call(&[("type", "cancel"), ("to", "ivy"), ("call_sid", "CA0")])
        .await;
    let results = w.results(6).await;
    let count = |outcome: &str| results.iter().filter(|r| r["outcome"] == outcome).count();
    assert_eq!(
        count("delivered"),
        4,
        "three calls and the cancel: {results:?}"
    );
    assert_eq!(count("dead_lettered"), 2);
    let dead = w.dead(2).await;
    assert!(
        dead.iter().all(|d| d["reason"] == "rate_limited"),
        "{dead:?}"
    );
    assert_eq!(w.fcm.count(), 4);
    daemon.stop().await;
}

/// Stopping the in-memory daemon while its read waits for new calls ends that wait at once:
/// with `stream.block_ms` and the grace period both ten minutes, it still returns within
/// [`support::daemon::TestDaemon::stop`]'s 30 s (a read sitting out its block would not).
#[tokio::test]
async fn the_in_memory_daemon_stops_while_its_read_waits() {
    let mut w = World::on(Backend::Memory, |s| {
        s.stream.block_ms = 600_000;
        s.shutdown.grace_ms = 600_000;
    })
    .await;
    w.register("alice", Platform::Fcm, "fcm-token-alice").await;
    let daemon = w.start_daemon();
    w.call(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CA1")])
        .await;
    // Its outcome is written: the daemon is back to waiting for new calls.
    assert_eq!(w.results(1).await[0]["outcome"], "delivered");
    daemon.stop().await;
}
