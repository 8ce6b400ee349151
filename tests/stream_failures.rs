//! The daemon against a calls stream that misbehaves (issue #21): a shard whose key is not a
//! stream, a shard whose consumer group is deleted, poison entries a call server can add (4,100
//! fields, 100,000 fields, a 10 MB value, names that are not UTF-8), also left pending by a
//! crashed daemon, and the consumers earlier daemons leave in the group. Each test asserts what a
//! call server notices: the outcome of every entry, and that the calls after a broken one ring
//! at once.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callpush::domain::Platform;
use callpush::redis_conn::slots::shard_of;
use callpush::redis_conn::{Keys, Layout};
use redis::aio::MultiplexedConnection;
use support::daemon::{read_all, TestDaemon};
use support::fixtures::apns_token;
use support::queue::consumers;
use support::world::{World, WAIT};

/// How soon a call added right after a broken entry (or beside a broken shard) must ring, as the
/// issue asks (a debug build took up to 0.15 s, after the 100,000-field entry).
const RINGS_WITHIN: Duration = Duration::from_secs(1);

/// XADD `fields` (names and values as raw bytes) to `key`; the entry's id.
async fn add(conn: &mut MultiplexedConnection, key: &str, fields: &[(&[u8], &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(conn).await.expect("XADD")
}

/// A call to `to` with call sid `sid`, on the calls stream of `keys`.
async fn add_call(conn: &mut MultiplexedConnection, keys: &Keys, to: &str, sid: &str) -> String {
    let fields: [(&[u8], &[u8]); 3] = [
        (b"type", b"incoming"),
        (b"to", to.as_bytes()),
        (b"call_sid", sid.as_bytes()),
    ];
    add(conn, &keys.calls, &fields).await
}

/// Wait until the results stream of `keys` holds the outcome of `sid`; its id and fields.
async fn outcome_of(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    sid: &str,
) -> (String, HashMap<String, String>) {
    let started = Instant::now();
    loop {
        let results = read_all(conn, &keys.results).await;
        if let Some(found) = results.into_iter().find(|(_, r)| r["call_sid"] == sid) {
            return found;
        }
        assert!(started.elapsed() < WAIT, "no outcome for {sid}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The time between adding an entry (`added`) and recording its outcome (`recorded`): both are
/// stream ids, stamped by the server's clock.
fn took(added: &str, recorded: &str) -> Duration {
    let ms = |id: &str| id.split('-').next().unwrap().parse::<u64>().unwrap();
    Duration::from_millis(ms(recorded).saturating_sub(ms(added)))
}

/// Assert that `sid`, added as `added`, was delivered within [`RINGS_WITHIN`].
async fn assert_rings(conn: &mut MultiplexedConnection, keys: &Keys, sid: &str, added: &str) {
    let (id, result) = outcome_of(conn, keys, sid).await;
    assert_eq!(result["outcome"], "delivered", "{sid}: {result:?}");
    let took = took(added, &id);
    eprintln!("{sid} rang {took:?} after it was added");
    assert!(took < RINGS_WITHIN, "{sid} rang only after {took:?}");
}

/// A world with `shards` calls streams, alice (an APNs device) and the name of a callee on each
/// shard, registered too.
async fn sharded_world(shards: u32) -> (World, Layout, Vec<String>) {
    let w = World::with(|s| {
        s.stream.shards = shards;
        s.limits.calls_per_identity_per_min = 0;
    })
    .await;
    let layout = Layout::new(&w.prefix, shards, false).unwrap();
    let callees: Vec<String> = (0..shards as usize)
        .map(|shard| {
            (0..)
                .map(|i| format!("user{i}"))
                .find(|to| shard_of(to, shards) == shard)
                .unwrap()
        })
        .collect();
    for (i, callee) in callees.iter().enumerate() {
        w.register(callee, Platform::Apns, &apns_token(i as u8 + 1))
            .await;
    }
    (w, layout, callees)
}

#[tokio::test]
async fn a_shard_whose_key_is_not_a_stream_does_not_keep_the_other_from_ringing() {
    let (mut w, layout, callees) = sharded_world(2).await;
    let [good, broken] = [&layout.shards()[0], &layout.shards()[1]];
    redis::cmd("SET")
        .arg(&broken.calls)
        .arg("not a stream")
        .query_async::<()>(&mut w.conn)
        .await
        .unwrap();
    let daemon = w.start_daemon();
    for k in 0..3 {
        let sid = format!("CA-good-{k}");
        let added = add_call(&mut w.conn, good, &callees[0], &sid).await;
        assert_rings(&mut w.conn, good, &sid, &added).await;
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_shard_whose_group_is_deleted_comes_back_and_the_other_rings_meanwhile() {
    let (mut w, layout, callees) = sharded_world(2).await;
    let shards = layout.shards();
    let daemon = w.start_daemon();
    let added = add_call(&mut w.conn, &shards[1], &callees[1], "CA-before").await;
    assert_rings(&mut w.conn, &shards[1], "CA-before", &added).await;
    redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&shards[1].calls)
        .arg(&w.settings.stream.group)
        .query_async::<()>(&mut w.conn)
        .await
        .unwrap();
    let good = add_call(&mut w.conn, &shards[0], &callees[0], "CA-good").await;
    let lost = add_call(&mut w.conn, &shards[1], &callees[1], "CA-after").await;
    assert_rings(&mut w.conn, &shards[0], "CA-good", &good).await;
    // The group is created again after the newest entry the daemon read: the call added after
    // the deletion rings too.
    let (_, result) = outcome_of(&mut w.conn, &shards[1], "CA-after").await;
    assert_eq!(result["outcome"], "delivered", "{lost}: {result:?}");
    daemon.stop().await;
}

/// One poison entry: what it is, its fields, and what its dead letter's `truncated` says.
type Poison = (&'static str, Vec<(Vec<u8>, Vec<u8>)>, Option<&'static str>);

/// Entries a call server can add that once held the stream up, each a malformed call to alice
/// (no `call_sid`, or one that is not UTF-8) naming itself in `x_poison`.
fn poison() -> Vec<Poison> {
    let base = |what: &str, extra: Vec<(Vec<u8>, Vec<u8>)>| {
        let mut fields = vec![
            (b"type".to_vec(), b"incoming".to_vec()),
            (b"to".to_vec(), b"alice".to_vec()),
            (b"x_poison".to_vec(), what.as_bytes().to_vec()),
        ];
        fields.extend(extra);
        fields
    };
    let many = |n: usize| {
        (0..n)
            .map(|i| (format!("f{i}").into_bytes(), b"junk".to_vec()))
            .collect::<Vec<_>>()
    };
    let poison = |what: &'static str, extra, note| (what, base(what, extra), note);
    vec![
        poison("4,100 fields", many(4_097), Some("kept 256 of 4100 fields")),
        poison(
            "100,000 fields",
            many(99_997),
            Some("kept 256 of 100000 fields"),
        ),
        poison(
            "a 10 MB value",
            vec![(b"blob".to_vec(), vec![b'x'; 10 * 1024 * 1024])],
            Some("cut to 8192 bytes: blob"),
        ),
        poison(
            "names that are not UTF-8",
            vec![
                (b"\xff\xfe".to_vec(), b"\xc3\x28".to_vec()),
                (b"call_sid".to_vec(), b"CA\xff".to_vec()),
            ],
            None,
        ),
    ]
}

/// Add `poison` to the calls stream.
async fn add_poison(w: &mut World, poison: &Poison) {
    let fields: Vec<(&[u8], &[u8])> = poison
        .1
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let key = w.keys.calls.clone();
    add(&mut w.conn, &key, &fields).await;
}

/// Every poison entry ended with a `malformed` outcome and a dead letter saying what it left
/// out, and nothing is left pending.
async fn assert_poison_dead_lettered(w: &mut World) {
    let dead = w.dead(poison().len()).await;
    for (what, _, note) in poison() {
        let letter = dead
            .iter()
            .find(|d| d.get("x_poison").map(String::as_str) == Some(what))
            .unwrap_or_else(|| panic!("no dead letter for {what}: {dead:?}"));
        assert_eq!(letter["reason"], "malformed", "{what}: {letter:?}");
        assert_eq!(letter["to"], "alice", "{what}");
        match note {
            Some(note) => assert!(letter["truncated"].contains(note), "{what}: {letter:?}"),
            None => assert!(!letter.contains_key("truncated"), "{what}: {letter:?}"),
        }
        if what == "names that are not UTF-8" {
            // Kept as U+FFFD, the way the daemon read them.
            assert_eq!(letter["\u{FFFD}\u{FFFD}"], "\u{FFFD}(");
            assert_eq!(letter["call_sid"], "CA\u{FFFD}");
        }
    }
    let results = read_all(&mut w.conn, &w.keys.results.clone()).await;
    let malformed = results
        .iter()
        .filter(|(_, r)| r["outcome"] == "malformed")
        .count();
    assert_eq!(malformed, poison().len(), "one outcome per poison entry");
    assert_eq!(w.pending().await, 0);
}

#[tokio::test]
async fn poison_entries_end_with_a_dead_letter_and_the_calls_after_them_ring() {
    let mut w = World::with(|s| s.limits.calls_per_identity_per_min = 0).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    let keys = w.keys.clone();
    let daemon = w.start_daemon();
    for (k, poison) in poison().iter().enumerate() {
        add_poison(&mut w, poison).await;
        let sid = format!("CA-after-{k}");
        let added = add_call(&mut w.conn, &keys, "alice", &sid).await;
        eprintln!("after {}:", poison.0);
        assert_rings(&mut w.conn, &keys, &sid, &added).await;
    }
    assert_poison_dead_lettered(&mut w).await;
    daemon.stop().await;
}

#[tokio::test]
async fn poison_entries_a_crashed_daemon_left_pending_end_and_hold_nothing_up() {
    let mut w = World::with(|s| s.limits.calls_per_identity_per_min = 0).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    let keys = w.keys.clone();
    let group = w.settings.stream.group.clone();
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.calls)
        .arg(&group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut w.conn)
        .await
        .unwrap();
    for poison in poison() {
        add_poison(&mut w, &poison).await;
    }
    // A daemon read them and died: they are pending with its consumer, and once idle for
    // `stream.claim_idle_ms` the next daemon reclaims them as it starts.
    redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("crashed")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(&keys.calls)
        .arg(">")
        .query_async::<redis::Value>(&mut w.conn)
        .await
        .unwrap();
    assert_eq!(w.pending().await, poison().len());
    let claim_idle = Duration::from_millis(w.settings.stream.claim_idle_ms);
    tokio::time::sleep(claim_idle + Duration::from_millis(200)).await;
    let daemon = w.start_daemon();
    for k in 0..3 {
        let sid = format!("CA-meanwhile-{k}");
        let added = add_call(&mut w.conn, &keys, "alice", &sid).await;
        assert_rings(&mut w.conn, &keys, &sid, &added).await;
    }
    assert_poison_dead_lettered(&mut w).await;
    daemon.stop().await;
}

/// The consumers of the daemons' group.
async fn consumers_of(w: &mut World) -> Vec<String> {
    let (key, group) = (w.keys.calls.clone(), w.settings.stream.group.clone());
    consumers(&mut w.conn, &key, &group).await
}

#[tokio::test]
async fn a_restarted_daemons_old_consumer_is_deleted_once_empty_and_idle() {
    let mut w = World::with(|s| s.stream.consumer_idle_delete_ms = Some(2_000)).await;
    w.register("alice", Platform::Apns, &apns_token(1)).await;
    let mut first = w.settings.clone();
    first.stream.consumer = Some("first".into());
    let daemon = TestDaemon::start(first);
    let keys = w.keys.clone();
    let added = add_call(&mut w.conn, &keys, "alice", "CA1").await;
    assert_rings(&mut w.conn, &keys, "CA1", &added).await;
    daemon.stop().await;
    assert!(consumers_of(&mut w).await.contains(&"first".to_string()));

    let mut second = w.settings.clone();
    second.stream.consumer = Some("second".into());
    let daemon = TestDaemon::start(second);
    let started = Instant::now();
    let mut left = consumers_of(&mut w).await;
    while left.contains(&"first".to_string()) && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = consumers_of(&mut w).await;
    }
    assert_eq!(
        left,
        ["second"],
        "the old consumer is gone, the running one stays"
    );
    daemon.stop().await;
}
