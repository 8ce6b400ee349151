//! `callpush-bench` as a user runs it, on a tiny load: it starts its own redis-server, the
//! simulated providers in their own process (with a provider latency) and `callpush serve`,
//! and its JSON report counts every push the simulators saw and every outcome, with the raw
//! limits beside them. No timing is asserted: the numbers are for people.

use std::process::Command;

#[test]
fn a_small_run_reports_every_push_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_callpush-bench"))
        .args(["--identities", "20", "--bindings", "2", "--mix", "half"])
        .args(["--events", "100", "--provider-latency-ms", "5"])
        .args(["--limit-seconds", "1", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "pushes/s",
        "latency ms",
        "callpush CPU",
        "redis CPU",
        "raw HTTP/2",
    ] {
        assert!(stdout.contains(row), "the table has {row}:\n{stdout}");
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["pushes"], 200, "two devices per event: {report}");
    assert_eq!(report["outcomes"]["delivered"], 100, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["scenario"]["mix"], "half");
    let latency = &report["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        latency["max"].as_f64() >= latency["p99"].as_f64(),
        "{report}"
    );
    assert!(report["callpush_peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(report["redis_cpu_s_per_1k_events"].is_number(), "{report}");
    for stage in ["read", "resolve", "claim", "push", "finish"] {
        assert!(
            report["stage_mean_ms"][stage].is_number(),
            "{stage}: {report}"
        );
    }
    // redis-benchmark comes with redis-server; h2load (nghttp2-client) may be missing, and
    // then the report says why there is no number.
    assert!(
        report["raw_xadd_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["xadd_ratio"].is_number(), "{report}");
    assert!(
        report["raw_http2_per_sec"].is_number() || report["raw_http2_not_measured"].is_string(),
        "{report}"
    );
}
