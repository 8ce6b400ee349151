//! The admin API through `oneshot` against a real Redis: what an operator or a call server
//! sees — the admin token guarding every route but `/metrics`, `/healthz`, `/readyz`, call
//! events enqueued with the consumer's validation, an identity's bindings listed and deleted.

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, get_text, ApiWorld, ADMIN_TOKEN};
use support::daemon::read_all;
use support::fixtures::apns_token;

#[tokio::test]
async fn every_admin_route_needs_the_admin_token_but_metrics_and_health() {
    let w = ApiWorld::new().await;
    let routes = [
        (
            Method::POST,
            "/v1/calls",
            Some(json!({"type": "incoming", "to": "a", "call_sid": "CA1"})),
        ),
        (Method::GET, "/v1/identities/alice/bindings", None),
        (Method::DELETE, "/v1/identities/alice/bindings/BS00", None),
    ];
    for (method, uri, body) in routes {
        for bearer in [None, Some("wrong-token"), Some("")] {
            let reply = call(w.admin(), method.clone(), uri, bearer, body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {bearer:?}"
            );
            assert_eq!(reply.code(), "invalid_token");
            assert!(!reply.message().contains(ADMIN_TOKEN));
        }
    }
    // A public access token is no admin token.
    let reply = call(
        w.admin(),
        Method::GET,
        "/v1/identities/alice/bindings",
        Some(&support::api::token("alice")),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        read_all(&mut w.world.conn.clone(), &w.world.keys.calls)
            .await
            .len(),
        0
    );

    let metrics = get_text(w.admin(), "/metrics").await;
    assert_eq!(metrics.0, StatusCode::OK);
    assert!(
        metrics.1.contains("callpush_build_info{version=\""),
        "{}",
        metrics.1
    );
    assert!(metrics.1.contains("process_resident_memory_bytes"));
    for uri in ["/healthz", "/readyz"] {
        assert_eq!(
            call(w.admin(), Method::GET, uri, None, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn post_calls_enqueues_the_event_and_answers_with_its_stream_id() {
    let w = ApiWorld::new().await;
    let reply = call(
        w.admin(),
        Method::POST,
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(json!({
            "type": "incoming", "to": "alice", "call_sid": "CA0001", "from": "+15551234567",
            "ttl_ms": 20000, "credential": "CRapns", "params": {"display": "Bob"}
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_string();
    let entries = read_all(&mut w.world.conn.clone(), &w.world.keys.calls).await;
    assert_eq!(entries.len(), 1);
    let (entry_id, fields) = &entries[0];
    assert_eq!(entry_id, &id);
    assert_eq!(fields["type"], "incoming");
    assert_eq!(fields["to"], "alice");
    assert_eq!(fields["call_sid"], "CA0001");
    assert_eq!(fields["from"], "+15551234567");
    assert_eq!(fields["ttl_ms"], "20000");
    assert_eq!(fields["credential"], "CRapns");
    assert_eq!(fields["params"], r#"{"display":"Bob"}"#);

    // The minimal form, and `ttl_ms` / `params` as strings as on the stream.
    let reply = call(
        w.admin(),
        Method::POST,
        "/v1/calls",
        Some(ADMIN_TOKEN),
        Some(
            json!({"type": "cancel", "to": "alice", "call_sid": "CA0001", "ttl_ms": "5000",
            "params": "{\"a\":\"b\"}"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
}

#[tokio::test]
async fn post_calls_errors_name_the_field() {
    let w = ApiWorld::new().await;
    let ok = json!({"type": "incoming", "to": "alice", "call_sid": "CA1"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = ok.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value;
        }
        body
    };
    let cases = [
        (with("type", json!(null)), "type"),
        (with("type", json!("ring")), "type"),
        (with("to", json!(null)), "to"),
        (with("to", json!("")), "to"),
        (with("to", json!(5)), "to"),
        (with("call_sid", json!(null)), "call_sid"),
        (with("ttl_ms", json!(0)), "ttl_ms"),
        (with("ttl_ms", json!(86_400_001u64)), "ttl_ms"),
        (with("ttl_ms", json!("soon")), "ttl_ms"),
        (with("params", json!([1])), "params"),
        (with("params", json!({"n": 1})), "params"),
        (with("collee", json!("bob")), "collee"),
    ];
    for (body, field) in cases {
        let reply = call(
            w.admin(),
            Method::POST,
            "/v1/calls",
            Some(ADMIN_TOKEN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.code(), "invalid_request");
        assert!(
            reply.message().contains(field),
            "{body}: {}",
            reply.message()
        );
    }
    let entries = read_all(&mut w.world.conn.clone(), &w.world.keys.calls).await;
    assert!(entries.is_empty(), "nothing invalid reached the stream");
}

#[tokio::test]
async fn bindings_of_an_identity_are_listed_and_deleted() {
    let w = ApiWorld::new().await;
    let first = w.register("alice", "apns", &apns_token(1)).await;
    w.register("alice", "fcm", "fcm-token-alice").await;
    let list = |identity: &str| {
        let uri = format!("/v1/identities/{identity}/bindings");
        let router = w.admin();
        async move { call(router, Method::GET, &uri, Some(ADMIN_TOKEN), None).await }
    };
    let listed = list("alice").await;
    assert_eq!(listed.status, StatusCode::OK);
    let views = listed.body.as_array().unwrap();
    assert_eq!(views.len(), 2);
    assert!(views.iter().all(|v| v["identity"] == "alice"));
    assert!(
        views.iter().any(|v| v["device_token"] == "01010101…"),
        "masked"
    );
    assert!(
        !listed.body.to_string().contains(&apns_token(1)),
        "never the full token"
    );

    let id = first.body["binding_id"].as_str().unwrap();
    let uri = format!("/v1/identities/alice/bindings/{id}");
    let deleted = call(w.admin(), Method::DELETE, &uri, Some(ADMIN_TOKEN), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = call(w.admin(), Method::DELETE, &uri, Some(ADMIN_TOKEN), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.code(), "not_found");
    let left = w.world.store().await.list("alice").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].device_token, "fcm-token-alice");

    // Someone with no bindings, and an identity with a space (percent-encoded in the path).
    let nobody = list("nobody").await;
    assert_eq!(nobody.status, StatusCode::OK);
    assert_eq!(nobody.body, json!([]));
    w.register("alice smith", "fcm", "fcm-token-smith").await;
    assert_eq!(
        list("alice%20smith").await.body.as_array().unwrap().len(),
        1
    );
}
