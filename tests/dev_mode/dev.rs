//! Driving `callpush dev` as a user does: start it and read its walkthrough, run the printed
//! command lines and curl requests, poll the printed metrics.

use http_body_util::BodyExt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_callpush");

/// A running `callpush dev` and what it printed.
pub struct Dev {
    pub child: Option<Child>,
    pub walkthrough: String,
    pub log: PathBuf,
    /// `$NAME` → value, as the walkthrough's shell lines set them.
    pub vars: Vec<(String, String)>,
}

impl Dev {
    /// Start `callpush dev` with `args`; returns once the walkthrough is printed.
    pub fn start(dir: &Path, args: &[&str]) -> Dev {
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value printed after `label` (`data dir`, `config`, …).
    pub fn shown(&self, label: &str) -> String {
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
    pub fn commands(&self) -> Vec<String> {
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
    pub fn expand(&self, word: &str) -> String {
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
    pub async fn follow(&mut self, line: &str) -> (String, Option<u16>) {
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
        if let Some((url, auth)) = line
            .strip_prefix("curl -s ")
            .and_then(|rest| rest.split_once(" -H \"Authorization: Bearer "))
        {
            let auth = self.expand(auth.trim_end_matches('"'));
            let (status, text) = request("GET", url, Some(&auth), None).await;
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
    pub async fn wait_log(&self, needle: &str) {
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

    pub async fn sigterm(&mut self) -> ExitStatus {
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
pub fn matches_grep(line: &str, pattern: &str) -> bool {
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
pub fn run_printed(line: &str) -> String {
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

pub async fn request(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (base, path) = url
        .strip_prefix("http://")
        .map(|u| u.split_at(u.find('/').unwrap()))
        .unwrap();
    let (authority, mut sender) =
        crate::support::api::connect_http1(&format!("http://{base}")).await;
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
pub async fn wait_metric(dev: &mut Dev, command: &str, line: &str) {
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
