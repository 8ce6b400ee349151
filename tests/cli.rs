//! The `callpush` binary as an operator uses it (the walkthrough of docs/getting-started.md):
//! `bindings add`, `bindings list`, `enqueue`, `serve` until SIGTERM, and clear one-line errors.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::daemon::{redis_toml, wait_entries};
use support::fcm_double::{FcmDouble, FcmDoubleOptions};
use support::process::callpush_cli;
use support::redis_server::{unique_prefix, RedisServer};

fn callpush(config: &Path, args: &[&str]) -> Output {
    callpush_cli(config, args).output().expect("run callpush")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(dir: &Path, redis_url: &str, prefix: &str, fcm: &FcmDouble) -> PathBuf {
    let sa = fcm.write_service_account(dir);
    let redis = redis_toml(redis_url, prefix);
    let credential = fcm.credential_toml("CRfcm", &sa);
    let text = format!(
        r#"
{redis}
[stream]
block_ms = 200

# `serve` binds both listeners; port 0 keeps parallel test runs from colliding.
[api]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"

{credential}"#
    );
    let path = dir.join("callpush.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn an_operator_registers_a_device_enqueues_a_call_and_sees_it_delivered() {
    let redis = RedisServer::start().await;
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let config = write_config(dir.path(), &redis.url(), &prefix, &fcm);

    let added = callpush(
        &config,
        &[
            "bindings",
            "add",
            "--identity",
            "alice",
            "--platform",
            "fcm",
            "--device-token",
            "fcm-token-alice",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let binding: serde_json::Value = serde_json::from_str(&stdout(&added)).unwrap();
    assert_eq!(binding["identity"], "alice");
    assert_eq!(binding["credential"], "CRfcm");
    assert_eq!(binding["device_token"], "fcm-toke…", "the token is masked");

    let listed = callpush(
        &config,
        &["bindings", "list", "--identity", "alice", "--json"],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let list: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["binding_id"], binding["binding_id"]);
    // By default, a table for people: the binding and its masked token, then a count.
    let table = callpush(&config, &["bindings", "list", "--identity", "alice"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.starts_with("BINDING_ID"), "{text}");
    assert!(
        text.contains(binding["binding_id"].as_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("fcm-toke…") && !text.contains("fcm-token-alice"));
    assert!(text.contains("1 binding(s) of \"alice\""), "{text}");

    let serve = Command::new(env!("CARGO_BIN_EXE_callpush"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("CALLPUSH_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let enqueued = callpush(
        &config,
        &[
            "enqueue",
            "--to",
            "alice",
            "--type",
            "incoming",
            "--call-sid",
            "CA1",
            "--from",
            "+15551234567",
            "--params",
            r#"{"k":"v"}"#,
            "--json",
        ],
    );
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&enqueued)).unwrap();
    let id = printed["id"].as_str().unwrap().to_string();
    assert!(id.contains('-'), "prints the stream id: {id}");

    let mut conn = redis.multiplexed().await;
    let results = wait_entries(
        &mut conn,
        &format!("{prefix}results"),
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(results.len(), 1, "one outcome");
    assert_eq!(results[0].1["call_sid"], "CA1");
    assert_eq!(results[0].1["outcome"], "delivered");
    assert_eq!(fcm.count(), 1);
    assert_eq!(
        fcm.requests()[0].body["message"]["data"]["caller"],
        "+15551234567"
    );

    // SIGTERM: a clean stop with exit status 0.
    let pid = serve.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || serve.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "serve exits 0 on SIGTERM: {}",
        stderr(&out)
    );
    let logs = stderr(&out);
    assert!(logs.contains("callpush stopped"), "{logs}");
    assert!(
        !logs.contains("fcm-token-alice"),
        "no full device token in the logs"
    );

    let bid = binding["binding_id"].as_str().unwrap();
    let delete = [
        "bindings",
        "delete",
        "--identity",
        "alice",
        "--binding-id",
        bid,
    ];
    let deleted = callpush(&config, &delete);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let again = callpush(&config, &delete);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("has no binding"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn an_operator_adds_an_fid_and_apns_devices_and_sees_their_target_and_environment() {
    let redis = RedisServer::start().await;
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &redis.url(), &unique_prefix(), &fcm);
    let apns = format!(
        "\n[[credentials]]\nsid = \"CRapns\"\nplatform = \"apns\"\nbundle_id = \"com.example.app\"\n\
         team_id = \"TEAM123456\"\nkey_id = \"KEY1234567\"\nkey_file = \"{}\"\n\
         endpoint = \"http://127.0.0.1:9\"\nsandbox_endpoint = \"http://127.0.0.1:9\"\n",
        support::fixtures::fixture("apns_auth_key.p8").display()
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&apns);
    std::fs::write(&config, text).unwrap();
    let add = |args: &[&str]| {
        let mut all = vec!["bindings", "add", "--identity", "alice"];
        all.extend_from_slice(args);
        callpush(&config, &all)
    };
    let fid = add(&["--platform", "fcm", "--fid", "cF3kq9zYRv2X-B8mN1pQ_w"]);
    assert!(fid.status.success(), "{}", stderr(&fid));
    let fid: serde_json::Value = serde_json::from_str(&stdout(&fid)).unwrap();
    assert_eq!(fid["target"], "fid");
    assert_eq!(fid["device_token"], "cF3kq9zY…");
    let debug_build = format!("deb{}", "1".repeat(61));
    let sandbox = add(&[
        "--platform",
        "apns",
        "--device-token",
        &debug_build,
        "--environment",
        "sandbox",
    ]);
    assert!(sandbox.status.success(), "{}", stderr(&sandbox));
    let sandbox: serde_json::Value = serde_json::from_str(&stdout(&sandbox)).unwrap();
    assert_eq!(
        (&sandbox["environment"], &sandbox["environment_source"]),
        (&"sandbox".into(), &"registered".into())
    );
    let unknown = add(&["--platform", "apns", "--device-token", &"2".repeat(64)]);
    assert!(unknown.status.success(), "{}", stderr(&unknown));

    let table = callpush(&config, &["bindings", "list", "--identity", "alice"]);
    let text = stdout(&table);
    assert!(
        text.contains("TARGET") && text.contains("ENVIRONMENT"),
        "{text}"
    );
    for row in ["fid", "sandbox", "production (credential)"] {
        assert!(text.contains(row), "{row}: {text}");
    }

    for (args, names) in [
        (
            vec!["--platform", "fcm", "--fid", "cF3kq9zYRv2X-B8mN1pQ_"],
            "--fid",
        ),
        (
            vec!["--platform", "apns", "--fid", "cF3kq9zYRv2X-B8mN1pQ_w"],
            "--fid",
        ),
        (
            vec![
                "--platform",
                "fcm",
                "--device-token",
                "t",
                "--environment",
                "sandbox",
            ],
            "--environment",
        ),
    ] {
        let refused = add(&args);
        assert!(!refused.status.success(), "{args:?}");
        let line = stderr(&refused);
        assert!(line.contains(names), "{args:?}: {line}");
    }
}

#[tokio::test]
async fn mistakes_get_one_clear_line_and_a_failure_status() {
    let redis = RedisServer::start().await;
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &redis.url(), &unique_prefix(), &fcm);

    // Each mistake fails with a message naming the offending option.
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "bindings",
                "add",
                "--identity",
                "alice",
                "--platform",
                "apns",
                "--device-token",
                "xyz",
            ],
            "--device-token",
        ),
        (
            &[
                "enqueue",
                "--to",
                "alice",
                "--call-sid",
                "CA1",
                "--params",
                "[1]",
            ],
            "--params",
        ),
        (
            &[
                "enqueue",
                "--to",
                "alice",
                "--call-sid",
                "CA1",
                "--type",
                "ring",
            ],
            "--type",
        ),
        (&["enqueue", "--to", "", "--call-sid", "CA1"], "--to"),
    ];
    for (args, named) in cases {
        let out = callpush(&config, args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }

    // A good enqueue answers with one sentence naming the stream id and the call.
    let out = callpush(&config, &["enqueue", "--to", "alice", "--call-sid", "CA9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with("enqueued ") && line.trim().ends_with(": incoming call CA9 to alice"),
        "{line}"
    );

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[workers]\nmax_in_flight = \"lots\"\n").unwrap();
    let out = callpush(&broken, &["serve"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("workers.max_in_flight"), "{err}");

    let unreachable = dir.path().join("unreachable.toml");
    std::fs::write(&unreachable, "[redis]\nurl = \"redis://127.0.0.1:1\"\n").unwrap();
    let out = callpush(&unreachable, &["bindings", "list", "--identity", "alice"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("redis"), "{}", stderr(&out));
}

#[test]
fn token_mints_an_access_token_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sk.secret"), "s3cret\n").unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\naccount_sid = \"AC1\"\n[[auth.api_keys]]\nsid = \"SK1\"\nsecret_file = \"{}/sk.secret\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = callpush(
        &config,
        &["token", "--identity", "alice", "--ttl-secs", "600"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let settings = callpush::config::Settings::load(Some(&config)).unwrap();
    let auth = callpush::auth::Auth::from_settings(&settings).unwrap();
    let verified = auth
        .verify(&token, callpush::domain::now_ms() / 1000)
        .unwrap();
    assert_eq!(verified.identity, "alice");
    assert!(verified.incoming_allowed);
    assert!(!stderr(&out).contains("s3cret"));

    let out = callpush(
        &config,
        &["token", "--identity", "alice", "--credential", "CRnope"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("CRnope"), "{}", stderr(&out));
}
