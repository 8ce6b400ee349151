//! Managed and secured Redis: the daemon over `rediss://` (a local `redis-server --tls-port`
//! with the fixtures' certificate, signed by the test CA given as `redis.ca_file`) as an ACL
//! user whose password comes from `redis.password_file` — and the one-line refusals when the
//! CA, the password or the user is wrong.

mod support;

use callpush::config::RedisSettings;
use callpush::domain::Platform;
use support::daemon::TestDaemon;
use support::fixtures::{apns_token, fixture};
use support::redis_server::{RedisOptions, RedisServer, TLS_PASSWORD, TLS_USER};
use support::world::World;

fn tls_options() -> RedisOptions {
    RedisOptions {
        tls: true,
        ..RedisOptions::default()
    }
}

/// `[redis]` for the TLS port of `redis`, as `TLS_USER` with the password in `password_file`.
fn secured(
    redis: &RedisServer,
    key_prefix: &str,
    password_file: &std::path::Path,
) -> RedisSettings {
    RedisSettings {
        url: redis.tls_url(),
        key_prefix: key_prefix.to_string(),
        username: Some(TLS_USER.to_string()),
        password_file: Some(password_file.to_path_buf()),
        ca_file: Some(fixture("test_ca.pem")),
        ..RedisSettings::default()
    }
}

#[tokio::test]
async fn a_call_is_delivered_over_tls_as_an_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("redis-password");
    std::fs::write(&password, format!("{TLS_PASSWORD}\n")).unwrap();
    // The test registers and reads results on the plain port; the daemon does all its work
    // over TLS as the ACL user.
    let mut w = World::with_redis(tls_options(), |_| {}).await;
    w.settings.redis = secured(&w.redis, &w.prefix, &password);
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    let daemon = TestDaemon::start(w.settings.clone());
    w.call(&[("type", "incoming"), ("to", "alice"), ("call_sid", "CAtls")])
        .await;
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(w.apns.count(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_password_or_user_is_refused_at_start_naming_redis() {
    let redis = RedisServer::start_with(tls_options()).await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("redis-password");
    std::fs::write(&password, TLS_PASSWORD).unwrap();
    let good = secured(&redis, "cp:", &password);
    assert!(callpush::redis_conn::connect(&good).await.is_ok());

    let wrong_password = dir.path().join("wrong-password");
    std::fs::write(&wrong_password, "not it").unwrap();
    let mut cases = vec![
        ("the test CA not given", {
            let mut s = good.clone();
            s.ca_file = None;
            s
        }),
        ("a wrong password", secured(&redis, "cp:", &wrong_password)),
        ("an unknown user", {
            let mut s = good.clone();
            s.username = Some("mallory".into());
            s
        }),
    ];
    cases.push(("a password file that does not exist", {
        let mut s = good.clone();
        s.password_file = Some(dir.path().join("missing"));
        s
    }));
    // Each refusal waits out the client's reconnect attempts: try them side by side.
    let tries = cases.iter().map(|(what, settings)| async move {
        (*what, callpush::redis_conn::connect(settings).await.is_ok())
    });
    for (what, connected) in futures::future::join_all(tries).await {
        assert!(!connected, "{what}: connected anyway");
    }
    // The password never shows in the start-up error.
    let settings = callpush::config::Settings {
        redis: secured(&redis, "cp:", &wrong_password),
        ..Default::default()
    };
    let err = callpush::daemon::redis_backends(&settings)
        .await
        .err()
        .expect("a wrong password fails the start");
    let message = err.to_string();
    assert!(
        message.starts_with("redis at rediss://localhost:"),
        "{message}"
    );
    assert!(!message.contains("not it"), "{message}");
    let missing = callpush::config::Settings {
        redis: RedisSettings {
            password_file: Some(dir.path().join("missing")),
            ..good.clone()
        },
        ..Default::default()
    };
    let err = callpush::daemon::redis_backends(&missing)
        .await
        .err()
        .expect("a missing password file fails the start");
    assert!(
        err.to_string().contains("redis.password_file"),
        "names the key: {err}"
    );
}
