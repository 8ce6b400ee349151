//! Failures of the Redis call queue stay with the entries and shards they belong to, against
//! real redis-servers: a finish the store refuses for one entry records the others, entries a
//! read left with this consumer come back through the reclaim, a shard whose server hangs (its
//! late read handed out once it answers) or whose key is broken does not hold up the other, and idle consumers that hold nothing are deleted while those that
//! hold entries stay.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use callpush::event::StreamEntry;
use callpush::ingest::redis::{QueueOptions, ShardedQueue};
use callpush::ingest::{CallQueue, Finish};
use callpush::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use callpush::redis_conn::slots::shard_of;
use callpush::redis_conn::{connect, Layout};
use callpush::Fate;
use support::queue::{call, consumers, delivered, options, queue_on, Fixture, GROUP, SHORT_BLOCK};
use support::redis_server::{unique_prefix, RedisServer};

fn dead() -> DeadLetter {
    DeadLetter {
        reason: DeadReason::ProviderRejected,
        detail: "APNs 400 BadTopic".into(),
        attempts: 1,
        failed_at_ms: 1_700_000_000_000,
    }
}

fn dead_lettered(sid: &str) -> EventResult {
    EventResult {
        outcome: EventOutcome::DeadLettered,
        ..delivered(sid)
    }
}

/// The finishes of `entries` with `results`, `letter` for those dead-lettered.
fn finishes<'a>(
    entries: &'a [StreamEntry],
    results: &'a [EventResult],
    letter: &'a DeadLetter,
) -> Vec<Finish<'a>> {
    entries
        .iter()
        .zip(results)
        .map(|(entry, result)| Finish {
            entry,
            result,
            dead: (result.outcome == EventOutcome::DeadLettered).then_some(letter),
        })
        .collect()
}

fn sids(entries: &[StreamEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.field("call_sid").unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_dead_letter_the_store_refuses_fails_only_its_entry_and_nothing_is_written_twice() {
    let f = Fixture::start().await;
    let (q, entries) = f.read_calls("c1", &["CA1", "CA2", "CA3"]).await;
    // The dead-letter stream is broken: any dead letter is refused (WRONGTYPE).
    f.run(redis::cmd("SET").arg(&f.keys.dead).arg("not a stream"))
        .await;
    let results = [delivered("CA1"), dead_lettered("CA2"), delivered("CA3")];
    let letter = dead();
    let items = finishes(&entries, &results, &letter);
    let answers = q.finish_many(&items).await;
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    let refused = answers[1].as_ref().unwrap_err();
    assert_eq!(refused.fate(), Fate::Permanent, "{refused}");
    assert!(refused.to_string().contains("WRONGTYPE"), "{refused}");
    assert_eq!(sids(&f.stream(&f.keys.results).await), ["CA1", "CA3"]);
    assert_eq!(f.pending().await, 1, "CA2 stays pending, untouched");

    // Repaired: CA2 gets its one outcome, and CA1 and CA3 are not recorded again.
    f.run(redis::cmd("DEL").arg(&f.keys.dead)).await;
    for answer in q.finish_many(&items).await {
        answer.unwrap();
    }
    assert_eq!(
        sids(&f.stream(&f.keys.results).await),
        ["CA1", "CA3", "CA2"]
    );
    assert_eq!(sids(&f.stream(&f.keys.dead).await), ["CA2"]);
    assert_eq!(f.pending().await, 0);
}

#[tokio::test]
async fn an_entry_the_store_refuses_for_good_is_narrowed_down_and_the_rest_are_recorded() {
    let f = Fixture::start().await;
    let (q, mut entries) = f.read_calls("c1", &["CA1", "CA2"]).await;
    // An id Redis refuses in every command ("ERR Invalid stream ID"), between two good ones.
    entries.insert(1, StreamEntry::from_slice("not-an-id", &call("CA-bad")));
    let results = [delivered("CA1"), dead_lettered("CA-bad"), delivered("CA2")];
    let letter = dead();
    let items = finishes(&entries, &results, &letter);
    let answers = q.finish_many(&items).await;
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert_eq!(
        answers[1].as_ref().unwrap_err().fate(),
        Fate::Permanent,
        "{answers:?}"
    );
    assert_eq!(sids(&f.stream(&f.keys.results).await), ["CA1", "CA2"]);
    assert_eq!(f.pending().await, 0);
}

#[tokio::test]
async fn entries_a_read_left_with_this_consumer_come_back_through_its_own_reclaim() {
    let f = Fixture::start().await;
    // Read and never seen (the read was cut off): pending with c1 itself.
    let (q, _) = f.read_calls("c1", &["CA1"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let back = q.claim_stale(Duration::from_millis(50), 10).await.unwrap();
    assert_eq!(sids(&back), ["CA1"], "XAUTOCLAIM hands c1 its own entry");
}

/// The consumers of the group.
async fn consumers_of(f: &Fixture) -> BTreeSet<String> {
    consumers(&mut f.conn.clone(), &f.keys.calls, GROUP)
        .await
        .into_iter()
        .collect()
}

#[tokio::test]
async fn idle_consumers_holding_nothing_are_deleted_and_those_holding_entries_stay() {
    let f = Fixture::start().await;
    let sweeper = f
        .queue_with_options(QueueOptions {
            consumer_idle_delete: Duration::from_millis(300),
            ..options("sweeper")
        })
        .await;
    sweeper.ensure_group().await.unwrap();
    let holder = f.queue("holder").await;
    let emptied = f.queue("emptied").await;
    holder.enqueue(&call("CA1")).await.unwrap();
    assert_eq!(holder.read_new(10, SHORT_BLOCK).await.unwrap().len(), 1);
    emptied.enqueue(&call("CA2")).await.unwrap();
    let done = emptied.read_new(10, SHORT_BLOCK).await.unwrap().remove(0);
    emptied
        .finish(&done, &delivered("CA2"), None)
        .await
        .unwrap();
    assert_eq!(
        consumers_of(&f).await,
        BTreeSet::from(["emptied".to_string(), "holder".to_string()])
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    // The sweep runs with the reclaim; nothing is idle long enough to be reclaimed here.
    assert!(sweeper
        .claim_stale(Duration::from_secs(3_600), 10)
        .await
        .unwrap()
        .is_empty());
    let left = consumers_of(&f).await;
    assert!(left.contains("holder"), "it holds CA1: {left:?}");
    assert!(!left.contains("emptied"), "idle and empty: {left:?}");
    assert_eq!(f.pending().await, 1, "CA1 is still pending with holder");
}

/// Two shards of one prefix, each on a server of its own, read as one queue by `c1`.
struct TwoServers {
    servers: [RedisServer; 2],
    queue: ShardedQueue,
    /// A callee whose events go to each shard.
    callee: [String; 2],
}

impl TwoServers {
    async fn start() -> TwoServers {
        let servers = [RedisServer::start().await, RedisServer::start().await];
        let prefix = unique_prefix();
        let layout = Layout::new(&prefix, 2, false).unwrap();
        let mut shards = Vec::new();
        for (server, keys) in servers.iter().zip(layout.shards()) {
            let settings = server.settings(&prefix);
            let conn = connect(&settings).await.unwrap();
            shards.push(queue_on(&settings, conn, keys.clone(), options("c1")).await);
        }
        let callee = |shard| {
            (0..)
                .map(|i| format!("user{i}"))
                .find(|to| shard_of(to, 2) == shard)
                .unwrap()
        };
        TwoServers {
            servers,
            queue: ShardedQueue::new(shards),
            callee: [callee(0), callee(1)],
        }
    }

    async fn add(&self, shard: usize, sid: &str) {
        let fields: Vec<(String, String)> = [
            ("type", "incoming"),
            ("to", self.callee[shard].as_str()),
            ("call_sid", sid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.queue.enqueue(&fields).await.unwrap();
    }
}

#[tokio::test]
async fn a_shard_whose_server_hangs_does_not_hold_up_the_other() {
    let two = TwoServers::start().await;
    two.queue.ensure_group().await.unwrap();
    two.add(1, "CA-stuck").await;
    two.add(0, "CA-first").await;
    two.servers[1].pause();

    // The hung shard costs the other one wait of its bound (250 ms), not the hang.
    let started = Instant::now();
    let read = two.queue.read_new(10, SHORT_BLOCK).await.unwrap();
    eprintln!("first read with a hung shard: {:?}", started.elapsed());
    assert_eq!(sids(&read), ["CA-first"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Skipped while it is down: the next event of the healthy shard goes at once.
    two.add(0, "CA-second").await;
    let started = Instant::now();
    let mut second = two.queue.read_new(10, SHORT_BLOCK).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    if second.is_empty() {
        second = two.queue.read_new(10, SHORT_BLOCK).await.unwrap();
    }
    assert_eq!(sids(&second), ["CA-second"]);
    let result = delivered("CA");
    let items: Vec<Finish> = read
        .iter()
        .chain(&second)
        .map(|entry| Finish {
            entry,
            result: &result,
            dead: None,
        })
        .collect();
    let started = Instant::now();
    for answer in two.queue.finish_many(&items).await {
        answer.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Thawed, the hung shard's server answers the read that outlived its bound: that read was
    // kept, not dropped, so CA-stuck is handed out by the next read at once, not stranded
    // until a reclaim.
    two.servers[1].resume();
    let started = Instant::now();
    let back = loop {
        let got = two
            .queue
            .read_new(10, SHORT_BLOCK)
            .await
            .unwrap_or_default();
        if !got.is_empty() || started.elapsed() > Duration::from_secs(15) {
            break got;
        }
    };
    assert_eq!(sids(&back), ["CA-stuck"]);
    assert!(back[0].id.ends_with("@1"), "{}", back[0].id);
}

#[tokio::test]
async fn a_shard_whose_key_is_not_a_stream_is_skipped_until_it_is_fixed() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let layout = Layout::new(&prefix, 2, false).unwrap();
    let settings = redis.settings(&prefix);
    let conn = connect(&settings).await.unwrap();
    let mut shards = Vec::new();
    for keys in layout.shards() {
        shards.push(queue_on(&settings, conn.clone(), keys.clone(), options("c1")).await);
    }
    let queue = ShardedQueue::new(shards);
    let mut test_conn = redis.multiplexed().await;
    let broken = &layout.shards()[1].calls;
    redis::cmd("SET")
        .arg(broken)
        .arg("not a stream")
        .query_async::<()>(&mut test_conn)
        .await
        .unwrap();
    // Shard 1's group cannot be created; shard 0 is consumed all the same.
    queue.ensure_group().await.unwrap();
    let to = |shard: usize| {
        (0..)
            .map(|i| format!("user{i}"))
            .find(|to| shard_of(to, 2) == shard)
            .unwrap()
    };
    let event = |shard, sid: &str| -> Vec<(String, String)> {
        vec![
            ("type".into(), "incoming".into()),
            ("to".into(), to(shard)),
            ("call_sid".into(), sid.into()),
        ]
    };
    queue.enqueue(&event(0, "CA-ok")).await.unwrap();
    assert_eq!(
        sids(&queue.read_new(10, SHORT_BLOCK).await.unwrap()),
        ["CA-ok"]
    );

    // Fixed (the key deleted) and an event added before its group exists: the group is created
    // at the start of the stream when the shard is tried again, so the event is read.
    redis::cmd("DEL")
        .arg(broken)
        .query_async::<()>(&mut test_conn)
        .await
        .unwrap();
    queue.enqueue(&event(1, "CA-later")).await.unwrap();
    let started = Instant::now();
    let mut read = Vec::new();
    while read.is_empty() && started.elapsed() < Duration::from_secs(15) {
        read = queue.read_new(10, SHORT_BLOCK).await.unwrap();
    }
    assert_eq!(sids(&read), ["CA-later"]);
}
