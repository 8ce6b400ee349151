//! The binding feed (SPEC §11): every change to a binding — registered, refreshed, moved,
//! unregistered, pruned with the provider's reason, expired, evicted, erased — is exactly one
//! event on `<p>binding-events` (in memory on the in-memory backend), so an app backend learns
//! which devices are gone. Each test drives what an app, a provider or an operator does and
//! reads the feed as a backend would.

#[macro_use]
mod support;

on_both_backends!(
    every_change_an_app_or_operator_makes_is_one_event,
    dead_tokens_are_reported_with_the_providers_reason,
    an_expired_binding_is_reported_when_it_is_noticed,
);

use std::process::{Command, Stdio};
use std::time::Duration;

use callpush::bindings::feed::FeedEvent;
use callpush::domain::{now_ms, Platform};
use http::{Method, StatusCode};
use serde_json::json;
use support::api::{call, token, ApiWorld, ADMIN_TOKEN};
use support::fixtures::numbered_apns_token as apns_token;
use support::process::{config_toml, Knobs};
use support::world::{Backend, World};

/// The feed as (event, identity, device token, reason), oldest first.
async fn feed(world: &World) -> Vec<(String, String, String, String)> {
    events(world)
        .await
        .into_iter()
        .map(|e| {
            let reason = e.to.map_or(e.reason, |to| format!("to {to}"));
            (e.event, e.identity, e.device_token, reason)
        })
        .collect()
}

async fn events(world: &World) -> Vec<FeedEvent> {
    world.store().await.feed(None, 10_000).await.unwrap()
}

fn ev(event: &str, identity: &str, token: &str, reason: &str) -> (String, String, String, String) {
    (event.into(), identity.into(), token.into(), reason.into())
}

/// `DELETE /v1/identities/{identity}/bindings` on the admin router: an account's erasure.
async fn erase(api: &ApiWorld, identity: &str) -> support::api::Reply {
    let path = format!("/v1/identities/{identity}/bindings");
    call(api.admin(), Method::DELETE, &path, Some(ADMIN_TOKEN), None).await
}

async fn every_change_an_app_or_operator_makes_is_one_event(backend: Backend) {
    let api = ApiWorld::on(backend, |s| s.bindings.max_per_identity = 2).await;
    let (t1, t2, t3) = (apns_token(1), apns_token(2), apns_token(3));
    assert_eq!(
        api.register("alice", "apns", &t1).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.register("alice", "apns", &t1).await.status,
        StatusCode::OK
    );
    // The phone changes hands.
    assert_eq!(
        api.register("bob", "apns", &t1).await.status,
        StatusCode::CREATED
    );
    let unregister = call(
        api.public(),
        Method::DELETE,
        "/v1/registrations",
        Some(&token("bob")),
        Some(json!({"platform": "apns", "device_token": t1})),
    )
    .await;
    assert_eq!(unregister.status, StatusCode::NO_CONTENT);
    // carol has a third phone: the cap (2) evicts the least recently updated.
    for t in [&t1, &t2, &t3] {
        // Apart in time, so "least recently updated" is one of them (ties go by binding id).
        tokio::time::sleep(Duration::from_millis(3)).await;
        assert_eq!(
            api.register("carol", "apns", t).await.status,
            StatusCode::CREATED
        );
    }
    // carol deletes her account.
    let erased = erase(&api, "carol").await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.body);
    assert_eq!(erased.body["removed"], 2);
    assert!(api.bindings("carol").await.is_empty());

    let mut got = feed(&api.world).await;
    // The erasure's two events come in the hash's order.
    got[9..].sort();
    let mut erased = vec![
        ev("unregistered", "carol", &t2, "erased"),
        ev("unregistered", "carol", &t3, "erased"),
    ];
    erased.sort();
    let mut want = vec![
        ev("registered", "alice", &t1, ""),
        ev("refreshed", "alice", &t1, ""),
        ev("registered", "bob", &t1, ""),
        ev("moved", "alice", &t1, "to bob"),
        ev("unregistered", "bob", &t1, "app"),
        ev("registered", "carol", &t1, ""),
        ev("registered", "carol", &t2, ""),
        ev("registered", "carol", &t3, ""),
        ev("evicted", "carol", &t1, "max_per_identity"),
    ];
    want.extend(erased);
    assert_eq!(got, want);

    // Each event names the binding, its platform and credential, and when.
    let all = events(&api.world).await;
    let first = &all[0];
    assert!(first.binding_id.starts_with("BS"), "{first:?}");
    assert_eq!(
        (first.platform.as_str(), first.credential.as_str()),
        ("apns", "CRapns")
    );
    assert!(first.at.ends_with('Z'), "{first:?}");
    assert_eq!(
        all[1].binding_id, first.binding_id,
        "a refresh keeps the binding"
    );
    assert_eq!(
        all[3].binding_id, first.binding_id,
        "the binding that moved away"
    );
    // A backend reads on after the last event it saw.
    let after = api
        .world
        .store()
        .await
        .feed(Some(&all[8].id), 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);

    // Erasing twice is no error and adds nothing.
    let again = erase(&api, "carol").await;
    assert_eq!(
        (again.status, &again.body["removed"]),
        (StatusCode::OK, &json!(0))
    );
    assert_eq!(events(&api.world).await.len(), 11);
}

async fn dead_tokens_are_reported_with_the_providers_reason(backend: Backend) {
    let mut w = World::on(backend, |_| {}).await;
    let apns = apns_token(7);
    w.register("alice", Platform::Apns, &apns).await;
    w.register("alice", Platform::Fcm, "fcm-token-alice").await;
    // The app was uninstalled from both phones.
    w.apns.set_unregistered(&apns, now_ms());
    w.fcm.set_unregistered("fcm-token-alice");
    let daemon = w.start_daemon();
    w.ring("alice", "CA1").await;
    assert_eq!(w.results(1).await[0]["outcome"], "no_bindings");
    daemon.stop().await;

    let mut got = feed(&w).await;
    got[2..].sort();
    assert_eq!(
        got,
        vec![
            ev("registered", "alice", &apns, ""),
            ev("registered", "alice", "fcm-token-alice", ""),
            ev("pruned", "alice", &apns, "Unregistered"),
            ev("pruned", "alice", "fcm-token-alice", "UNREGISTERED"),
        ]
    );
}

async fn an_expired_binding_is_reported_when_it_is_noticed(backend: Backend) {
    let w = World::on(backend, |s| s.bindings.ttl_days = 1).await;
    let day = 86_400_000;
    // Registered two days ago and never refreshed: lapsed a day ago.
    w.register_at(
        "dave",
        Platform::Fcm,
        "CRfcm",
        "fcm-old",
        now_ms() - 2 * day,
    )
    .await;
    w.register("dave", Platform::Fcm, "fcm-new").await;
    assert_eq!(
        feed(&w).await,
        vec![
            ev("registered", "dave", "fcm-old", ""),
            ev("expired", "dave", "fcm-old", "ttl"),
            ev("registered", "dave", "fcm-new", ""),
        ],
        "noticed by the next registration"
    );

    w.register_at(
        "erin",
        Platform::Fcm,
        "CRfcm",
        "fcm-erin",
        now_ms() - 2 * day,
    )
    .await;
    let store = w.store().await;
    assert!(store.list("erin").await.unwrap().is_empty());
    assert!(store.list("erin").await.unwrap().is_empty());
    let erin: Vec<_> = feed(&w)
        .await
        .into_iter()
        .filter(|e| e.1 == "erin")
        .collect();
    assert_eq!(
        erin,
        vec![
            ev("registered", "erin", "fcm-erin", ""),
            ev("expired", "erin", "fcm-erin", "ttl"),
        ],
        "noticed by the next lookup (a call to erin), once"
    );
}

/// `kill -9` of a `callpush bindings add` at any moment of a registration that moves a phone
/// between alice and bob: whatever Redis holds afterwards, the feed tells the same story — a
/// binding exists exactly when the feed registered it and never removed it — and once the
/// leftovers of a cut registration are cleaned up (the next lookup), exactly one identity owns
/// the phone and the feed says so.
#[tokio::test]
async fn a_killed_registration_never_splits_a_change_from_its_event() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w, "cli", &Knobs::default())).unwrap();
    let phone = apns_token(42);
    // `callpush bindings add` of the phone for `identity`, as an operator runs it.
    let add_phone = |identity: &str| {
        let mut add = Command::new(env!("CARGO_BIN_EXE_callpush"));
        add.args([
            "bindings",
            "add",
            "--identity",
            identity,
            "--platform",
            "apns",
        ])
        .args([
            "--device-token",
            &phone,
            "--credential",
            "CRapns",
            "--config",
        ])
        .arg(&config);
        add
    };
    for round in 0..24u64 {
        let identity = if round % 2 == 0 { "alice" } else { "bob" };
        let mut child = add_phone(identity)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from before it connects to after it is done.
        tokio::time::sleep(Duration::from_millis(round * 7 % 30)).await;
        let _ = child.kill();
        let _ = child.wait();
        assert_feed_matches_redis(&w).await;
    }
    // One registration left to finish: bob's phone, and the feed says so last.
    let done = add_phone("bob").output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let store = w.store().await;
    let owners = [
        store.list("alice").await.unwrap(),
        store.list("bob").await.unwrap(),
    ];
    assert!(owners[0].is_empty(), "alice lost the phone: {owners:?}");
    assert_eq!(owners[1].len(), 1, "bob has it: {owners:?}");
    assert_feed_matches_redis(&w).await;
}

/// The binding ids stored for alice and bob are exactly those the feed registered and did not
/// remove since.
async fn assert_feed_matches_redis(w: &World) {
    use redis::AsyncCommands;
    let mut alive = std::collections::BTreeSet::new();
    for e in events(w).await {
        match e.event.as_str() {
            "registered" | "refreshed" => alive.insert((e.identity, e.binding_id)),
            _ => alive.remove(&(e.identity, e.binding_id)),
        };
    }
    let mut stored = std::collections::BTreeSet::new();
    let mut conn = w.conn.clone();
    for identity in ["alice", "bob"] {
        let ids: Vec<String> = conn
            .hkeys(w.keys.identity_bindings(identity))
            .await
            .unwrap();
        stored.extend(ids.into_iter().map(|id| (identity.to_string(), id)));
    }
    assert_eq!(stored, alive, "what Redis holds and what the feed says");
}

/// An operator erases a user with `callpush bindings delete --all` and reads the feed with
/// `callpush bindings events`, as a table and as JSON lines.
#[tokio::test]
async fn the_cli_erases_an_identity_and_prints_the_feed() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w, "cli", &Knobs::default())).unwrap();
    w.register("frank", Platform::Apns, &apns_token(5)).await;
    w.register("frank", Platform::Fcm, "fcm-frank").await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_callpush"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let erased = run(&["bindings", "delete", "--identity", "frank", "--all"]);
    assert!(erased.contains("2 binding(s)"), "{erased}");
    assert!(w.store().await.list("frank").await.unwrap().is_empty());

    let json = run(&["bindings", "events", "--json"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(&str, &str)> = lines
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("registered", ""),
            ("registered", ""),
            ("unregistered", "erased"),
            ("unregistered", "erased")
        ]
    );
    assert_eq!(
        lines[1]["device_token"], "fcm-frank",
        "in full, for the backend"
    );
    let after = lines[1]["id"].as_str().unwrap();
    let table = run(&["bindings", "events", "--after", after]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("erased") && table.contains("frank"),
        "{table}"
    );
    assert!(
        !table.contains(&apns_token(5)),
        "the table masks tokens: {table}"
    );
}
