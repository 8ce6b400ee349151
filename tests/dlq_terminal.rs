//! `callpush dlq replay` on a terminal (a pseudo-terminal from util-linux `script`): a bulk
//! replay asks first, does nothing on "no", and shows a progress bar and its summary on "yes".

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use callpush::domain::now_ms;
use support::dead::{self, Dead};
use support::process::{config_toml, Knobs};
use support::world::World;

/// Run `callpush <args> --config <config>` on a pseudo-terminal (util-linux `script`), typing
/// `answer`; the exit status and everything the terminal showed.
fn on_a_terminal(config: &Path, args: &str, answer: &str) -> (bool, String) {
    use std::io::{Read, Write};
    let line = format!(
        "{} {args} --config {}",
        env!("CARGO_BIN_EXE_callpush"),
        config.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("CALLPUSH_LOG_FORMAT", "json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    // Keep stdin open until the command is done: an early end of input would answer for us.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).unwrap();
    let mut shown = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut shown)
        .unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    (status.success(), shown)
}

#[tokio::test]
async fn on_a_terminal_a_bulk_replay_asks_first_and_shows_its_progress() {
    let mut w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w, "cli", &Knobs::default())).unwrap();
    let p = w.prefix.clone();
    let now = now_ms();
    for i in 0..12 {
        let sid = format!("CA{i}");
        let d = Dead::new("retries_exhausted", "alice", &sid, now - 1_000 + i);
        dead::add(&mut w.conn, &p, &d).await;
    }

    let (ok, shown) = on_a_terminal(&config, "dlq replay --all", "n\n");
    assert!(!ok, "{shown}");
    assert!(shown.contains("replay 12 dead letters? [y/N]"), "{shown}");
    assert!(shown.contains("replay cancelled"), "{shown}");
    assert_eq!(
        dead::len(&mut w.conn, &p, "dead").await,
        12,
        "nothing replayed"
    );

    let (ok, shown) = on_a_terminal(&config, "dlq replay --all", "y\n");
    assert!(ok, "{shown}");
    assert!(
        shown.contains("[##############################] 12/12"),
        "a progress bar: {shown}"
    );
    assert!(
        shown.contains("replayed 12 (retries_exhausted 12), skipped 0, failed 0"),
        "{shown}"
    );
    assert_eq!(dead::len(&mut w.conn, &p, "dead").await, 0);
    assert_eq!(dead::len(&mut w.conn, &p, "calls").await, 12);
}
