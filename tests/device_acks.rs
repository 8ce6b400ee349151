//! Device acks (SPEC §3, §11): the callee's app says a push woke it, and callpush counts the
//! phones that woke and how long they took, without touching the call's one outcome. Each test
//! rings through the real daemon and acks through its public listener, as an app would.

#[macro_use]
mod support;

on_both_backends!(an_ack_of_a_pushed_device_counts_once_and_leaves_the_outcome_alone,);

use http::{Method, StatusCode};
use redis::AsyncCommands;
use serde_json::{json, Value};
use support::api::{http, token, ApiWorld, Reply, ADMIN_TOKEN};
use support::daemon::read_all;
use support::fixtures::numbered_apns_token as apns_token;
use support::scrape;
use support::world::Backend;

async fn ack(api_url: &str, call_sid: &str, identity: &str, device: Value) -> Reply {
    let path = format!("/v1/calls/{call_sid}/ack");
    http(
        Method::POST,
        api_url,
        &path,
        Some(&token(identity)),
        Some(device),
    )
    .await
}

/// `GET /v1/acks<query>` on the admin listener: the acks.
async fn read_acks(admin_url: &str, query: &str) -> Vec<Value> {
    let path = format!("/v1/acks{query}");
    let reply = http(Method::GET, admin_url, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["acks"].as_array().unwrap().clone()
}

fn wakes(metrics: &scrape::Scrape, platform: &str) -> f64 {
    metrics
        .value(
            "callpush_device_wake_seconds_count",
            &[("platform", platform)],
        )
        .unwrap_or(0.0)
}

async fn an_ack_of_a_pushed_device_counts_once_and_leaves_the_outcome_alone(backend: Backend) {
    let api = ApiWorld::on(backend, |_| {}).await;
    let iphone = apns_token(1);
    assert_eq!(
        api.register("alice", "apns", &iphone).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.register("alice", "fcm", "fcm-alice-pixel").await.status,
        StatusCode::CREATED
    );
    let mut w = api.world;
    let daemon = w.start_daemon();
    let pushed_id = w.ring("alice", "CA1").await;
    let results = w.results(1).await;
    assert_eq!(
        (
            results[0]["outcome"].as_str(),
            results[0]["delivered"].as_str()
        ),
        ("delivered", "2")
    );

    // The iPhone rang; the app says so, twice (a retry of its own): the first counts.
    let iphone_body = json!({"platform": "apns", "device_token": iphone});
    for _ in 0..2 {
        let reply = ack(&daemon.api_url(), "CA1", "alice", iphone_body.clone()).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    assert_eq!(wakes(&metrics, "apns"), 1.0);
    assert_eq!(wakes(&metrics, "fcm"), 0.0, "the Pixel did not say it woke");
    assert_eq!(
        metrics.value(
            "callpush_device_acks_total",
            &[("platform", "apns"), ("credential", "CRapns")]
        ),
        Some(1.0)
    );

    // A call server reads the ack on the admin listener, on either backend (`callpush dev`
    // keeps acks in memory).
    let iphone_binding = w.store().await.list("alice").await.unwrap();
    let iphone_binding = iphone_binding
        .iter()
        .find(|b| b.device_token == iphone)
        .unwrap();
    let listed = read_acks(&daemon.admin_url(), "").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            &listed[0]["call_sid"],
            &listed[0]["to"],
            &listed[0]["platform"],
            &listed[0]["credential"]
        ),
        (
            &json!("CA1"),
            &json!("alice"),
            &json!("apns"),
            &json!("CRapns")
        )
    );
    assert_eq!(listed[0]["binding_id"], json!(iphone_binding.binding_id));
    assert_eq!(
        listed[0]["pushed_ms"].as_u64().unwrap().to_string(),
        pushed_id.split('-').next().unwrap(),
        "the event's stream-id time"
    );
    assert!(listed[0]["acked_ms"].as_u64() >= listed[0]["pushed_ms"].as_u64());
    let after = listed[0]["id"].as_str().unwrap();
    assert_eq!(
        read_acks(&daemon.admin_url(), &format!("?after={after}")).await,
        Vec::<Value>::new()
    );

    if backend == Backend::Redis {
        let mut conn = w.conn.clone();
        let acks = read_all(&mut conn, &w.keys.named("acks")).await;
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert_eq!(acks[0].0, after, "the route reads the stream");
        let entry = &acks[0].1;
        assert_eq!(entry["call_sid"], "CA1");
        assert_eq!(entry["to"], "alice");
        assert_eq!(entry["binding_id"], iphone_binding.binding_id);
        assert_eq!(
            (entry["platform"].as_str(), entry["credential"].as_str()),
            ("apns", "CRapns")
        );
        let pushed: u64 = entry["pushed_ms"].parse().unwrap();
        let acked: u64 = entry["acked_ms"].parse().unwrap();
        assert_eq!(
            pushed.to_string(),
            pushed_id.split('-').next().unwrap(),
            "the event's stream-id time"
        );
        assert!(acked >= pushed);
    }

    // Refused, and nothing recorded: a device the call did not push (registered after it),
    // a call that never was, another identity's token for alice's phone.
    assert_eq!(register_late(&daemon.api_url()).await, StatusCode::CREATED);
    let late = json!({"platform": "apns", "device_token": apns_token(2)});
    assert_eq!(
        ack(&daemon.api_url(), "CA1", "alice", late).await.status,
        StatusCode::NOT_FOUND
    );
    let reply = ack(&daemon.api_url(), "CA-never", "alice", iphone_body.clone()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = ack(&daemon.api_url(), "CA1", "bob", iphone_body.clone()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let pixel = json!({"platform": "fcm", "device_token": "fcm-alice-pixel"});
    let reply = ack(&daemon.api_url(), "CA1", "bob", pixel.clone()).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "bob cannot use up alice's ack"
    );

    // Past the call's lifetime and grace the ledger has forgotten the call (its key expires
    // then; here it is expired at once rather than waiting the 30 s ring and 60 s grace).
    if backend == Backend::Redis {
        let mut conn = w.conn.clone();
        let _: () = conn.del(w.keys.sent("CA1")).await.unwrap();
        let reply = ack(&daemon.api_url(), "CA1", "alice", pixel).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        assert_eq!(read_all(&mut conn, &w.keys.named("acks")).await.len(), 1);
    }
    let metrics = scrape::fetch(&daemon.admin_url()).await;
    assert_eq!(wakes(&metrics, "apns") + wakes(&metrics, "fcm"), 1.0);
    assert_eq!(read_acks(&daemon.admin_url(), "").await.len(), 1);
    let bad = http(
        Method::GET,
        &daemon.admin_url(),
        "/v1/acks?after=yesterday",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.to_string().contains("after"), "{}", bad.body);

    // The call's one outcome is what it was.
    let results = w.results(1).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["delivered"], "2");
    daemon.stop().await;
}

async fn register_late(api_url: &str) -> StatusCode {
    let body = json!({"platform": "apns", "device_token": apns_token(2)});
    http(
        Method::POST,
        api_url,
        "/v1/registrations",
        Some(&token("alice")),
        Some(body),
    )
    .await
    .status
}
