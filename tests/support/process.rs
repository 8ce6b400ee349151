//! The real `callpush` binary as a child process (`serve --config`), for the tests that kill it:
//! `kill -9`, SIGTERM, several daemons in one group. The config is written from a [`World`]'s
//! settings (its Redis, prefix and both doubles) with a fixed consumer name; stderr goes to a log
//! file beside the config, shown when a test fails.
//!
//! ```ignore
//! let d = DaemonProcess::start(&w, dir.path(), "d1", &Knobs::default());
//! d.kill9();
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use callpush::config::{CredentialSettings, LimitScope, Settings};

use super::world::World;

/// The `callpush` binary's path. `option_env!`: examples share this support code and have no
/// binary path.
fn binary() -> &'static str {
    let Some(binary) = option_env!("CARGO_BIN_EXE_callpush") else {
        panic!("only integration tests run the binary");
    };
    binary
}

/// The `callpush` binary run as an operator runs it: `args`, then `--config config`, logging
/// JSON. The caller adds what else it needs and runs it.
pub fn callpush_cli(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CALLPUSH_LOG_FORMAT", "json");
    command
}

/// The settings the delivery tests vary.
#[derive(Debug, Clone)]
pub struct Knobs {
    pub claim_idle_ms: u64,
    pub max_in_flight: usize,
    pub grace_ms: u64,
    pub batch_size: usize,
    /// The daemon's `RUST_LOG` (`callpush=info`; add `redis=info` to see the Redis client's
    /// own reconnects and slot refreshes).
    pub log_filter: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            claim_idle_ms: 1_000,
            max_in_flight: 256,
            grace_ms: 5_000,
            batch_size: 64,
            log_filter: "callpush=info".into(),
        }
    }
}

/// A running `callpush serve`; killed (SIGKILL) when dropped.
pub struct DaemonProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Write `dir/<consumer>.toml` for `world` and start `callpush serve` with it.
    pub fn start(world: &World, dir: &Path, consumer: &str, knobs: &Knobs) -> DaemonProcess {
        Self::start_on(&world.settings, dir, consumer, knobs)
    }

    /// [`DaemonProcess::start`] for `settings` (their Redis, prefix, shards and credentials).
    pub fn start_on(
        settings: &Settings,
        dir: &Path,
        consumer: &str,
        knobs: &Knobs,
    ) -> DaemonProcess {
        let config = dir.join(format!("{consumer}.toml"));
        std::fs::write(&config, settings_toml(settings, consumer, knobs)).unwrap();
        let log = dir.join(format!("{consumer}.log"));
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", &knobs.log_filter)
            .env("CALLPUSH_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn callpush serve");
        DaemonProcess {
            child: Some(child),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }

    /// SIGTERM, then wait (up to `timeout`) for the exit status.
    pub async fn sigterm(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("callpush did not exit within {timeout:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The public and admin listener addresses, once the daemon logged them.
    pub async fn listeners(&self) -> (String, String) {
        listeners(&self.log).await
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The warnings and errors of [`DaemonProcess::log_text`]: per distinct message, how often,
    /// and the first such line.
    pub fn warnings(&self) -> String {
        let log = self.log_text();
        let mut seen: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let level = v["level"].as_str().unwrap_or_default().to_string();
            if level == "WARN" || level == "ERROR" {
                let message = v["message"].as_str().unwrap_or_default().to_string();
                let first = || (0, line.chars().take(300).collect());
                seen.entry((level, message)).or_insert_with(first).0 += 1;
            }
        }
        let lines = seen.into_iter().map(|((level, message), (n, first))| {
            format!("  {n:>4} × {level} {message}\n         {first}")
        });
        lines.collect::<Vec<_>>().join("\n")
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The TOML a user would write for `world`, with `consumer` as the fixed consumer name.
pub fn config_toml(world: &World, consumer: &str, knobs: &Knobs) -> String {
    settings_toml(&world.settings, consumer, knobs)
}

/// [`config_toml`] for `s`: its Redis (a cluster's seed nodes too), prefix, shards and
/// credentials.
pub fn settings_toml(s: &Settings, consumer: &str, knobs: &Knobs) -> String {
    let urls: Vec<String> = s.redis.urls.iter().map(|u| format!("\"{u}\"")).collect();
    let mut text = format!(
        r#"
[redis]
url = "{url}"
key_prefix = "{prefix}"
cluster = {cluster}
urls = [{urls}]

[stream]
shards = {shards}
consumer = "{consumer}"
block_ms = 200
claim_idle_ms = {claim}
batch_size = {batch}

[workers]
max_in_flight = {max}

[retry]
base_ms = {base}
max_ms = {max_ms}
max_attempts = {attempts}

[limits]
calls_per_identity_per_min = {per_min}
scope = "{scope}"

# `serve` binds both listeners; port 0 lets several daemons and tests run side by side.
[api]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"

[shutdown]
grace_ms = {grace}
"#,
        url = s.redis.url,
        prefix = s.redis.key_prefix,
        cluster = s.redis.cluster,
        urls = urls.join(", "),
        shards = s.stream.shards,
        claim = knobs.claim_idle_ms,
        batch = knobs.batch_size,
        max = knobs.max_in_flight,
        base = s.retry.base_ms,
        max_ms = s.retry.max_ms,
        attempts = s.retry.max_attempts,
        per_min = s.limits.calls_per_identity_per_min,
        scope = match s.limits.scope {
            LimitScope::Daemon => "daemon",
            LimitScope::Cluster => "cluster",
        },
        grace = knobs.grace_ms,
    );
    for cred in &s.credentials {
        match cred {
            CredentialSettings::Apns(a) => text.push_str(&format!(
                "\n[[credentials]]\nsid = \"{}\"\nplatform = \"apns\"\nbundle_id = \"{}\"\n\
                 team_id = \"{}\"\nkey_id = \"{}\"\nkey_file = \"{}\"\nendpoint = \"{}\"\n",
                a.sid,
                a.bundle_id,
                a.team_id,
                a.key_id,
                a.key_file.display(),
                a.endpoint.as_deref().unwrap_or_default(),
            )),
            CredentialSettings::Fcm(f) => text.push_str(&format!(
                "\n[[credentials]]\nsid = \"{}\"\nplatform = \"fcm\"\n\
                 service_account_file = \"{}\"\nbase_url = \"{}\"\n",
                f.sid,
                f.service_account_file.display(),
                f.base_url.as_deref().unwrap_or_default(),
            )),
        }
    }
    text
}

/// The public and admin listener addresses (`host:port`) from the "HTTP listeners ready" line
/// of a daemon's JSON log at `log`, waiting for it.
pub async fn listeners(log: &Path) -> (String, String) {
    let until = Instant::now() + super::world::WAIT;
    while Instant::now() < until {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("HTTP listeners ready")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let addr = |k: &str| v[k].as_str().unwrap().to_string();
            return (addr("api"), addr("admin"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no listeners line:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
