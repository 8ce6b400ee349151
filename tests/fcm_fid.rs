//! FCM devices registered by Firebase Installation ID (SPEC §3, §4, §6): apps that opt in to
//! FID registration get `onRegistered(installationId)` instead of `onNewToken`, register
//! `{"platform": "fcm", "fid": …}`, and are pushed with `message.fid` in place of
//! `message.token`. Each test drives the public API and the daemon, and asserts what the app's
//! developer notices: what FCM received, what was pruned, what is left registered.

#[macro_use]
mod support;

on_both_backends!(
    an_fid_is_pushed_as_fid_beside_a_token_and_pruned_when_unregistered,
    an_app_moving_from_token_to_fid_ends_with_the_fid,
);

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{call, token, ApiWorld, Reply};
use support::world::Backend;

const FID: &str = "cF3kq9zYRv2X-B8mN1pQ_w";
const OTHER_FID: &str = "dGhpc2lzYW5vdGhlcmZpZA";

async fn registration(api: &ApiWorld, method: Method, identity: &str, body: Value) -> Reply {
    call(
        api.public(),
        method,
        "/v1/registrations",
        Some(&token(identity)),
        Some(body),
    )
    .await
}

async fn an_fid_is_pushed_as_fid_beside_a_token_and_pruned_when_unregistered(backend: Backend) {
    let mut api = ApiWorld::on(backend, |_| {}).await;
    let reply = registration(
        &api,
        Method::POST,
        "alice",
        json!({"platform": "fcm", "fid": FID}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["target"], "fid");
    assert_eq!(
        reply.body["device_token"], "cF3kq9zY…",
        "masked like a token"
    );
    let reply = registration(
        &api,
        Method::POST,
        "alice",
        json!({"platform": "fcm", "device_token": "fcm-token-alice-tablet"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["target"], "token");
    let listed = api.admin_bindings("alice").await;
    let mut targets: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, vec!["fid", "token"]);

    let daemon = api.world.start_daemon();
    let w = &mut api.world;
    w.ring("alice", "CA1").await;
    let results = w.results(1).await;
    assert_eq!(results[0]["delivered"], "2", "{results:?}");
    let messages: Vec<Value> = w
        .fcm
        .requests()
        .iter()
        .map(|r| r.body["message"].clone())
        .collect();
    let to_fid = messages
        .iter()
        .find(|m| m.get("fid").is_some())
        .expect("a message to the FID");
    assert_eq!(to_fid["fid"], FID);
    assert!(to_fid.get("token").is_none(), "no token beside the fid");
    assert_eq!(to_fid["data"]["call_sid"], "CA1");
    assert!(messages
        .iter()
        .any(|m| m["token"] == "fcm-token-alice-tablet" && m.get("fid").is_none()));

    // The app was uninstalled: FCM says UNREGISTERED for the FID, which is pruned.
    w.fcm.set_unregistered(FID);
    w.ring("alice", "CA2").await;
    let results = w.results(2).await;
    assert_eq!(results[1]["delivered"], "1", "{results:?}");
    let left = w.store().await.list("alice").await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].device_token, "fcm-token-alice-tablet");
    daemon.stop().await;
}

async fn an_app_moving_from_token_to_fid_ends_with_the_fid(backend: Backend) {
    let mut api = ApiWorld::on(backend, |_| {}).await;
    // bob's app unregisters its old token once it has an FID; carol's just stops using it.
    for (identity, token_, fid) in [
        ("bob", "fcm-token-bob", FID),
        ("carol", "fcm-token-carol", OTHER_FID),
    ] {
        let old = json!({"platform": "fcm", "device_token": token_});
        let new = json!({"platform": "fcm", "fid": fid});
        assert_eq!(
            registration(&api, Method::POST, identity, old).await.status,
            StatusCode::CREATED
        );
        assert_eq!(
            registration(&api, Method::POST, identity, new).await.status,
            StatusCode::CREATED
        );
    }
    let gone = registration(
        &api,
        Method::DELETE,
        "bob",
        json!({"platform": "fcm", "device_token": "fcm-token-bob"}),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let daemon = api.world.start_daemon();
    let w = &mut api.world;
    w.fcm.set_unregistered("fcm-token-carol");
    w.ring("bob", "CA1").await;
    w.ring("carol", "CA2").await;
    let results = w.results(2).await;
    assert!(
        results.iter().all(|r| r["outcome"] == "delivered"),
        "{results:?}"
    );
    let store = w.store().await;
    for (identity, fid) in [("bob", FID), ("carol", OTHER_FID)] {
        let left = store.list(identity).await.unwrap();
        assert_eq!(left.len(), 1, "{identity}: {left:?}");
        assert_eq!(left[0].device_token, fid);
        assert_eq!(left[0].target, callpush::domain::Target::Fid);
    }
    // And unregistering by FID works as by token.
    let gone = registration(
        &api,
        Method::DELETE,
        "bob",
        json!({"platform": "fcm", "fid": FID}),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert!(api
        .world
        .store()
        .await
        .list("bob")
        .await
        .unwrap()
        .is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn bad_fids_and_mixed_bodies_are_refused_naming_the_field() {
    let api = ApiWorld::new().await;
    let cases = [
        (
            json!({"platform": "fcm", "fid": &FID[..21]}),
            "invalid_device_token",
            "fid",
        ),
        (
            json!({"platform": "fcm", "fid": format!("{FID}x")}),
            "invalid_device_token",
            "fid",
        ),
        (
            json!({"platform": "fcm", "fid": "cF3kq9zYRv2X:B8mN1pQ_w"}),
            "invalid_device_token",
            "fid",
        ),
        (
            json!({"platform": "fcm", "fid": ""}),
            "invalid_device_token",
            "fid",
        ),
        (
            json!({"platform": "fcm", "fid": 22}),
            "invalid_request",
            "fid",
        ),
        (
            json!({"platform": "apns", "fid": FID}),
            "invalid_request",
            "fid",
        ),
        (
            json!({"platform": "fcm", "fid": FID, "device_token": "fcm-token"}),
            "invalid_request",
            "fid",
        ),
        (
            json!({"platform": "fcm"}),
            "invalid_request",
            "device_token",
        ),
        (
            json!({"platform": "fcm", "fid": FID, "environment": "sandbox"}),
            "invalid_request",
            "environment",
        ),
        (
            json!({"platform": "apns", "device_token": "ab".repeat(32), "environment": "staging"}),
            "invalid_request",
            "environment",
        ),
    ];
    for method in [Method::POST, Method::DELETE] {
        for (body, code, field) in &cases {
            let reply = registration(&api, method.clone(), "alice", body.clone()).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {body}");
            assert_eq!(reply.code(), *code, "{method} {body}: {}", reply.message());
            assert!(
                reply.message().contains(field),
                "{method} {body}: {}",
                reply.message()
            );
        }
    }
    assert!(api.bindings("alice").await.is_empty());
}
