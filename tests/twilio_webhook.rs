//! The webhook's answers before anything reaches a provider: 404 for a callee without a live
//! binding, 400/413/415 naming the field for malformed requests, 403 for another account, and
//! one stream entry per `twi_message_id` however often Twilio retries.

mod support;

use axum::body::Body;
use callpush::domain::Platform;
use http::{Request, StatusCode};
use support::api::{send, ApiWorld};
use support::twilio::{add_twilio, notification, pairs, signed, ROUTE};

async fn world() -> (ApiWorld, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| add_twilio(s, dir.path(), &[support::twilio::AUTH_TOKEN])).await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    (w, dir)
}

async fn stream(w: &ApiWorld) -> Vec<(String, Vec<(String, String)>)> {
    let mut conn = w.world.conn.clone();
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&w.world.keys.calls)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
}

#[tokio::test]
async fn the_event_on_the_stream_carries_every_twi_field() {
    let (w, _dir) = world().await;
    let fields = notification("CAstream", "RMstream", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["duplicate"], false);
    let entries = stream(&w).await;
    assert_eq!(entries.len(), 1);
    let got = &entries[0].1;
    let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("type"), Some("incoming"));
    assert_eq!(get("to"), Some("bob"));
    assert_eq!(get("call_sid"), Some("CAstream"));
    assert_eq!(get("from"), Some("client:alice"));
    assert_eq!(get("ttl_ms"), Some("30000"));
    for (k, v) in &fields {
        assert_eq!(get(k), Some(v.as_str()), "{k} carried unchanged");
    }
}

#[tokio::test]
async fn no_live_binding_is_404_and_adds_nothing() {
    let (w, _dir) = world().await;
    let fields = notification("CAnobody", "RMnobody", "carol");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), "not_found");
    assert!(stream(&w).await.is_empty());
}

#[tokio::test]
async fn a_retried_message_id_is_200_without_a_second_entry() {
    let (w, _dir) = world().await;
    let fields = notification("CAretry", "RMretry", "bob");
    for duplicate in [false, true, true] {
        let r = send(w.public(), signed(&pairs(&fields))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["duplicate"], duplicate);
    }
    assert_eq!(stream(&w).await.len(), 1);
    // A new message id is a new notification.
    let fields = notification("CAretry2", "RMretry2", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], false);
    assert_eq!(stream(&w).await.len(), 2);
}

#[tokio::test]
async fn malformed_requests_name_the_field_and_add_nothing() {
    let (w, _dir) = world().await;
    let base = notification("CAbad", "RMbad", "bob");
    let without = |name: &str| -> Vec<(String, String)> {
        base.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut f = without(name);
        f.push((name.to_string(), value.to_string()));
        f
    };
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (without("twi_call_sid"), "twi_call_sid"),
        (without("twi_to"), "twi_to"),
        (with("twi_to", &"x".repeat(130)), "twi_to"),
        (with("twi_to", "client:"), "twi_to"),
        (with("twi_call_sid", "CA\r\nInjected: yes"), "twi_call_sid"),
        (with("Caller", "+15551234567"), "Caller"),
    ];
    for (fields, field) in cases {
        let r = send(w.public(), signed(&pairs(&fields))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
        assert!(r.message().contains(field), "{field}: {}", r.body);
    }
    let r = send(w.public(), signed(&pairs(&with("twi_from", "a\u{7}b")))).await;
    assert!(r.message().contains("control characters"), "{}", r.body);

    // Bad percent-encoding (not UTF-8) is a 400 naming the field, before any signature check.
    let req = Request::post(ROUTE)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("twi_to=%FF%FE&twi_call_sid=CA1"))
        .unwrap();
    let r = send(w.public(), req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("twi_to"), "{}", r.body);

    // A 20 KB body.
    let big = with("twi_params", &"x".repeat(20 * 1024));
    let r = send(w.public(), signed(&pairs(&big))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "payload_too_large");

    // JSON instead of a form.
    let req = Request::post(ROUTE)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"twi_call_sid": "CA1"}"#))
        .unwrap();
    let r = send(w.public(), req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");
    assert!(r.message().contains("x-www-form-urlencoded"), "{}", r.body);

    // Another account's notification, correctly signed with our token.
    let other = with("twi_account_sid", "AC99999999999999999999999999999999");
    let r = send(w.public(), signed(&pairs(&other))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("twi_account_sid"));

    assert!(
        stream(&w).await.is_empty(),
        "nothing malformed reached the stream"
    );
}

#[tokio::test]
async fn the_message_id_marker_expires_with_the_ring_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| {
        add_twilio(s, dir.path(), &[support::twilio::AUTH_TOKEN]);
        s.twilio.ring_ttl_ms = 300;
    })
    .await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    let fields = notification("CAttl", "RMttl", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], false);
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], true);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(
        r.body["duplicate"], false,
        "past the ring ttl the id is new again"
    );
    assert_eq!(stream(&w).await.len(), 2);
}
