//! The public registration API through `oneshot` against a real Redis: what a mobile app sees
//! when it registers and unregisters a device with an access token minted by its backend.

mod support;

use std::net::SocketAddr;

use axum::extract::connect_info::MockConnectInfo;
use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, claims, sign, token, ApiWorld, KEY_SECRET};
use support::fixtures::apns_token;

#[tokio::test]
async fn register_creates_then_refreshes_with_the_masked_binding() {
    let w = ApiWorld::new().await;
    let device = apns_token(0xab);
    let first = w.register("alice", "apns", &device).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let b = &first.body;
    assert_eq!(b["identity"], "alice");
    assert_eq!(b["platform"], "apns");
    assert_eq!(b["credential"], "CRapns", "the single APNs credential");
    assert_eq!(b["device_token"], "abababab…", "device token masked");
    assert!(b["binding_id"].as_str().unwrap().starts_with("BS"));
    for field in ["created_at", "updated_at", "expires_at"] {
        let t = b[field].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field}: {t}"
        );
    }

    let again = w.register("alice", "apns", &device).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["binding_id"], b["binding_id"], "same binding");
    assert_eq!(again.body["created_at"], b["created_at"]);

    let fcm = w.register("alice", "fcm", "fcm:token_1.2-3").await;
    assert_eq!(fcm.status, StatusCode::CREATED);
    assert_eq!(fcm.body["credential"], "CRfcm");
    let stored = w.world.store().await.list("alice").await.unwrap();
    assert_eq!(stored.len(), 2);
}

#[tokio::test]
async fn upper_case_apns_tokens_are_stored_lower_case() {
    let w = ApiWorld::new().await;
    let reply = w.register("alice", "apns", &"AB".repeat(32)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["device_token"], "abababab…");
    let stored = w.world.store().await.list("alice").await.unwrap();
    assert_eq!(stored[0].device_token, "ab".repeat(32));
    // The same device in another case is the same binding.
    let again = w.register("alice", "apns", &"ab".repeat(32)).await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn unregister_removes_once_then_is_not_found() {
    let w = ApiWorld::new().await;
    let device = apns_token(1);
    assert_eq!(
        w.register("alice", "apns", &device).await.status,
        StatusCode::CREATED
    );
    let body = json!({"platform": "apns", "device_token": device});
    let alice = token("alice");
    let del = |body| {
        call(
            w.public(),
            Method::DELETE,
            "/v1/registrations",
            Some(&alice),
            Some(body),
        )
    };
    let first = del(body.clone()).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    assert!(w.bindings("alice").await.is_empty());
    let second = del(body).await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    assert_eq!(second.code(), "not_found");
    assert!(
        !second.message().contains(&device),
        "never the full device token"
    );
}

#[tokio::test]
async fn a_device_registered_by_bob_leaves_alice() {
    let w = ApiWorld::new().await;
    let device = apns_token(7);
    assert_eq!(
        w.register("alice", "apns", &device).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        w.register("bob", "apns", &device).await.status,
        StatusCode::CREATED
    );
    let store = w.world.store().await;
    assert!(store.list("alice").await.unwrap().is_empty());
    assert_eq!(store.list("bob").await.unwrap()[0].device_token, device);
    // Alice's app can no longer remove bob's device.
    let reply = call(
        w.public(),
        Method::DELETE,
        "/v1/registrations",
        Some(&token("alice")),
        Some(json!({"platform": "apns", "device_token": device})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_device_tokens_are_rejected_per_platform() {
    let w = ApiWorld::with(|s| s.limits.registrations_per_identity_per_min = 0).await;
    let cases = [
        ("apns", "ab".repeat(31)),                  // 62 hex digits
        ("apns", "a".repeat(201)),                  // too long
        ("apns", format!("{}zz", "ab".repeat(31))), // not hex
        ("apns", String::new()),
        ("fcm", String::new()),
        ("fcm", "has space".into()),
        ("fcm", "slash/inside".into()),
        ("fcm", "a".repeat(4097)),
    ];
    for (platform, device) in cases {
        let reply = w.register("alice", platform, &device).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{platform} {device:?}"
        );
        assert_eq!(
            reply.code(),
            "invalid_device_token",
            "{platform} {device:?}"
        );
    }
    assert!(w.bindings("alice").await.is_empty());
}

#[tokio::test]
async fn a_token_without_the_incoming_grant_is_forbidden() {
    let w = ApiWorld::new().await;
    let mut no_incoming = claims("alice");
    no_incoming["grants"]["voice"] = json!({"outgoing": {"application_sid": "AP1"}});
    let mut denied = claims("alice");
    denied["grants"]["voice"]["incoming"]["allow"] = json!(false);
    for c in [no_incoming, denied] {
        let reply = call(
            w.public(),
            Method::POST,
            "/v1/registrations",
            Some(&sign(&c, KEY_SECRET)),
            Some(json!({"platform": "apns", "device_token": apns_token(2)})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.code(), "grant_missing");
    }
}

#[tokio::test]
async fn missing_garbled_expired_or_forged_tokens_are_unauthorized() {
    let w = ApiWorld::new().await;
    let body = json!({"platform": "apns", "device_token": apns_token(3)});
    let mut expired = claims("alice");
    expired["nbf"] = json!(1_000_000);
    expired["exp"] = json!(1_000_600);
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "invalid_token"),
        (Some("Basic YWxpY2U6cHc=".into()), "invalid_token"),
        (Some("Bearer".into()), "invalid_token"),
        (Some("Bearer not.a.jwt".into()), "invalid_token"),
        (
            Some(format!("Bearer {}", sign(&claims("alice"), "wrong-secret"))),
            "invalid_token",
        ),
        (
            Some(format!("Bearer {}", sign(&expired, KEY_SECRET))),
            "token_expired",
        ),
    ];
    for (header, code) in cases {
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri("/v1/registrations")
            .header("content-type", "application/json");
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let req = req.body(axum::body::Body::from(body.to_string())).unwrap();
        let reply = support::api::send(w.public(), req).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(reply.code(), code, "{header:?}");
        assert!(!reply.message().contains(KEY_SECRET));
    }
    assert!(w.bindings("alice").await.is_empty());
}

#[tokio::test]
async fn the_grant_credential_must_fit_the_platform() {
    let w = ApiWorld::new().await;
    let mut c = claims("alice");
    c["grants"]["voice"]["push_credential_sid"] = json!("CRfcm");
    let signed = sign(&c, KEY_SECRET);
    let register = |platform: &str, device: String| {
        call(
            w.public(),
            Method::POST,
            "/v1/registrations",
            Some(&signed),
            Some(json!({"platform": platform, "device_token": device})),
        )
    };
    let wrong = register("apns", apns_token(4)).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.code(), "invalid_request");
    let right = register("fcm", "fcm-token".into()).await;
    assert_eq!(right.status, StatusCode::CREATED);
    assert_eq!(right.body["credential"], "CRfcm");
}

#[tokio::test]
async fn registrations_past_the_identity_limit_get_429_with_retry_after() {
    let w = ApiWorld::with(|s| s.limits.registrations_per_identity_per_min = 3).await;
    for n in 0..3 {
        let reply = w.register("alice", "apns", &apns_token(n)).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let limited = w.register("alice", "apns", &apns_token(9)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(w.world.store().await.list("alice").await.unwrap().len(), 3);
    // Another identity has its own allowance.
    assert_eq!(
        w.register("bob", "apns", &apns_token(9)).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn registrations_past_the_address_limit_get_429() {
    let w = ApiWorld::with(|s| s.limits.registrations_per_address_per_min = 2).await;
    let from = |ip: &str| {
        let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
        w.public().layer(MockConnectInfo(addr))
    };
    let body = |n| json!({"platform": "apns", "device_token": apns_token(n)});
    for (n, identity) in ["alice", "bob"].into_iter().enumerate() {
        let reply = call(
            from("192.0.2.1"),
            Method::POST,
            "/v1/registrations",
            Some(&token(identity)),
            Some(body(n as u8)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let limited = call(
        from("192.0.2.1"),
        Method::POST,
        "/v1/registrations",
        Some(&token("carol")),
        Some(body(5)),
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    let other = call(
        from("192.0.2.2"),
        Method::POST,
        "/v1/registrations",
        Some(&token("carol")),
        Some(body(5)),
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::CREATED,
        "another address has its own allowance"
    );
}
