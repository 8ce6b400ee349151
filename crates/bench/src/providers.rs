//! The simulated providers of the benchmark, in their own process so their CPU is not counted
//! as callpush's: `callpush-bench providers` runs [`callpush_sim::Simulators`] and records when
//! each push arrived. The benchmark's call SIDs carry the time the event was added
//! (`bench-<unix µs>-<n>`), so the latency XADD → push at the simulator is computed on arrival.
//!
//! The protocol is lines on stdin/stdout: the process prints its endpoints as one JSON line,
//! answers `report` with a JSON [`Arrivals`] line and `reset` with `ok`, and exits at end of
//! input.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::BenchError;
use callpush_sim::{PushObserver, SimOptions, Simulators};

/// Where the simulators listen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoints {
    /// The APNs endpoint.
    pub apns: String,
    /// The FCM base URL.
    pub fcm: String,
    /// The OAuth token endpoint.
    pub token_uri: String,
}

/// What the simulators saw since the last reset.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Arrivals {
    /// Pushes answered 200.
    pub delivered: u64,
    /// Pushes answered anything else.
    pub refused: u64,
    /// APNs pushes.
    pub apns: u64,
    /// FCM pushes.
    pub fcm: u64,
    /// Latencies of benchmark pushes (XADD → arrival), µs, sorted.
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
    /// Latency percentiles, µs: p50, p90, p99, p99.9, max.
    pub percentiles_us: [u64; 5],
    /// Arrival time of the last push, unix µs.
    pub last_us: u64,
}

#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Arrivals>,
}

/// The wall clock in µs since the epoch; the benchmark and the simulators share the machine.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The time an event was added, from its benchmark call SID.
fn sent_us(call_sid: &str) -> Option<u64> {
    call_sid
        .strip_prefix("bench-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl PushObserver for Recorder {
    fn pushed(&self, platform: &'static str, call_sid: &str, status: u16) {
        let now = unix_us();
        let mut seen = self.seen.lock().expect("recorder lock");
        if status == 200 {
            seen.delivered += 1;
        } else {
            seen.refused += 1;
        }
        if platform == "APNs" {
            seen.apns += 1;
        } else {
            seen.fcm += 1;
        }
        if let Some(sent) = sent_us(call_sid) {
            seen.latencies_us.push(now.saturating_sub(sent));
        }
        seen.last_us = now;
    }
}

impl Recorder {
    fn report(&self) -> Arrivals {
        let mut seen = self.seen.lock().expect("recorder lock").clone();
        seen.latencies_us.sort_unstable();
        let at = |q: f64| {
            let n = seen.latencies_us.len();
            if n == 0 {
                return 0;
            }
            seen.latencies_us[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
        };
        seen.percentiles_us = [at(0.5), at(0.9), at(0.99), at(0.999), at(1.0)];
        seen
    }
}

/// `callpush-bench providers`: run the simulators until stdin closes.
pub async fn serve(latency_ms: u64) -> Result<(), BenchError> {
    let recorder = std::sync::Arc::new(Recorder::default());
    let sims = Simulators::start_with(SimOptions {
        latency: Duration::from_millis(latency_ms),
        observer: Some(recorder.clone()),
        ..SimOptions::default()
    })
    .await
    .map_err(|e| BenchError::io("starting the simulators")(std::io::Error::other(e)))?;
    let endpoints = Endpoints {
        apns: sims.apns_endpoint(),
        fcm: sims.fcm_base_url(),
        token_uri: sims.token_uri(),
    };
    say(&serde_json::to_string(&endpoints).expect("endpoints serialise")).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.trim() {
            "report" => serde_json::to_string(&recorder.report()).expect("report serialises"),
            "reset" => {
                *recorder.seen.lock().expect("recorder lock") = Arrivals::default();
                "ok".to_string()
            }
            other => format!("unknown command {other:?}"),
        };
        say(&answer).await?;
    }
    drop(sims);
    Ok(())
}

async fn say(line: &str) -> Result<(), BenchError> {
    let mut out = tokio::io::stdout();
    out.write_all(format!("{line}\n").as_bytes())
        .await
        .and(out.flush().await)
        .map_err(BenchError::io("stdout"))
}

/// The providers process, seen from the benchmark.
pub struct Providers {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Where they listen.
    pub endpoints: Endpoints,
}

impl Providers {
    /// Start `exe providers --latency-ms N` and read its endpoints.
    pub async fn spawn(exe: &std::path::Path, latency_ms: u64) -> Result<Providers, BenchError> {
        let mut child = Command::new(exe)
            .args(["providers", "--latency-ms", &latency_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io("starting the providers process"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = next(&mut lines).await?;
        let endpoints = serde_json::from_str(&first)
            .map_err(|_| BenchError::Protocol(format!("providers said {first:?}")))?;
        Ok(Providers {
            child,
            stdin,
            lines,
            endpoints,
        })
    }

    /// The process id (for its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn ask(&mut self, command: &str) -> Result<String, BenchError> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(BenchError::io("writing to the providers process"))?;
        next(&mut self.lines).await
    }

    /// What arrived since the last reset.
    pub async fn report(&mut self) -> Result<Arrivals, BenchError> {
        let line = self.ask("report").await?;
        serde_json::from_str(&line).map_err(|_| BenchError::Protocol(line))
    }

    /// Forget what arrived so far.
    pub async fn reset(&mut self) -> Result<(), BenchError> {
        self.ask("reset").await.map(|_| ())
    }
}

async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> Result<String, BenchError> {
    lines
        .next_line()
        .await
        .map_err(BenchError::io("reading from the providers process"))?
        .ok_or_else(|| BenchError::Protocol("the providers process exited".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_sid_carries_the_send_time() {
        assert_eq!(
            sent_us("bench-1700000000123456-42"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(sent_us("CA1"), None);
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let recorder = Recorder::default();
        let now = unix_us();
        for ago in 1..=1000u64 {
            recorder.pushed("APNs", &format!("bench-{}-{ago}", now - ago * 1000), 200);
        }
        recorder.pushed("FCM", "not-a-bench-push", 404);
        let report = recorder.report();
        assert_eq!((report.delivered, report.refused), (1000, 1));
        assert_eq!((report.apns, report.fcm), (1000, 1));
        let [p50, _, p99, _, max] = report.percentiles_us;
        assert!((500_000..600_000).contains(&p50), "p50 {p50}");
        assert!((990_000..1_100_000).contains(&p99), "p99 {p99}");
        assert!(max >= p99);
    }
}
