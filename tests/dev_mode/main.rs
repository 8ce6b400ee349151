//! `callpush dev` as a new user runs it: start the binary, follow the walkthrough it prints —
//! the `callpush token` commands and the curl requests exactly as printed — and check every
//! answer, the simulators' log lines and `/metrics`; then SIGTERM: exit 0, and the temp data
//! dir gone (a `--data-dir` kept). Then the printed `callpush dlq list|replay`: through the
//! admin API in memory, on Redis with `--redis`.

#[path = "../support/mod.rs"]
mod support;

mod dev;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dev::*;
use support::redis_server::RedisServer;

/// Steps 1–5 of the walkthrough, the same on both backends. Returns the remaining lines.
async fn common_steps(dev: &mut Dev) -> Vec<String> {
    let commands = dev.commands();
    let mut steps = commands.iter();
    let mut next = || steps.next().expect("more walkthrough steps").clone();

    let (token, _) = dev.follow(&next()).await;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(201), "{body}");
    assert!(body.contains("\"identity\":\"alice\""), "{body}");
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(202), "{body}");
    assert!(body.contains("\"id\""), "{body}");
    dev.wait_log("FCM sim: incoming push for call CA0001 to alice-ph… answered 200")
        .await;
    let metrics = next();
    wait_metric(
        dev,
        &metrics,
        "callpush_events_total{outcome=\"delivered\",type=\"incoming\"} 1",
    )
    .await;
    let (shown, _) = dev.follow(&metrics).await;
    assert!(
        shown.contains(
            "callpush_pushes_total{credential=\"CRdevfcm\",environment=\"\",outcome=\"delivered\",platform=\"fcm\",reason=\"\"} 1"
        ),
        "{shown}"
    );
    // The app's ack: the phone woke.
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(204), "{body}");
    // What a call server reads of it: alice's phone woke for CA0001.
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(200), "{body}");
    assert!(
        body.contains(r#""call_sid":"CA0001""#) && body.contains(r#""to":"alice""#),
        "{body}"
    );

    let (_, _) = dev.follow(&next()).await;
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(201), "{body}");
    let (body, status) = dev.follow(&next()).await;
    assert_eq!(status, Some(202), "{body}");
    dev.wait_log(
        "FCM sim: incoming push for call CA0002 to 0bad-bob… answered 403 PERMISSION_DENIED",
    )
    .await;
    wait_metric(
        dev,
        &metrics,
        "callpush_events_total{outcome=\"dead_lettered\",type=\"incoming\"} 1",
    )
    .await;
    commands[9..].to_vec()
}

#[tokio::test]
async fn the_walkthrough_works_as_printed_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(
        dir.path(),
        &[
            "--api-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let data_dir = PathBuf::from(dev.shown("data dir"));
    assert!(data_dir.join("callpush.toml").exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join("admin_token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secrets are private: {mode:o}");
    }
    assert!(dev.walkthrough.contains("in memory (not durable"));
    let rest = common_steps(&mut dev).await;
    assert!(rest[0].contains("dlq list --admin http://"), "{}", rest[0]);
    dlq_steps(&mut dev, &rest).await;
    check_step(&mut dev, &rest[2], "--skip-redis").await;
    // Ready without Redis.
    let admin = dev.shown("admin API");
    let (status, body) = request("GET", &format!("{admin}/readyz"), None, None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));

    let status = dev.sigterm().await;
    assert!(status.success(), "{status:?}; log:\n{}", dev.log_text());
    assert!(!data_dir.exists(), "the temp data dir is removed on exit");
}

/// The printed `callpush dlq list` shows bob's dead letter; the printed replay puts it back on
/// the calls stream, the simulator refuses it again, and it is dead-lettered again.
async fn dlq_steps(dev: &mut Dev, rest: &[String]) {
    let (listed, _) = dev.follow(&rest[0]).await;
    assert!(listed.contains("CA0002"), "{listed}");
    assert!(listed.contains("provider_rejected"), "{listed}");
    assert!(
        listed.contains("1 matched, 1 shown: provider_rejected 1"),
        "{listed}"
    );
    let (replayed, _) = dev.follow(&rest[1]).await;
    assert!(
        replayed.starts_with("replayed 1 (provider_rejected 1)"),
        "{replayed}"
    );
    // The replayed call reaches the simulator again, and ends as a dead letter again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while dev
        .log_text()
        .matches("call CA0002 to 0bad-bob… answered 403 PERMISSION_DENIED")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no second push; log:\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = dev.commands()[3].clone();
    wait_metric(
        dev,
        &metrics,
        "callpush_events_total{outcome=\"dead_lettered\",type=\"incoming\"} 2",
    )
    .await;
    // The replayed dead letter is gone; the one its replay made is listed.
    let (listed, _) = dev.follow(&rest[0]).await;
    assert!(
        listed.contains("1 matched, 1 shown: provider_rejected 1"),
        "{listed}"
    );
}

#[tokio::test]
async fn the_walkthrough_works_as_printed_on_redis_with_dlq() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut dev = Dev::start(
        dir.path(),
        &[
            "--redis",
            &redis.url(),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--api-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(dev.walkthrough.contains("Redis at"));
    let rest = common_steps(&mut dev).await;
    dlq_steps(&mut dev, &rest).await;
    check_step(&mut dev, &rest[2], "--config").await;

    let status = dev.sigterm().await;
    assert!(status.success(), "{status:?}; log:\n{}", dev.log_text());
    assert!(
        data_dir.join("callpush.toml").exists(),
        "a --data-dir is kept"
    );
}

/// The printed `callpush check` passes against dev's simulators (and Redis, when it has one).
async fn check_step(dev: &mut Dev, line: &str, shows: &str) {
    assert!(
        line.contains(" check --config ") && line.contains(shows),
        "{line}"
    );
    let (report, _) = dev.follow(line).await;
    for subject in [
        "config",
        "redis",
        "credential CRdevapns",
        "credential CRdevfcm",
    ] {
        let row = report.lines().find(|l| l.starts_with(subject));
        assert!(
            row.is_some_and(|r| r.contains(" ok ")),
            "{subject}: {report}"
        );
    }
}

/// Whether `pid` catches SIGTERM yet (`SigCgt` of /proc/<pid>/status).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// A SIGTERM at any moment of the start stops `callpush dev` with status 0 and leaves nothing
/// in the temp directory. "Any moment" begins when the process catches SIGTERM — before that
/// the kernel's default action applies to every program — and `callpush dev` does so before it
/// sets anything up, so the first signal sent is the one right after it is caught.
#[tokio::test]
async fn a_sigterm_right_after_launch_exits_0_and_leaves_nothing_behind() {
    for delay_ms in [0, 10, 40, 150] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["dev", "--api-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !catches_sigterm(child.id()) {
            assert!(child.try_wait().unwrap().is_none(), "exited before SIGTERM");
            assert!(Instant::now() < deadline, "SIGTERM never caught");
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(status.success(), "after {delay_ms} ms: {status:?}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "after {delay_ms} ms, left behind: {left:?}"
        );
    }
}
