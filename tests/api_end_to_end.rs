//! End to end through real sockets: the daemon with both listeners, an app registering over
//! HTTP, a call server enqueueing over the admin API, the push arriving at the APNs test
//! double, and the `delivered` outcome on the results stream.

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::api::{add_auth, http, token, ADMIN_TOKEN};
use support::daemon::TestDaemon;
use support::world::{World, WAIT};

#[tokio::test]
async fn register_over_http_enqueue_over_http_and_the_push_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::with(|s| add_auth(s, dir.path())).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let device = "5A".repeat(32);

    let registered = http(
        Method::POST,
        &daemon.api_url(),
        "/v1/registrations",
        Some(&token("alice")),
        Some(json!({"platform": "apns", "device_token": device})),
    )
    .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(registered.body["device_token"], "5a5a5a5a…");

    let ready = http(Method::GET, &daemon.api_url(), "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let unauthorized = http(
        Method::POST,
        &daemon.admin_url(),
        "/v1/calls",
        None,
        Some(json!({"type": "incoming", "to": "alice", "call_sid": "CAe2e"})),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);

    let enqueued = http(
        Method::POST,
        &daemon.admin_url(),
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(
            json!({"type": "incoming", "to": "alice", "call_sid": "CAe2e", "from": "+15550001111"}),
        ),
    )
    .await;
    assert_eq!(enqueued.status, StatusCode::ACCEPTED, "{}", enqueued.body);
    assert!(enqueued.body["id"].is_string());

    assert!(w.apns.wait_for(1, WAIT).await, "the push reaches APNs");
    let push = &w.apns.requests()[0];
    assert_eq!(push.token, device.to_ascii_lowercase());
    assert_eq!(push.body["callpush"]["call_sid"], "CAe2e");
    assert_eq!(push.body["callpush"]["caller"], "+15550001111");
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["call_sid"], "CAe2e");

    let metrics = http(Method::GET, &daemon.admin_url(), "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    daemon.stop().await;
}
