//! `callpush dev` as a new user runs it: start the binary, follow the walkthrough it prints —
//! the `callpush token` commands and the curl requests exactly as printed — and check every
//! answer, the simulators' log lines and `/metrics`; then SIGTERM: exit 0, and the temp data
//! dir gone (a `--data-dir` kept). Then the printed `callpush dlq list|replay`: through the
//! admin API in memory, on Redis with `--redis`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use support::redis_server::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_callpush");

/// A running `callpush dev` and what it printed.
struct Dev {
    child: Option<Child>,
    walkthrough: String,
    log: PathBuf,
    /// `$NAME` → value, as the walkthrough's shell lines set them.
    vars: Vec<(String, String)>,
}

impl Dev {
    /// Start `callpush dev` with `args`; returns once the walkthrough is printed.
    fn start(dir: &Path, args: &[&str]) -> Dev {
        let log = dir.join("dev.log");
        let mut child = Command::new(BIN)
            .arg("dev")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("CALLPUSH_LOG_FORMAT", "json")
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let done = line.starts_with("Stop with Ctrl-C");
                text.push_str(&line);
                text.push('\n');
                if done {
                    let _ = tx.send(text.clone());
                }
            }
        });
        let walkthrough = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(text) => text,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no walkthrough within 60 s; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Dev {
            child: Some(child),
            walkthrough,
            log,
            vars: Vec::new(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value printed after `label` (`data dir`, `config`, …).
    fn shown(&self, label: &str) -> String {
        let line = self
            .walkthrough
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{}", self.walkthrough));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// The printed command lines (not comments), in order.
    fn commands(&self) -> Vec<String> {
        self.walkthrough
            .lines()
            .skip_while(|l| !l.starts_with("Try it"))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("Try it"))
            .take_while(|l| !l.starts_with("Simulated device tokens"))
            .map(str::to_string)
            .collect()
    }

    /// `$NAME` and `$(cat FILE)` as a shell would expand them.
    fn expand(&self, word: &str) -> String {
        if let Some(file) = word
            .strip_prefix("$(cat ")
            .and_then(|w| w.strip_suffix(')'))
        {
            return std::fs::read_to_string(file).unwrap().trim().to_string();
        }
        if let Some(name) = word.strip_prefix('$') {
            return self
                .vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("${name} is not set"));
        }
        word.to_string()
    }

    /// Run one printed line; returns (what it answered, the HTTP status if it was curl).
    async fn follow(&mut self, line: &str) -> (String, Option<u16>) {
        if let Some((name, rest)) = line.split_once("=$(") {
            let cmd = rest.strip_suffix(')').unwrap();
            let out = run_printed(cmd);
            assert!(!out.is_empty(), "{cmd} printed nothing");
            self.vars.push((name.to_string(), out.clone()));
            return (out, None);
        }
        if let Some(rest) = line.strip_prefix("curl -s -X POST ") {
            let url = rest.split_whitespace().next().unwrap();
            let auth = rest
                .split_once("Authorization: Bearer ")
                .unwrap()
                .1
                .split('"')
                .next()
                .unwrap();
            let body = rest
                .split_once(" -d '")
                .unwrap()
                .1
                .strip_suffix('\'')
                .unwrap();
            let (status, text) = request("POST", url, Some(&self.expand(auth)), Some(body)).await;
            return (text, Some(status));
        }
        if let Some(rest) = line.strip_prefix("curl -s ") {
            let (url, grep) = rest.split_once(" | grep ").unwrap();
            let (status, text) = request("GET", url, None, None).await;
            let pattern = grep
                .trim_start_matches("-E ")
                .trim_matches('\'')
                .trim_start_matches('^')
                .to_string();
            let shown = text
                .lines()
                .filter(|l| matches_grep(l, &pattern))
                .collect::<Vec<_>>()
                .join("\n");
            return (shown, Some(status));
        }
        (run_printed(line), None)
    }

    /// Wait up to 15 s for the log to contain `needle`.
    async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Dev {
    /// A failed test still stops the daemon with SIGTERM first, so it removes its temp dir.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The printed grep patterns: `^callpush_(events|pushes)_total` or a fixed string.
fn matches_grep(line: &str, pattern: &str) -> bool {
    match pattern.split_once('(') {
        Some((head, rest)) => {
            let (alts, tail) = rest.split_once(')').unwrap();
            alts.split('|')
                .any(|a| line.starts_with(&format!("{head}{a}{tail}")))
        }
        None => line.contains(pattern),
    }
}

/// A printed command line (no quoting in them but what `split_whitespace` handles).
fn run_printed(line: &str) -> String {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap();
    let out = Command::new(program).args(words).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn request(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (base, path) = url
        .strip_prefix("http://")
        .map(|u| u.split_at(u.find('/').unwrap()))
        .unwrap();
    let (authority, mut sender) = support::api::connect_http1(&format!("http://{base}")).await;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or("").to_string()));
    let response = sender.send_request(req.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Metrics lines the printed grep shows, polled until `line` is among them.
async fn wait_metric(dev: &mut Dev, command: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (shown, status) = dev.follow(command).await;
        assert_eq!(status, Some(200));
        if shown.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line:?} in:\n{shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    commands[8..].to_vec()
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
