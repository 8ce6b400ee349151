//! `callpush dlq` as on-call engineers use it (the real binary, a real redis-server): dead
//! letters of several reasons listed, filtered, shown and purged; replayed ones delivered by a
//! running daemon; dry runs that change nothing; and one clear line for every mistake. (A
//! replay killed half-way: `dlq_interrupted.rs`; on a terminal: `dlq_terminal.rs`.)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use callpush::domain::{now_ms, Platform};
use serde_json::Value;
use support::daemon::{read_all, TestDaemon};
use support::dead::{self, Dead};
use support::process::{callpush_cli, config_toml, Knobs};
use support::world::World;

fn callpush(config: &Path, args: &[&str]) -> Output {
    callpush_cli(config, args)
        .env("COLUMNS", "160")
        .stdin(Stdio::null())
        .output()
        .expect("run callpush")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails with exactly one line on stderr; returns it.
fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "must fail: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// JSON lines of `out`: the entries and the final summary.
fn json_lines(out: &Output) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.pop().expect("a summary line");
    (lines, summary)
}

fn write_config(w: &World, dir: &Path) -> PathBuf {
    let path = dir.join("callpush.toml");
    std::fs::write(&path, config_toml(w, "cli", &Knobs::default())).unwrap();
    path
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn dead_letters_are_listed_filtered_shown_and_purged() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&w, dir.path());
    let now = now_ms();
    let p = w.prefix.clone();
    let mut malformed = Dead::new("malformed", "", "CA2", now - 2 * 3_600_000);
    malformed.to = None;
    let seeded = [
        Dead::new("expired", "alice", "CA1", now - 3 * 3_600_000),
        malformed,
        Dead::new("provider_rejected", "bob", "CA3", now - 10_000),
        Dead::new("retries_exhausted", "alice", "CA4", now - 5_000),
    ];
    let mut dead_ids = Vec::new();
    for d in &seeded {
        dead_ids.push(dead::add(&mut w.conn, &p, d).await);
    }

    let (all, summary) = json_lines(&callpush(&config, &["dlq", "list", "--json"]));
    assert_eq!(ids(&all), dead_ids, "oldest first");
    assert_eq!(summary["summary"]["matched"], 4);
    for reason in [
        "expired",
        "malformed",
        "provider_rejected",
        "retries_exhausted",
    ] {
        assert_eq!(summary["summary"]["by_reason"][reason], 1, "{reason}");
    }
    assert_eq!(summary["summary"]["oldest"]["id"], dead_ids[0].as_str());
    assert_eq!(summary["summary"]["newest"]["id"], dead_ids[3].as_str());

    let cases: &[(&[&str], &[usize])] = &[
        (&["--reason", "provider_rejected"], &[2]),
        (&["--since", "1h"], &[2, 3]),
        (&["--until", "1h"], &[0, 1]),
        (&["--to", "alice"], &[0, 3]),
        (&["--call-sid", "CA3"], &[2]),
        (&["--to", "alice", "--since", "1h"], &[3]),
        (&["--after", &dead_ids[1]], &[2, 3]),
    ];
    for (args, want) in cases {
        let mut argv = vec!["dlq", "list", "--json"];
        argv.extend_from_slice(args);
        let (got, summary) = json_lines(&callpush(&config, &argv));
        let want: Vec<String> = want.iter().map(|i| dead_ids[*i].clone()).collect();
        assert_eq!(ids(&got), want, "{args:?}");
        assert_eq!(summary["summary"]["matched"], want.len(), "{args:?}");
    }
    // A limit shows fewer, counts all, and says where the next page starts.
    let (page, summary) = json_lines(&callpush(
        &config,
        &["dlq", "list", "--json", "--limit", "1"],
    ));
    assert_eq!(ids(&page), [dead_ids[0].clone()]);
    assert_eq!(summary["summary"]["matched"], 4);
    assert_eq!(summary["summary"]["next_after"], dead_ids[0].as_str());

    // The table: a header, one row per entry, the summary.
    let table = ok(&callpush(&config, &["dlq", "list"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID", "AGE", "REASON", "TYPE", "TO", "CALL_SID", "ATT", "DETAIL",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.contains("APNs 403 InvalidProviderToken"), "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 160), "{table}");
    assert!(
        table.contains(
            "4 matched, 4 shown: expired 1, malformed 1, provider_rejected 1, retries_exhausted 1"
        ),
        "{table}"
    );

    // Show: the event's fields first, then the dead letter's.
    let shown = ok(&callpush(&config, &["dlq", "show", &dead_ids[2]]));
    let keys: Vec<&str> = shown
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "to",
            "call_sid",
            "from",
            "reason",
            "detail",
            "attempts",
            "failed_at",
            "source_id"
        ]
    );
    assert!(shown.contains("InvalidProviderToken"));
    let json: Value = serde_json::from_str(&ok(&callpush(
        &config,
        &["dlq", "show", &dead_ids[2], "--json"],
    )))
    .unwrap();
    assert_eq!(json["event"]["to"], "bob");
    assert_eq!(json["reason"], "provider_rejected");
    assert_eq!(json["attempts"], 2);

    // Purge: a dry run changes nothing; by id; by reason; the rest with --all.
    let dry = ok(&callpush(&config, &["dlq", "purge", "--all", "--dry-run"]));
    assert!(dry.contains("would have purged 4"), "{dry}");
    assert_eq!(dead::len(&mut w.conn, &p, "dead").await, 4);
    let one = ok(&callpush(&config, &["dlq", "purge", &dead_ids[1], "--yes"]));
    assert!(one.starts_with("purged 1 (malformed 1)"), "{one}");
    let by_reason: Value = serde_json::from_str(&ok(&callpush(
        &config,
        &["dlq", "purge", "--reason", "expired", "--yes", "--json"],
    )))
    .unwrap();
    assert_eq!(by_reason["purged"], 1);
    assert_eq!(by_reason["by_reason"]["expired"], 1);
    // Deleting for good asks first: without a terminal, --yes is needed.
    let err = fails(&callpush(&config, &["dlq", "purge", "--all"]));
    assert!(err.contains("without --yes"), "{err}");
    assert_eq!(dead::len(&mut w.conn, &p, "dead").await, 2);
    ok(&callpush(&config, &["dlq", "purge", "--all", "--yes"]));
    assert_eq!(dead::len(&mut w.conn, &p, "dead").await, 0);
}

#[tokio::test]
async fn replayed_dead_letters_are_delivered_by_the_running_daemon() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&w, dir.path());
    w.register("alice", Platform::Fcm, "fcm-token-alice").await;
    let p = w.prefix.clone();
    let now = now_ms();
    let rejected = dead::add(
        &mut w.conn,
        &p,
        &Dead::new("provider_rejected", "alice", "CA10", now - 2_000),
    )
    .await;
    let exhausted = dead::add(
        &mut w.conn,
        &p,
        &Dead::new("retries_exhausted", "alice", "CA11", now - 1_500),
    )
    .await;
    // Rang two minutes ago: its 30 s deadline passed.
    let mut old = Dead::new("expired", "alice", "CA12", now - 1_000);
    old.added_ms = now - 120_000;
    let ended = dead::add(&mut w.conn, &p, &old).await;
    let mut bad = Dead::new("malformed", "", "CA13", now - 500);
    bad.to = None;
    let malformed = dead::add(&mut w.conn, &p, &bad).await;
    let daemon = TestDaemon::start(w.settings.clone());

    // A dry run tells what would happen and changes nothing.
    let before = (
        dead::len(&mut w.conn, &p, "dead").await,
        dead::len(&mut w.conn, &p, "calls").await,
    );
    let dry = ok(&callpush(&config, &["dlq", "replay", "--all", "--dry-run"]));
    assert_eq!(
        dry.trim(),
        "dry run: would have replayed 2 (provider_rejected 1, retries_exhausted 1), \
         skipped 2 (deadline_passed 1, malformed 1), failed 0"
    );
    let after = (
        dead::len(&mut w.conn, &p, "dead").await,
        dead::len(&mut w.conn, &p, "calls").await,
    );
    assert_eq!(before, after, "a dry run changes nothing");

    // By id: the event goes back on the calls stream, is delivered, and its dead letter is gone.
    let one = ok(&callpush(&config, &["dlq", "replay", &rejected]));
    assert!(one.starts_with("replayed 1 (provider_rejected 1)"), "{one}");
    let results = w.results(1).await;
    assert_eq!(results[0]["call_sid"], "CA10");
    assert_eq!(results[0]["outcome"], "delivered");
    let calls = read_all(&mut w.conn, &format!("{p}calls")).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1["replayed_from"], rejected);
    assert_eq!(calls[0].1["ttl_ms"], "30000", "a fresh default ttl");
    assert!(!calls[0].1.contains_key("reason"), "no dead-letter fields");

    // By reason: retries_exhausted only.
    let by_reason: Value = serde_json::from_str(&ok(&callpush(
        &config,
        &["dlq", "replay", "--reason", "retries_exhausted", "--json"],
    )))
    .unwrap();
    assert_eq!(by_reason["replayed"], 1);
    let results = w.results(2).await;
    assert_eq!(results[1]["call_sid"], "CA11");
    assert_eq!(results[1]["outcome"], "delivered");

    // All: the ended call and the malformed entry are skipped, and stay.
    let all: Value = serde_json::from_str(&ok(&callpush(
        &config,
        &["dlq", "replay", "--all", "--json"],
    )))
    .unwrap();
    assert_eq!(all["replayed"], 0);
    assert_eq!(all["skipped"]["deadline_passed"], 1);
    assert_eq!(all["skipped"]["malformed"], 1);
    let (left, _) = dead::streams(&mut w.conn, &p).await;
    assert_eq!(left, [ended.clone(), malformed.clone()]);
    assert!(!left.contains(&exhausted));

    // --force rings the ended call anyway (with a fresh deadline).
    let forced = ok(&callpush(
        &config,
        &["dlq", "replay", &ended, "--force", "--ttl-ms", "20000"],
    ));
    assert!(forced.starts_with("replayed 1"), "{forced}");
    let results = w.results(3).await;
    assert_eq!(results[2]["call_sid"], "CA12");
    assert_eq!(results[2]["outcome"], "delivered");
    assert_eq!(w.fcm.count(), 3);
    let (left, calls) = dead::streams(&mut w.conn, &p).await;
    assert_eq!(left, [malformed]);
    assert_eq!(calls[2]["ttl_ms"], "20000");
    daemon.stop().await;
}

#[tokio::test]
async fn mistakes_get_one_clear_line_and_a_failure_status() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&w, dir.path());
    let p = w.prefix.clone();
    let now = now_ms();
    for i in 0..12 {
        let sid = format!("CA{i}");
        dead::add(
            &mut w.conn,
            &p,
            &Dead::new("retries_exhausted", "alice", &sid, now - 1_000 + i),
        )
        .await;
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["dlq", "show", "1764727200000-0"],
            "no dead letter with id 1764727200000-0",
        ),
        (
            &["dlq", "show", "last-tuesday"],
            "malformed dead-letter id \"last-tuesday\"",
        ),
        (
            &["dlq", "replay", "1764727200000-0"],
            "no dead letter with id",
        ),
        (
            &["dlq", "list", "--since", "yesterday"],
            "--since \"yesterday\"",
        ),
        (
            &["dlq", "replay", "--all", "--until", "soon"],
            "--until \"soon\"",
        ),
        (&["dlq", "replay"], "choose the dead letters"),
        (
            &["dlq", "replay", "--all"],
            "refusing to replay 12 dead letters without --yes",
        ),
        (
            &["dlq", "replay", "--all", "--ttl-ms", "0", "--yes"],
            "ttl_ms 0 is out of range",
        ),
    ];
    for (args, expected) in cases {
        let err = fails(&callpush(&config, args));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(
        dead::len(&mut w.conn, &p, "dead").await,
        12,
        "nothing replayed"
    );
    assert_eq!(dead::len(&mut w.conn, &p, "calls").await, 0);

    let unreachable = dir.path().join("unreachable.toml");
    std::fs::write(&unreachable, "[redis]\nurl = \"redis://127.0.0.1:1\"\n").unwrap();
    let err = fails(&callpush(&unreachable, &["dlq", "list"]));
    assert!(err.contains("redis at redis://127.0.0.1:1"), "{err}");
}
