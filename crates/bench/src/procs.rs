//! The processes the benchmark runs or watches: a `redis-server` in a temp dir, `callpush
//! serve` with a generated config, and what `/proc` tells about any of them (CPU time, peak
//! resident memory).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::BenchError;

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(BenchError::io("finding a free port"))
}

/// A child process, killed when dropped.
pub struct Spawned {
    child: Child,
    /// Its process id.
    pub pid: u32,
}

impl Spawned {
    fn new(mut command: Command, log: &Path, what: &'static str) -> Result<Spawned, BenchError> {
        let log = std::fs::File::create(log).map_err(BenchError::io("creating a log file"))?;
        let err = log
            .try_clone()
            .map_err(BenchError::io("creating a log file"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io(what))?;
        let pid = child.id().unwrap_or(0);
        Ok(Spawned { child, pid })
    }

    /// Ask it to stop (SIGTERM) and wait up to `grace`, then kill it.
    pub async fn stop(mut self, grace: Duration) {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Start `redis-server` on a free port with no persistence, in `dir`; returns it and its URL.
pub async fn redis_server(dir: &Path) -> Result<(Spawned, String), BenchError> {
    let port = free_port()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir);
    let redis = Spawned::new(command, &dir.join("redis.log"), "starting redis-server")?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).map_err(BenchError::Redis)?;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_ok() {
                return Ok((redis, url));
            }
        }
        if Instant::now() > until {
            return Err(BenchError::Protocol(
                "redis-server did not answer PING".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start `callpush serve -c config`, logging at `warn` into `log`.
pub fn callpush_serve(bin: &Path, config: &Path, log: &Path) -> Result<Spawned, BenchError> {
    let mut command = Command::new(bin);
    command
        .args(["serve", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("CALLPUSH_LOG_FORMAT", "json");
    Spawned::new(command, log, "starting callpush serve")
}

/// The `callpush` binary beside this one (`target/release/callpush` for a release bench). Both
/// are in the one target directory of the workspace; `callpush` is another package's binary,
/// so building this package alone (`-p callpush-bench`) does not build it.
pub fn sibling(name: &str) -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        return Err(BenchError::Protocol(format!(
            "no {name} binary at {}: build both with `cargo build --release --bins` at the \
             repository's root, or pass --callpush",
            path.display()
        )));
    }
    Ok(path)
}

/// User plus system CPU time of a process, in seconds (None when it is not readable here).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// Peak resident memory of a process (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    kib_field(pid, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// Resident memory now (VmRSS), in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    kib_field(pid, "VmRSS:").map(|kib| kib as f64 / 1024.0)
}

fn kib_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        let pid = std::process::id();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_seconds(pid).is_some_and(|s| s > 0.0));
        assert!(peak_rss_mib(pid).is_some_and(|m| m > 0.0));
        assert!(rss_mib(pid).is_some_and(|m| m <= peak_rss_mib(pid).unwrap()));
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
