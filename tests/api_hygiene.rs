//! Request hygiene on both listeners, through `oneshot` against a real Redis: size and type
//! limits, malformed bodies, unknown routes and methods — every error in the SPEC §3 JSON shape
//! — and the health routes, including `/readyz` while Redis is down.

mod support;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::json;
use support::api::{call, get_text, send, token, ApiWorld, Reply, ADMIN_TOKEN};

fn raw(
    uri: &str,
    bearer: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut req = Request::post(uri).header("authorization", format!("Bearer {bearer}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(body.into()).unwrap()
}

/// `POST /v1/registrations` as alice, with this content type and body.
async fn register_raw(w: &ApiWorld, content_type: Option<&str>, body: impl Into<Body>) -> Reply {
    let req = raw("/v1/registrations", &token("alice"), content_type, body);
    send(w.public(), req).await
}

#[tokio::test]
async fn bodies_over_16_kib_are_413() {
    let w = ApiWorld::new().await;
    let big = json!({"platform": "fcm", "device_token": "a".repeat(17 * 1024)}).to_string();
    let reply = register_raw(&w, Some("application/json"), big.clone()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
    let reply = send(
        w.admin(),
        raw("/v1/calls", ADMIN_TOKEN, Some("application/json"), big),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
}

#[tokio::test]
async fn bodies_not_declared_as_json_are_415() {
    let w = ApiWorld::new().await;
    let body = json!({"platform": "fcm", "device_token": "t"}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let reply = register_raw(&w, ct, body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(reply.code(), "unsupported_media_type");
    }
    let ok = register_raw(&w, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
}

#[tokio::test]
async fn malformed_bodies_and_unknown_fields_are_400_naming_the_problem() {
    let w = ApiWorld::new().await;
    let cases = [
        (
            r#"{"platform": "fcm", "device_token": "t", "device": "x"}"#,
            "device",
        ),
        (r#"{"platform": "gcm", "device_token": "t"}"#, "platform"),
        (r#"{"platform": "fcm"}"#, "device_token"),
        (r#"{"platform": "fcm", "device_token": 5}"#, "device_token"),
        (r#"{"platform": "fcm", "#, "JSON"),
        (
            r#"{"platform": "fcm", "device_token": "t"} trailing"#,
            "JSON",
        ),
        ("[]", "invalid"),
    ];
    for (body, named) in cases {
        let reply = register_raw(&w, Some("application/json"), body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.code(), "invalid_request", "{body}");
        assert!(
            reply.message().contains(named),
            "{body}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let w = ApiWorld::new().await;
    for router in [w.public(), w.admin()] {
        let reply = call(router.clone(), Method::GET, "/v1/nothing-here", None, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.code(), "not_found");
        let reply = call(router, Method::PUT, "/healthz", None, None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.code(), "method_not_allowed");
    }
    // The admin routes are not on the public listener, nor registrations on the admin one.
    let reply = call(
        w.public(),
        Method::POST,
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(json!({})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = call(w.public(), Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = call(
        w.admin(),
        Method::POST,
        "/v1/registrations",
        Some(&token("a")),
        Some(json!({})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_follows_redis_and_healthz_does_not() {
    let mut w = ApiWorld::new().await;
    for router in [w.public(), w.admin()] {
        assert_eq!(
            call(router.clone(), Method::GET, "/healthz", None, None)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            call(router, Method::GET, "/readyz", None, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    w.world.redis.stop().await;
    for router in [w.public(), w.admin()] {
        let ready = call(router.clone(), Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.code(), "unavailable");
        assert!(
            !ready.message().contains("127.0.0.1"),
            "no internals: {}",
            ready.message()
        );
        assert_eq!(
            call(router, Method::GET, "/healthz", None, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // A registration while Redis is down is a clean 503, not a hang or a 500.
    let reply = w.register("alice", "fcm", "fcm-token").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "unavailable");
    w.world.redis.restart().await;
    let mut ready = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        ready = call(w.public(), Method::GET, "/readyz", None, None)
            .await
            .status;
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::OK, "ready again once Redis is back");
}

/// A Redis that hangs (here: frozen with SIGSTOP) is as unready as one that is down, and the
/// probe's timeout counts as a Redis error like a refused PING does.
#[tokio::test]
async fn a_hanging_redis_makes_readyz_fail_and_counts_a_ping_error() {
    let w = ApiWorld::new().await;
    let scrape = || async { get_text(w.admin(), "/metrics").await.1 };
    let errors = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(r#"callpush_redis_errors_total{op="ping"}"#))
            .unwrap_or("no ping series")
            .to_string()
    };
    assert_eq!(
        errors(&scrape().await),
        r#"callpush_redis_errors_total{op="ping"} 0"#
    );
    w.world.redis.pause();
    let ready = call(w.public(), Method::GET, "/readyz", None, None).await;
    w.world.redis.resume();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "unavailable");
    assert_eq!(
        errors(&scrape().await),
        r#"callpush_redis_errors_total{op="ping"} 1"#
    );
}
