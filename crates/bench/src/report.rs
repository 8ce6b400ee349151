//! What one benchmark run measured: a table for people and the same numbers as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

/// The results of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run: identities, bindings, mix, events, offer, provider latency.
    pub scenario: BTreeMap<&'static str, String>,
    /// `nproc` and the CPU model.
    pub machine: String,
    /// Seconds from the first XADD to the last outcome.
    pub seconds: f64,
    /// Events with an outcome per second.
    pub events_per_sec: f64,
    /// Pushes that reached the simulators per second (first XADD → last push).
    pub pushes_per_sec: f64,
    /// Pushes that reached the simulators.
    pub pushes: u64,
    /// XADD → push at the simulator, ms: p50, p90, p99, p99.9, max.
    pub latency_ms: BTreeMap<&'static str, f64>,
    /// callpush's CPU seconds per 1,000 pushes.
    pub callpush_cpu_s_per_1k_pushes: Option<f64>,
    /// redis-server's CPU seconds per 1,000 events.
    pub redis_cpu_s_per_1k_events: Option<f64>,
    /// The simulators' CPU seconds per 1,000 pushes (the bench's own double, for context).
    pub providers_cpu_s_per_1k_pushes: Option<f64>,
    /// callpush's peak resident memory (VmHWM), MiB.
    pub callpush_peak_rss_mib: Option<f64>,
    /// callpush's resident memory once a second during the run, MiB.
    pub callpush_rss_curve_mib: Vec<f64>,
    /// Mean ms per event in each stage (`callpush_stage_seconds`, warm-up included).
    pub stage_mean_ms: BTreeMap<String, f64>,
    /// Outcomes on the results stream, by name.
    pub outcomes: BTreeMap<String, u64>,
    /// Events without `delivered` (other outcomes, or none before the timeout) plus pushes the
    /// simulators refused.
    pub errors: u64,
    /// Raw HTTP/2 requests/s against the same APNs simulator (h2load), or why not measured.
    #[serde(skip)]
    pub raw_http2_per_sec: Result<f64, String>,
    /// Raw XADD/s on the same Redis (redis-benchmark), or why not measured.
    #[serde(skip)]
    pub raw_xadd_per_sec: Result<f64, String>,
}

impl Report {
    /// callpush's pushes/s as a fraction of the raw HTTP/2 rate.
    pub fn http2_ratio(&self) -> Option<f64> {
        self.raw_http2_per_sec
            .as_ref()
            .ok()
            .map(|raw| self.pushes_per_sec / raw)
    }

    /// callpush's events/s as a fraction of the raw XADD rate.
    pub fn xadd_ratio(&self) -> Option<f64> {
        self.raw_xadd_per_sec
            .as_ref()
            .ok()
            .map(|raw| self.events_per_sec / raw)
    }

    /// The report and its ratios as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a report serialises");
        for (name, limit) in [
            ("raw_http2", &self.raw_http2_per_sec),
            ("raw_xadd", &self.raw_xadd_per_sec),
        ] {
            value[format!("{name}_per_sec")] = serde_json::json!(limit.as_ref().ok());
            value[format!("{name}_not_measured")] = serde_json::json!(limit.as_ref().err());
        }
        value["http2_ratio"] = serde_json::json!(self.http2_ratio());
        value["xadd_ratio"] = serde_json::json!(self.xadd_ratio());
        value
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let scenario: Vec<String> = self
            .scenario
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
        };
        let limit = |v: &Result<f64, String>| match v {
            Ok(v) => format!("{v:.0}/s"),
            Err(why) => format!("not measured: {why}"),
        };
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.1} %", v * 100.0));
        let _ = writeln!(out, "callpush-bench  {}", scenario.join(" "));
        let _ = writeln!(out, "machine         {}", self.machine);
        let rows: Vec<(&str, String)> = vec![
            ("duration", format!("{:.2} s", self.seconds)),
            ("events/s", format!("{:.0}", self.events_per_sec)),
            (
                "pushes/s",
                format!("{:.0} ({} pushes)", self.pushes_per_sec, self.pushes),
            ),
            (
                "latency ms",
                ["p50", "p90", "p99", "p99.9", "max"]
                    .iter()
                    .map(|k| format!("{k} {:.2}", self.latency_ms.get(k).unwrap_or(&0.0)))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            (
                "callpush CPU",
                format!(
                    "{} s per 1,000 pushes",
                    opt(self.callpush_cpu_s_per_1k_pushes, 4)
                ),
            ),
            (
                "redis CPU",
                format!(
                    "{} s per 1,000 events",
                    opt(self.redis_cpu_s_per_1k_events, 4)
                ),
            ),
            (
                "simulators CPU",
                format!(
                    "{} s per 1,000 pushes",
                    opt(self.providers_cpu_s_per_1k_pushes, 4)
                ),
            ),
            (
                "callpush RSS",
                format!("{} MiB peak", opt(self.callpush_peak_rss_mib, 1)),
            ),
            (
                "stages ms (mean)",
                ["read", "resolve", "claim", "push", "finish"]
                    .iter()
                    .filter_map(|k| Some(format!("{k} {:.2}", self.stage_mean_ms.get(*k)?)))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            ("errors", self.errors.to_string()),
            ("outcomes", format!("{:?}", self.outcomes)),
            ("raw HTTP/2", limit(&self.raw_http2_per_sec)),
            ("pushes/raw HTTP/2", pct(self.http2_ratio())),
            ("raw XADD", limit(&self.raw_xadd_per_sec)),
            ("events/raw XADD", pct(self.xadd_ratio())),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<18} {value}");
        }
        out
    }
}

/// `nproc` and the CPU model, from /proc/cpuinfo.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}
