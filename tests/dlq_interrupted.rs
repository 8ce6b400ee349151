//! A bulk `callpush dlq replay` killed with SIGKILL half-way: every dead letter is either
//! replayed (on the calls stream with `replayed_from`, gone from the dead-letter stream) or still
//! dead, never both and never neither, and none is replayed twice.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callpush::domain::now_ms;
use support::dead::{self, Dead};
use support::process::{config_toml, Knobs};
use support::world::World;

#[tokio::test]
async fn a_replay_killed_half_way_loses_and_doubles_nothing() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w, "cli", &Knobs::default())).unwrap();
    let p = w.prefix.clone();
    const N: usize = 5_000;
    let now = now_ms();
    let mut pipe = redis::pipe();
    for i in 0..N {
        let sid = format!("CA{i:05}");
        let mut d = Dead::new("provider_rejected", "nobody", &sid, now - 60_000);
        d.ttl_ms = Some("600000");
        pipe.cmd("XADD")
            .arg(format!("{p}dead"))
            .arg("*")
            .arg(d.fields());
    }
    let _: () = pipe.query_async(&mut w.conn).await.unwrap();
    let (seeded, _) = dead::streams(&mut w.conn, &p).await;
    assert_eq!(seeded.len(), N);

    let mut replay = Command::new(env!("CARGO_BIN_EXE_callpush"))
        .args(["dlq", "replay", "--all", "--yes", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no chance to tidy up) once a few hundred entries moved.
    let until = Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while Instant::now() < until {
        if replay.try_wait().unwrap().is_some() {
            break;
        }
        if dead::len(&mut w.conn, &p, "dead").await <= N - 300 {
            replay.kill().unwrap();
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    replay.wait().unwrap();

    let (dead_ids, calls) = dead::streams(&mut w.conn, &p).await;
    let replayed: Vec<&str> = calls.iter().map(|c| c["replayed_from"].as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    for id in &replayed {
        assert!(seen.insert(*id), "{id} replayed twice");
    }
    let dead_set: std::collections::HashSet<&str> = dead_ids.iter().map(String::as_str).collect();
    for id in &seeded {
        let in_calls = seen.contains(id.as_str());
        let in_dead = dead_set.contains(id.as_str());
        assert!(
            in_calls != in_dead,
            "{id}: in calls {in_calls}, in dead {in_dead}"
        );
    }
    assert_eq!(replayed.len() + dead_ids.len(), N);
    eprintln!(
        "killed: {killed}; replayed {} of {N}, {} still dead",
        replayed.len(),
        dead_ids.len()
    );
}
