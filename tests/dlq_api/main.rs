//! The dead-letter admin routes (`/v1/dead-letters…`) through `oneshot`, on Redis and on the
//! in-memory backend of `callpush dev` (one body each, [`on_both_backends!`]): the admin token
//! guards them, they select and summarise exactly as `callpush dlq` does for the same filters
//! (on Redis directly, and through the admin API with `--admin`), errors have the SPEC §3 shape
//! and name the field, and replays and purges done here count in the metrics.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod cli_admin;

on_both_backends!(
    the_routes_need_the_admin_token,
    the_api_lists_what_the_cli_lists_for_the_same_filters,
    replay_purge_and_delete_act_and_count,
    mistakes_are_answered_in_the_error_shape_naming_the_field,
    paging_through_many_pages_sees_every_match_once_and_counts_them_all,
);

use std::path::Path;
use std::process::{Command, Stdio};

use callpush::domain::now_ms;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{call, ApiWorld, ADMIN_TOKEN};
use support::dead::{self, Dead};
use support::process::{config_toml, Knobs};
use support::world::Backend;

/// `callpush dlq <args> --json --config <config> <target…>`: the entries and the summary. The
/// admin token, for `--admin`, comes from the environment.
/// Run on a blocking thread: the test's one runtime thread serves the admin API meanwhile.
async fn cli(config: &Path, target: &[&str], args: &[&str]) -> (Vec<Value>, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callpush"));
    command
        .args(args)
        .arg("--json")
        .arg("--config")
        .arg(config)
        .args(target)
        .env("CALLPUSH_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.pop().unwrap();
    (lines, last)
}

async fn seed(w: &mut ApiWorld) -> Vec<String> {
    let now = now_ms();
    let mut malformed = Dead::new("malformed", "", "CA2", now - 2 * 3_600_000);
    malformed.to = None;
    let mut ended = Dead::new("expired", "alice", "CA5", now - 3_000);
    ended.added_ms = now - 120_000;
    let all = [
        Dead::new("expired", "alice", "CA1", now - 3 * 3_600_000),
        malformed,
        Dead::new("provider_rejected", "bob", "CA3", now - 10_000),
        Dead::new("retries_exhausted", "alice", "CA4", now - 5_000),
        ended,
    ];
    let mut ids = Vec::new();
    for d in &all {
        ids.push(dead::add_to(&mut w.world, d).await);
    }
    ids
}

async fn get(w: &ApiWorld, uri: &str) -> support::api::Reply {
    call(w.admin(), Method::GET, uri, Some(ADMIN_TOKEN), None).await
}

async fn post(w: &ApiWorld, uri: &str, body: Value) -> support::api::Reply {
    call(w.admin(), Method::POST, uri, Some(ADMIN_TOKEN), Some(body)).await
}

async fn the_routes_need_the_admin_token(backend: Backend) {
    let w = ApiWorld::on(backend, |_| {}).await;
    let routes = [
        (Method::GET, "/v1/dead-letters", None),
        (Method::GET, "/v1/dead-letters/1-0", None),
        (Method::DELETE, "/v1/dead-letters/1-0", None),
        (
            Method::POST,
            "/v1/dead-letters/replay",
            Some(json!({"all": true})),
        ),
        (
            Method::POST,
            "/v1/dead-letters/purge",
            Some(json!({"all": true})),
        ),
    ];
    for (method, uri, body) in routes {
        for bearer in [None, Some("wrong-token")] {
            let reply = call(w.admin(), method.clone(), uri, bearer, body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            assert_eq!(reply.code(), "invalid_token");
        }
    }
}

async fn the_api_lists_what_the_cli_lists_for_the_same_filters(backend: Backend) {
    let mut w = ApiWorld::on(backend, |_| {}).await;
    let ids = seed(&mut w).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w.world, "cli", &Knobs::default())).unwrap();
    // The CLI through the admin API on either backend, and straight on Redis when there is one.
    let admin = w.serve_admin().await;
    let mut targets = vec![vec!["--admin", admin.as_str()]];
    if backend == Backend::Redis {
        targets.push(vec![]);
    }

    let filters: &[(&str, &[&str])] = &[
        ("", &[]),
        ("?reason=expired", &["--reason", "expired"]),
        ("?to=alice&since=1h", &["--to", "alice", "--since", "1h"]),
        ("?until=1h", &["--until", "1h"]),
        ("?call_sid=CA3", &["--call-sid", "CA3"]),
        ("?limit=2", &["--limit", "2"]),
    ];
    for (query, args) in filters {
        let reply = get(&w, &format!("/v1/dead-letters{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        let mut argv = vec!["dlq", "list"];
        argv.extend_from_slice(args);
        for target in &targets {
            let (entries, summary) = cli(&config, target, &argv).await;
            let entries = Value::from(entries);
            assert_eq!(reply.body["dead_letters"], entries, "{query} {target:?}");
            assert_eq!(
                reply.body["summary"], summary["summary"],
                "{query} {target:?}"
            );
        }
    }
    let page = get(&w, "/v1/dead-letters?limit=2").await;
    let next = page.body["summary"]["next_after"].as_str().unwrap();
    assert_eq!(next, ids[1]);
    let rest = get(&w, &format!("/v1/dead-letters?after={next}")).await;
    assert_eq!(rest.body["dead_letters"].as_array().unwrap().len(), 3);

    let one = get(&w, &format!("/v1/dead-letters/{}", ids[2])).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["event"]["call_sid"], "CA3");
    assert_eq!(one.body["reason"], "provider_rejected");

    // The same replay summary as the CLI's dry run.
    let api = post(
        &w,
        "/v1/dead-letters/replay",
        json!({"all": true, "dry_run": true}),
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    for target in &targets {
        let (_, cli_summary) = cli(&config, target, &["dlq", "replay", "--all", "--dry-run"]).await;
        assert_eq!(api.body, cli_summary, "{target:?}");
    }
    assert_eq!(api.body["replayed"], 2);
    assert_eq!(api.body["skipped"]["deadline_passed"], 2);
    assert_eq!(api.body["skipped"]["malformed"], 1);
}

async fn replay_purge_and_delete_act_and_count(backend: Backend) {
    let mut w = ApiWorld::on(backend, |_| {}).await;
    let ids = seed(&mut w).await;

    let by_id = post(&w, "/v1/dead-letters/replay", json!({"ids": [ids[2]]})).await;
    assert_eq!(by_id.status, StatusCode::OK, "{}", by_id.body);
    assert_eq!(by_id.body["replayed"], 1);
    let (_, calls) = dead::world_streams(&mut w.world).await;
    assert_eq!(calls[0]["replayed_from"], ids[2]);
    assert_eq!(calls[0]["call_sid"], "CA3");

    let by_reason = post(
        &w,
        "/v1/dead-letters/replay",
        json!({"reason": "expired", "ttl_ms": 15000}),
    )
    .await;
    assert_eq!(by_reason.body["replayed"], 0, "{}", by_reason.body);
    assert_eq!(by_reason.body["skipped"]["deadline_passed"], 2);
    let forced = post(
        &w,
        "/v1/dead-letters/replay",
        json!({"reason": "expired", "force": true, "ttl_ms": 15000}),
    )
    .await;
    assert_eq!(forced.body["replayed"], 2, "{}", forced.body);
    let (_, calls) = dead::world_streams(&mut w.world).await;
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2]["ttl_ms"], "15000");

    let one = format!("/v1/dead-letters/{}", ids[1]);
    let delete = || call(w.admin(), Method::DELETE, &one, Some(ADMIN_TOKEN), None);
    let deleted = delete().await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = delete().await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.code(), "not_found");

    let dry = post(
        &w,
        "/v1/dead-letters/purge",
        json!({"all": true, "dry_run": true}),
    )
    .await;
    assert_eq!(dry.body["purged"], 1, "{}", dry.body);
    assert_eq!(dead::world_streams(&mut w.world).await.0.len(), 1);
    let purged = post(&w, "/v1/dead-letters/purge", json!({"before": "1s"})).await;
    assert_eq!(purged.body["purged"], 1, "{}", purged.body);
    assert_eq!(dead::world_streams(&mut w.world).await.0.len(), 0);

    let metrics = call(w.admin(), Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics_text(&w).await;
    for line in [
        "callpush_dead_letters_replayed_total{reason=\"provider_rejected\"} 1",
        "callpush_dead_letters_replayed_total{reason=\"expired\"} 2",
        "callpush_dead_letters_replayed_total{reason=\"malformed\"} 0",
        "callpush_dead_letters_purged_total 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

async fn metrics_text(w: &ApiWorld) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = w.admin().oneshot(req).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn mistakes_are_answered_in_the_error_shape_naming_the_field(backend: Backend) {
    let mut w = ApiWorld::on(backend, |_| {}).await;
    seed(&mut w).await;
    // (the request: a GET of the path, or a POST of the body; the status; the code; what the
    // message must name)
    let bad = (StatusCode::BAD_REQUEST, "invalid_request");
    let not_found = (StatusCode::NOT_FOUND, "not_found");
    let replay = "/v1/dead-letters/replay";
    let cases = [
        (
            "/v1/dead-letters/1764727200000-0",
            None,
            not_found,
            "1764727200000-0",
        ),
        (
            "/v1/dead-letters/nope",
            None,
            bad,
            "malformed dead-letter id",
        ),
        ("/v1/dead-letters?since=yesterday", None, bad, "since"),
        ("/v1/dead-letters?limit=5000", None, bad, "limit"),
        ("/v1/dead-letters?reasn=expired", None, bad, "reasn"),
        (
            "/v1/dead-letters?after=x",
            None,
            bad,
            "malformed dead-letter id",
        ),
        (replay, Some(json!({})), bad, "choose the dead letters"),
        (
            replay,
            Some(json!({"ids": ["1-0"], "all": true})),
            bad,
            "ids",
        ),
        (
            replay,
            Some(json!({"ids": ["1764727200000-0"]})),
            not_found,
            "1764727200000-0",
        ),
        (
            replay,
            Some(json!({"all": true, "until": "later"})),
            bad,
            "until",
        ),
        (
            replay,
            Some(json!({"all": true, "ttl_ms": 0})),
            bad,
            "ttl_ms",
        ),
        (replay, Some(json!({"all": "yes"})), bad, "all"),
        (
            "/v1/dead-letters/purge",
            Some(json!({"before": "tomorrow"})),
            bad,
            "before",
        ),
    ];
    for (uri, body, (status, code), named) in cases {
        let reply = match body {
            None => get(&w, uri).await,
            Some(body) => post(&w, uri, body).await,
        };
        assert_eq!(reply.status, status, "{uri}: {}", reply.body);
        assert_eq!(reply.code(), code, "{uri}: {}", reply.body);
        assert!(reply.message().contains(named), "{named}: {}", reply.body);
    }
    assert_eq!(dead::world_streams(&mut w.world).await.0.len(), 5);
}

async fn paging_through_many_pages_sees_every_match_once_and_counts_them_all(backend: Backend) {
    let mut w = ApiWorld::on(backend, |_| {}).await;
    let p = w.world.prefix.clone();
    let memory = w.world.memory_queue();
    let reasons = ["expired", "provider_rejected", "retries_exhausted"];
    let now = now_ms();
    let mut pipe = redis::pipe();
    let mut expected = Vec::new();
    for i in 0..2_345u64 {
        let sid = format!("CA{i}");
        let to = format!("user{}", i % 7);
        let d = Dead::new(reasons[(i % 3) as usize], &to, &sid, now - 3_000_000 + i);
        if i % 3 == 0 && i % 7 == 2 {
            expected.push(format!("{}-0", d.failed_ms));
        }
        match &memory {
            Some(queue) => {
                queue.add_dead_letter_at(d.failed_ms, d.fields());
            }
            None => {
                pipe.cmd("XADD")
                    .arg(format!("{p}dead"))
                    .arg(format!("{}-0", d.failed_ms))
                    .arg(d.fields());
            }
        }
    }
    if memory.is_none() {
        let _: () = pipe.query_async(&mut w.world.conn).await.unwrap();
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut uri = "/v1/dead-letters?reason=expired&to=user2&limit=9".to_string();
        if let Some(a) = &after {
            uri.push_str(&format!("&after={a}"));
        }
        let reply = get(&w, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let page = reply.body["dead_letters"].as_array().unwrap();
        seen.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        let summary = &reply.body["summary"];
        if after.is_none() {
            assert_eq!(summary["matched"], expected.len(), "{summary}");
            assert_eq!(summary["by_reason"]["expired"], expected.len());
            assert_eq!(summary["oldest"]["id"], expected[0].as_str());
            assert_eq!(summary["newest"]["id"], expected.last().unwrap().as_str());
        }
        match summary["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every match once, oldest first");
}
