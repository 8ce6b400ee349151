//! Reloading without a restart (`POST /v1/admin/reload`, `SIGHUP`): secrets rotated under a
//! steady stream of calls, a broken configuration refused whole, and the sections that need a
//! restart named. The daemon runs in-process on a real Redis, its configuration in a file.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{claims, http, sign, ACCOUNT_SID};
use support::config_file::{register, reload, token, ConfigFile};
use support::daemon::TestDaemon;
use support::process::{DaemonProcess, Knobs};
use support::scrape;
use support::world::World;

const OLD_KEY: (&str, &str) = (
    "SK00000000000000000000000000000001",
    "old-api-key-secret-0123456789",
);
const NEW_KEY: (&str, &str) = (
    "SK00000000000000000000000000000002",
    "new-api-key-secret-9876543210",
);
/// The steady stream calls one callee far more than the default limit allows.
const UNLIMITED: &str = "\n[limits]\ncalls_per_identity_per_min = 0\n";
const OLD_ADMIN: &str = "old-admin-token-0123456789abcdef";
const NEW_ADMIN: &str = "new-admin-token-fedcba9876543210";

async fn admin_status(d: &TestDaemon, admin: &str) -> StatusCode {
    http(
        Method::GET,
        &d.admin_url(),
        "/v1/identities/alice/bindings",
        Some(admin),
        None,
    )
    .await
    .status
}

#[tokio::test]
async fn secrets_rotate_under_a_steady_stream_of_calls_and_a_broken_config_is_refused() {
    let mut w = World::new().await;
    let config = ConfigFile::new(&w);
    config.write(&w, &[OLD_KEY], OLD_ADMIN, UNLIMITED);
    let d = TestDaemon::start(config.settings());
    let mut registered = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        registered = register(&d, "alice", OLD_KEY, "fcm-alice").await;
        if registered != StatusCode::SERVICE_UNAVAILABLE && registered != StatusCode::BAD_GATEWAY {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered, StatusCode::CREATED);

    // A call every 20 ms while the secrets rotate.
    let mut calls = w.redis.multiplexed().await;
    let prefix = w.prefix.clone();
    let stream = tokio::spawn(async move {
        let mut sids = Vec::new();
        for i in 0..150 {
            let sid = format!("CA-steady-{i}");
            support::daemon::xadd(
                &mut calls,
                &prefix,
                &[("type", "incoming"), ("to", "alice"), ("call_sid", &sid)],
            )
            .await;
            sids.push(sid);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sids
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Step 1: add the new API key and change the admin token (the old one still authorizes
    // this reload: it is the one in force).
    // ... and rotate the FCM service account in place (a new key of the same account).
    config.write(&w, &[OLD_KEY, NEW_KEY], NEW_ADMIN, UNLIMITED);
    let mut account: Value =
        serde_json::from_slice(&std::fs::read(&config.service_account).unwrap()).unwrap();
    account["private_key_id"] = "rotated-key-id".into();
    std::fs::write(
        &config.service_account,
        serde_json::to_vec(&account).unwrap(),
    )
    .unwrap();
    let tokens_before = w.fcm.token_requests();
    let (status, report, took) = reload(&d, OLD_ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["credentials"]["changed"], json!(["CRfcm"]));
    eprintln!("reload under load took {took:?}: {report}");
    assert_eq!(report["api_keys"], json!([OLD_KEY.0, NEW_KEY.0]));
    assert_eq!(report["restart_required"], json!([]));
    assert_eq!(admin_status(&d, OLD_ADMIN).await, StatusCode::UNAUTHORIZED);
    assert_eq!(admin_status(&d, NEW_ADMIN).await, StatusCode::OK);
    assert_eq!(
        register(&d, "alice", NEW_KEY, "fcm-alice").await,
        StatusCode::OK
    );
    assert_eq!(
        register(&d, "alice", OLD_KEY, "fcm-alice").await,
        StatusCode::OK,
        "both keys during the rotation"
    );

    // Step 2: a broken configuration is refused whole, naming the key; nothing changes.
    std::fs::write(
        config.path(),
        std::fs::read_to_string(config.path()).unwrap() + "\n[bindings]\nttl_dayz = 5\n",
    )
    .unwrap();
    let (status, refused, _) = reload(&d, NEW_ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("ttl_dayz"), "{message}");
    assert_eq!(
        admin_status(&d, NEW_ADMIN).await,
        StatusCode::OK,
        "still the last good token"
    );

    // Step 3: the old key is retired; a limit changed on the way applies at once.
    config.write(
        &w,
        &[NEW_KEY],
        NEW_ADMIN,
        "\n[limits]\ncalls_per_identity_per_min = 1000\n",
    );
    let (status, report, _) = reload(&d, NEW_ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["api_keys"], json!([NEW_KEY.0]));
    assert_eq!(report["restart_required"], json!([]));
    assert_eq!(
        register(&d, "alice", OLD_KEY, "fcm-alice").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        register(&d, "alice", NEW_KEY, "fcm-alice").await,
        StatusCode::OK
    );

    // Every call of the stream rang.
    let sids = stream.await.unwrap();
    let results = w.result_entries(sids.len(), Duration::from_secs(30)).await;
    assert_eq!(results.len(), sids.len());
    let missed: Vec<_> = results
        .iter()
        .filter(|(_, r)| r["outcome"] != "delivered")
        .collect();
    assert!(missed.is_empty(), "{missed:?}");

    assert_eq!(
        w.fcm.token_requests(),
        tokens_before + 1,
        "pushes after the reload signed in with the rotated key"
    );
    let latency = |m: &scrape::Scrape| {
        let sum = m
            .value("callpush_event_latency_seconds_sum", &[])
            .unwrap_or(0.0);
        let n = m
            .value("callpush_event_latency_seconds_count", &[])
            .unwrap_or(1.0);
        sum / n
    };
    let metrics = scrape::fetch(&d.admin_url()).await;
    let mean = latency(&metrics);
    eprintln!("mean event latency over the run: {:.1} ms", mean * 1000.0);
    assert!(mean < 1.0, "no call waited on the reloads: mean {mean} s");
    let count = |result| metrics.value("callpush_config_reloads_total", &[("result", result)]);
    assert_eq!(count("applied"), Some(2.0));
    assert_eq!(count("refused"), Some(1.0));
    d.stop().await;
}

#[tokio::test]
async fn a_daemon_started_without_a_file_says_there_is_nothing_to_reload() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = w.settings.clone();
    support::api::add_auth(&mut settings, dir.path());
    let d = TestDaemon::start(settings);
    let mut answered = None;
    for _ in 0..100 {
        let (status, body, _) = reload(&d, support::api::ADMIN_TOKEN).await;
        if status != StatusCode::SERVICE_UNAVAILABLE && status != StatusCode::BAD_GATEWAY {
            answered = Some((status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = answered.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--config"),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::start(&w, dir.path(), "hup", &Knobs::default());
    let (api, _) = daemon.listeners().await;
    let api = format!("http://{api}");
    let body = json!({"platform": "fcm", "device_token": "fcm-hup"});
    let before = http(
        Method::POST,
        &api,
        "/v1/registrations",
        Some(&token("alice", NEW_KEY)),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        before.status,
        StatusCode::UNAUTHORIZED,
        "no API key is configured yet"
    );

    let secret = dir.path().join("new-key.secret");
    std::fs::write(&secret, NEW_KEY.1).unwrap();
    let config = dir.path().join("hup.toml");
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[auth]\naccount_sid = \"{ACCOUNT_SID}\"\n[[auth.api_keys]]\nsid = \"{}\"\nsecret_file = \"{}\"\n",
            NEW_KEY.0,
            secret.display()
        );
    std::fs::write(&config, text).unwrap();
    signal_process_id(daemon.pid(), "HUP");
    let mut after = StatusCode::UNAUTHORIZED;
    for _ in 0..100 {
        after = http(
            Method::POST,
            &api,
            "/v1/registrations",
            Some(&token("alice", NEW_KEY)),
            Some(body.clone()),
        )
        .await
        .status;
        if after != StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(after, StatusCode::CREATED, "{}", daemon.log_text());
    assert!(daemon.log_text().contains("configuration reloaded"));
    assert!(daemon.sigterm(Duration::from_secs(15)).await.success());
}

fn signal_process_id(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A copy of the world's service account at `name`, with `private_key_id` set to `key_id`.
fn account_copy(config: &ConfigFile, name: &str, key_id: &str) -> PathBuf {
    let mut account: Value =
        serde_json::from_slice(&std::fs::read(&config.service_account).unwrap()).unwrap();
    account["private_key_id"] = key_id.into();
    let path = config.dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec(&account).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn credentials_are_added_rotated_and_removed_by_reload() {
    let mut w = World::new().await;
    let config = ConfigFile::new(&w);
    let first = account_copy(&config, "first.json", "key-1");
    let second = account_copy(&config, "second.json", "key-1");
    config.write_with(&w, &[NEW_KEY], NEW_ADMIN, &[("CRfcm", &first)], UNLIMITED);
    let d = TestDaemon::start(config.settings());
    let mut registered = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        registered = register(&d, "alice", NEW_KEY, "fcm-alice").await;
        if registered == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered, StatusCode::CREATED);

    // Add a credential and ring a device of it.
    config.write_with(
        &w,
        &[NEW_KEY],
        NEW_ADMIN,
        &[("CRfcm", &first), ("CRfcm2", &second)],
        UNLIMITED,
    );
    let (status, report, _) = reload(&d, NEW_ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["credentials"]["added"], json!(["CRfcm2"]));
    let mut grant = claims("bob");
    grant["iss"] = NEW_KEY.0.into();
    grant["grants"]["voice"]["push_credential_sid"] = "CRfcm2".into();
    let bob = sign(&grant, NEW_KEY.1);
    let body = json!({"platform": "fcm", "device_token": "fcm-bob"});
    let reply = http(
        Method::POST,
        &d.api_url(),
        "/v1/registrations",
        Some(&bob),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    w.ring("bob", "CA-new-credential").await;
    let results = w.result_entries(1, Duration::from_secs(10)).await;
    assert_eq!(results[0].1["outcome"], "delivered", "{results:?}");
    assert!(w.fcm.requests().iter().any(|r| r.token == "fcm-bob"));

    // Rotate the first credential's service account in place: new pushes fetch a new token.
    let tokens_before = w.fcm.token_requests();
    account_copy(&config, "first.json", "key-2");
    let (status, report, _) = reload(&d, NEW_ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["credentials"]["changed"], json!(["CRfcm"]));
    assert_eq!(report["credentials"]["added"], json!([]));
    w.ring("alice", "CA-rotated").await;
    let results = w.result_entries(2, Duration::from_secs(10)).await;
    assert_eq!(results[1].1["outcome"], "delivered", "{results:?}");
    assert_eq!(
        w.fcm.token_requests(),
        tokens_before + 1,
        "the rotated account signed in anew"
    );

    // Remove the second credential: its bindings' calls are dead-lettered naming it.
    config.write_with(&w, &[NEW_KEY], NEW_ADMIN, &[("CRfcm", &first)], UNLIMITED);
    let (status, report, _) = reload(&d, NEW_ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["credentials"]["removed"], json!(["CRfcm2"]));
    w.ring("bob", "CA-removed-credential").await;
    let dead = w.dead(1).await;
    assert_eq!(dead[0]["call_sid"], "CA-removed-credential");
    assert!(dead[0]["detail"].contains("CRfcm2"), "{dead:?}");
    // Its connections are closed, and the dashboard stops showing them open.
    let mut open = None;
    for _ in 0..60 {
        open = scrape::fetch(&d.admin_url()).await.value(
            "callpush_provider_connections",
            &[("credential", "CRfcm2"), ("platform", "fcm")],
        );
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        open,
        Some(0.0),
        "a removed credential shows no open connection"
    );
    d.stop().await;
}
