//! Observability end to end: one daemon run with deliveries, a retry, a prune, a provider
//! rejection and a malformed entry, then a real scrape of `/metrics`. The counts must match
//! what the APNs and FCM doubles saw; every metric the dashboard and the alert rules name must
//! be in the scrape; and promtool must accept the scrape. On Redis and in memory (one body,
//! [`on_both_backends!`]); in memory the Redis stream gauges are there but stay at 0.

#[macro_use]
mod support;

on_both_backends!(a_scrape_after_a_run_counts_what_the_doubles_saw);

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::api::{add_auth, http, token};
use support::apns_double::Answer;
use support::daemon::TestDaemon;
use support::fixtures::apns_token;
use support::scrape::{self, mentioned_metrics, Scrape};
use support::world::{Backend, World};

/// Every metric of issue #5 (histograms by their `_count` series).
const ISSUE_METRICS: &[&str] = &[
    "callpush_events_total",
    "callpush_event_latency_seconds_count",
    "callpush_pushes_total",
    "callpush_push_duration_seconds_count",
    "callpush_push_retries_total",
    "callpush_tokens_pruned_total",
    "callpush_rate_limited_total",
    "callpush_pushes_in_flight",
    "callpush_provider_connections",
    "callpush_stream_lag",
    "callpush_stream_pending",
    "callpush_dead_letters",
    "callpush_registrations_total",
    "callpush_http_requests_total",
    "callpush_http_request_duration_seconds_count",
    "callpush_redis_errors_total",
    "callpush_provider_token_refreshes_total",
    "callpush_build_info",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
];

async fn register(daemon: &TestDaemon, identity: &str, platform: &str, device: &str) {
    let reply = http(
        Method::POST,
        &daemon.api_url(),
        "/v1/registrations",
        Some(&token(identity)),
        Some(json!({"platform": platform, "device_token": device})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// Scrape until the sampler has seen `dead` dead letters (it samples every few seconds).
async fn scrape_when_sampled(daemon: &TestDaemon, dead: f64) -> Scrape {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = scrape::fetch(&daemon.admin_url()).await;
        let sampled = scrape.value("callpush_dead_letters", &[]) == Some(dead)
            && scrape.value("callpush_provider_connections", &[("credential", "CRfcm")])
                >= Some(1.0);
        if sampled || Instant::now() > until {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn a_scrape_after_a_run_counts_what_the_doubles_saw(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::on(backend, |s| add_auth(s, dir.path())).await;
    let daemon = w.start_daemon();
    // The sampled dead-letter gauge: Redis's XLEN, or 0 in memory.
    let sampled_dead = match backend {
        Backend::Redis => 2,
        Backend::Memory => 0,
    };
    register(&daemon, "alice", "apns", &apns_token(1)).await;
    register(&daemon, "alice", "fcm", "fcm-token-alice").await;
    register(&daemon, "bob", "apns", &apns_token(2)).await;
    register(&daemon, "carol", "apns", &apns_token(3)).await;
    register(&daemon, "dave", "apns", &apns_token(4)).await;
    w.apns
        .set_unregistered(&apns_token(2), callpush::domain::now_ms() + 1);
    w.apns.script(
        &apns_token(3),
        vec![Answer::error(503, "ServiceUnavailable")],
    );
    w.apns
        .script(&apns_token(4), vec![Answer::error(400, "BadTopic")]);

    for (to, sid) in [
        ("alice", "CA1"),
        ("bob", "CA2"),
        ("carol", "CA3"),
        ("dave", "CA4"),
        ("erin", "CA5"),
    ] {
        w.call(&[("type", "incoming"), ("to", to), ("call_sid", sid)])
            .await;
    }
    w.call(&[("type", "incoming"), ("call_sid", "CA6")]).await; // no `to`: malformed
    let results = w.results(6).await;
    let outcome =
        |sid: &str| results.iter().find(|r| r["call_sid"] == sid).unwrap()["outcome"].clone();
    assert_eq!(outcome("CA1"), "delivered");
    assert_eq!(
        outcome("CA2"),
        "no_bindings",
        "bob's only device was pruned"
    );
    assert_eq!(outcome("CA3"), "delivered");
    assert_eq!(outcome("CA4"), "dead_lettered");
    assert_eq!(outcome("CA5"), "no_bindings");
    w.dead(2).await;

    let s = scrape_when_sampled(&daemon, sampled_dead as f64).await;
    let names = s.names();
    for name in ISSUE_METRICS {
        assert!(
            names.contains(*name),
            "{name} missing from the scrape:\n{}",
            s.text
        );
    }
    let v = |name: &str, labels: &[(&str, &str)]| s.value(name, labels).unwrap_or(0.0) as usize;
    let events = |outcome: &str| {
        v(
            "callpush_events_total",
            &[("type", "incoming"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (
            events("delivered"),
            events("no_bindings"),
            events("dead_lettered"),
            events("malformed")
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(
        v(
            "callpush_event_latency_seconds_count",
            &[("type", "incoming")]
        ),
        2
    );

    // Every request the doubles answered is one push, by the answer the double gave.
    let apns = |outcome: &str| {
        v(
            "callpush_pushes_total",
            &[
                ("platform", "apns"),
                ("credential", "CRapns"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        apns("delivered") + apns("retry") + apns("invalid_token") + apns("rejected"),
        w.apns.count()
    );
    assert_eq!(
        (
            apns("delivered"),
            apns("retry"),
            apns("invalid_token"),
            apns("rejected")
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(
        v(
            "callpush_pushes_total",
            &[("outcome", "rejected"), ("reason", "BadTopic")]
        ),
        1
    );
    assert_eq!(
        v(
            "callpush_pushes_total",
            &[("platform", "fcm"), ("outcome", "delivered")]
        ),
        w.fcm.count()
    );
    assert_eq!(
        v(
            "callpush_push_duration_seconds_count",
            &[("credential", "CRapns")]
        ),
        w.apns.count()
    );
    assert_eq!(v("callpush_push_retries_total", &[("platform", "apns")]), 1);
    assert_eq!(
        v(
            "callpush_tokens_pruned_total",
            &[("platform", "apns"), ("reason", "Unregistered")]
        ),
        1
    );
    assert_eq!(v("callpush_pushes_in_flight", &[]), 0);
    assert!(v("callpush_provider_connections", &[("credential", "CRapns")]) >= 1);
    assert_eq!(
        v(
            "callpush_provider_token_refreshes_total",
            &[("platform", "fcm"), ("outcome", "ok")]
        ),
        w.fcm.token_requests()
    );
    assert_eq!(
        (
            v("callpush_stream_lag", &[]),
            v("callpush_stream_pending", &[]),
            v("callpush_dead_letters", &[])
        ),
        (0, 0, sampled_dead)
    );
    assert_eq!(
        v(
            "callpush_registrations_total",
            &[("platform", "apns"), ("outcome", "created")]
        ),
        4
    );
    assert_eq!(
        v(
            "callpush_registrations_total",
            &[("platform", "fcm"), ("outcome", "created")]
        ),
        1
    );
    let route = [
        ("listener", "public"),
        ("route", "/v1/registrations"),
        ("status", "201"),
    ];
    assert_eq!(v("callpush_http_requests_total", &route), 5);
    assert_eq!(v("callpush_redis_errors_total", &[]), 0);
    for label in ["credential", "reason"] {
        for value in s.label_values("callpush_pushes_total", label) {
            assert!(
                value.len() < 40 && !value.contains("token"),
                "unbounded {label} value {value:?}"
            );
        }
    }

    // The dashboard and the alert rules chart only what the daemon exports.
    for file in [
        "dashboards/callpush.json",
        "deploy/prometheus/alerts.yml",
        "docs/runbook.md",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        let unknown: Vec<_> = mentioned_metrics(&text)
            .into_iter()
            .filter(|m| !names.contains(m))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the daemon does not export: {unknown:?}"
        );
    }

    match scrape::promtool_check(&s.text) {
        Some((ok, report)) => assert!(ok, "promtool check metrics:\n{report}"),
        None => {
            eprintln!("note: promtool not on PATH; `promtool check metrics` skipped (CI runs it)")
        }
    }
    daemon.stop().await;
}

#[test]
fn every_alert_names_its_runbook_section_and_the_dashboard_uses_the_datasource_variable() {
    let alerts = std::fs::read_to_string("deploy/prometheus/alerts.yml").unwrap();
    let runbook = std::fs::read_to_string("docs/runbook.md").unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 8, "alerts: {names:?}");
    for name in names {
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "runbook has no section {name}"
        );
        let anchor = format!("docs/runbook.md#{}", name.to_lowercase());
        assert!(alerts.contains(&anchor), "{name} does not link {anchor}");
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("dashboards/callpush.json").unwrap())
            .unwrap();
    let mut uids = Vec::new();
    collect_uids(&dashboard, &mut uids);
    assert!(!uids.is_empty());
    assert!(
        uids.iter().all(|u| u == "${datasource}"),
        "hard-coded datasource uids: {uids:?}"
    );
}

/// A ratio panel divides by a series that exists; its numerator may not exist yet (no 5xx so
/// far, nothing delivered on a new instance): without `or vector(0)` the panel shows "No data"
/// where the operator should see 0.
#[test]
fn every_ratio_panel_shows_zero_when_its_numerator_has_no_series() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("dashboards/callpush.json").unwrap())
            .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let ratios: Vec<&String> = exprs.iter().filter(|e| e.contains(" / ")).collect();
    assert!(ratios.len() >= 2, "ratio panels: {ratios:?}");
    for expr in ratios {
        let numerator = expr.split(" / ").next().unwrap().trim();
        assert!(
            numerator.starts_with('(') && numerator.ends_with("or vector(0))"),
            "the numerator of {expr} is empty until its first sample"
        );
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                out.push(expr.to_string());
            }
            map.values().for_each(|x| collect_exprs(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

fn collect_uids(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(ds) = map.get("datasource").and_then(|d| d.get("uid")) {
                out.push(ds.as_str().unwrap_or_default().to_string());
            }
            map.values().for_each(|x| collect_uids(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_uids(x, out)),
        _ => {}
    }
}
