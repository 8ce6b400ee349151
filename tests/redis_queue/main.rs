//! The Redis call queue against a real redis-server: the consumer group, reading, recovering
//! after a crash, claiming from a dead consumer, finishing, and long blocking reads.

#[path = "../support/mod.rs"]
mod support;

mod recovery;

use std::time::{Duration, Instant};

use callpush::event::StreamEntry;
use callpush::ingest::redis::QueueOptions;
use callpush::ingest::{CallQueue, Finish};
use callpush::outcome::{DeadLetter, DeadReason, EventOutcome, EventResult};
use callpush::redis_conn::Keys;
use support::queue::{
    call, dead_letter, delivered, entry, options, queue_on, Fixture, GROUP, SHORT_BLOCK,
};
use support::redis_server::{pause_clients, unique_prefix, RedisOptions, RedisServer, SLOW_ANSWER};

#[tokio::test]
async fn ensure_group_is_idempotent() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;
    q.ensure_group().await.unwrap();
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&f.keys.calls)
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
}

#[tokio::test]
async fn enqueued_events_are_read_with_their_fields_in_order() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;
    let id1 = q.enqueue(&call("CA1")).await.unwrap();
    let id2 = q.enqueue(&call("CA2")).await.unwrap();

    let read = q.read_new(10, SHORT_BLOCK).await.unwrap();
    assert_eq!(read, vec![entry(&id1, "CA1"), entry(&id2, "CA2")]);
    assert!(q.read_new(10, SHORT_BLOCK).await.unwrap().is_empty());
}

#[tokio::test]
async fn finish_writes_the_result_and_the_dead_letter_then_acknowledges() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;
    q.enqueue(&call("CA1")).await.unwrap();
    let entry = q.read_new(10, SHORT_BLOCK).await.unwrap().remove(0);
    assert_eq!(f.pending().await, 1);

    let result = EventResult {
        call_sid: "CA1".into(),
        to: "alice".into(),
        outcome: EventOutcome::DeadLettered,
        devices: 2,
        delivered: 0,
    };
    let dead = dead_letter(DeadReason::RetriesExhausted, "503 ServiceUnavailable", 6);
    q.finish(&entry, &result, Some(&dead)).await.unwrap();

    assert_eq!(f.pending().await, 0);
    let results = f.stream(&f.keys.results).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].field("outcome"), Some("dead_lettered"));
    assert_eq!(results[0].field("call_sid"), Some("CA1"));
    assert_eq!(results[0].field("devices"), Some("2"));
    let dead_letters = f.stream(&f.keys.dead).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].to_pairs(), dead.fields(&entry));
    assert_eq!(dead_letters[0].field("source_id"), Some(entry.id.as_str()));
}

#[tokio::test]
async fn finish_loads_its_script_again_when_redis_forgot_it() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;
    q.enqueue(&call("CA1")).await.unwrap();
    q.enqueue(&call("CA2")).await.unwrap();
    let entries = q.read_new(10, SHORT_BLOCK).await.unwrap();
    q.finish(&entries[0], &delivered("CA1"), None)
        .await
        .unwrap();
    // What a restart or a failover to a replica does to the script cache.
    f.run(redis::cmd("SCRIPT").arg("FLUSH")).await;

    q.finish(&entries[1], &delivered("CA2"), None)
        .await
        .unwrap();

    assert_eq!(f.pending().await, 0);
    let results = f.stream(&f.keys.results).await;
    let sids: Vec<_> = results.iter().map(|r| r.field("call_sid")).collect();
    assert_eq!(sids, [Some("CA1"), Some("CA2")]);
    assert_eq!(results[1].field("delivered"), Some("1"));
}

#[tokio::test]
async fn finish_many_records_each_entry_once_in_one_call() {
    let f = Fixture::start().await;
    let (q, entries) = f.read_calls("c1", &["CA1", "CA2", "CA3"]).await;
    let results: Vec<EventResult> = ["CA1", "CA2", "CA3"].map(delivered).into();
    // CA2 was finished already (another consumer got there first): no second outcome.
    q.finish(&entries[1], &results[1], None).await.unwrap();
    let dead = dead_letter(DeadReason::ProviderRejected, "BadDeviceToken", 1);
    let items = items(&entries, &results, Some((2, &dead)));
    for answer in q.finish_many(&items).await {
        answer.unwrap();
    }

    assert_eq!(f.pending().await, 0);
    assert_eq!(
        result_sids(&f).await,
        vec!["CA2", "CA1", "CA3"],
        "one result per entry"
    );
    let dead_letters = f.stream(&f.keys.dead).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].to_pairs(), dead.fields(&entries[2]));
}

#[tokio::test]
async fn with_results_disabled_finish_only_acknowledges() {
    let f = Fixture::start().await;
    let q = f.queue_with("c1", false).await;
    q.ensure_group().await.unwrap();
    q.enqueue(&call("CA1")).await.unwrap();
    let entry = q.read_new(10, SHORT_BLOCK).await.unwrap().remove(0);
    q.finish(&entry, &delivered("CA1"), None).await.unwrap();
    assert_eq!(f.pending().await, 0);
    assert!(f.stream(&f.keys.results).await.is_empty());
    assert!(f.stream(&f.keys.dead).await.is_empty());
}

#[tokio::test]
async fn a_touch_never_takes_back_an_entry_another_consumer_reclaimed() {
    let f = Fixture::start().await;
    let slow = f.grouped("slow").await;
    let id = slow.enqueue(&call("CA1")).await.unwrap();
    let other = slow.enqueue(&call("CA2")).await.unwrap();
    assert_eq!(slow.read_new(10, SHORT_BLOCK).await.unwrap().len(), 2);
    assert_eq!(
        slow.owners(&[&id, "1-1"]).await.unwrap(),
        vec![Some("slow".into()), None]
    );
    // `slow` was cut off from Redis past the idle time: `fast` reclaims its first entry.
    let fast = f.queue("fast").await;
    f.run(
        redis::cmd("XCLAIM")
            .arg(&f.keys.calls)
            .arg(GROUP)
            .arg("fast")
            .arg(0)
            .arg(&id),
    )
    .await;
    let lost = slow.touch(&[id.clone(), other.clone()]).await.unwrap();
    assert_eq!(lost, 1, "one of the two is no longer slow's");
    assert_eq!(
        fast.owners(&[&id, &other]).await.unwrap(),
        vec![Some("fast".into()), Some("slow".into())]
    );
}

/// Under a burst Redis answers late: the shared connection's pipeline is full and the server
/// busy. The heartbeat must not give up as a short command would (the shared connection waits 3 s
/// for an answer, then fails): it waits for the server, and the entry stays this consumer's.
#[tokio::test]
async fn a_touch_waits_for_a_server_that_answers_late() {
    let f = Fixture::start().await;
    let busy = f.grouped("busy").await;
    let id = busy.enqueue(&call("CA1")).await.unwrap();
    assert_eq!(busy.read_new(10, SHORT_BLOCK).await.unwrap().len(), 1);
    // Redis holds every command for 4 s, as a server swamped by a burst answers late.
    pause_clients(&f.redis.url(), SLOW_ANSWER).await;
    let lost = busy
        .touch(std::slice::from_ref(&id))
        .await
        .expect("the touch waits for the paused server instead of failing");
    assert_eq!(lost, 0, "the entry is still this consumer's");
    // Read more than 4 s ago, but just touched: not idle for another consumer.
    let other = f.queue("other").await;
    let claimed = other.claim_stale(Duration::from_secs(2), 10).await.unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
    assert_eq!(
        other.owners(&[&id]).await.unwrap(),
        vec![Some("busy".into())]
    );
}

#[tokio::test]
async fn a_two_second_blocking_read_is_not_cut_short_by_the_client() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;

    let started = Instant::now();
    let read = q.read_new(10, Duration::from_millis(2_000)).await.unwrap();
    assert!(read.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "the server, not the client, ended the read"
    );

    // An entry added while a read blocks is returned by that read.
    let writer = f.queue("writer").await;
    let add = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.enqueue(&call("CA1")).await.unwrap()
    });
    let read = q.read_new(10, Duration::from_millis(2_000)).await.unwrap();
    let id = add.await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, id);

    // Short commands are not stuck behind a blocking read.
    let q = std::sync::Arc::new(q);
    let reader = {
        let q = q.clone();
        tokio::spawn(async move { q.read_new(10, Duration::from_millis(2_000)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = Instant::now();
    let _ = f.stream(&f.keys.results).await;
    assert!(quick.elapsed() < Duration::from_millis(1_000));
    reader.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_dead_letter_stream_is_capped_at_its_max_len() {
    let f = Fixture::start().await;
    let q = f
        .queue_with_options(QueueOptions {
            results_enabled: false,
            dead_max_len: 100,
            calls_max_len: 10_000,
            ..options("c1")
        })
        .await;
    q.ensure_group().await.unwrap();
    for i in 0..1000 {
        q.enqueue(&call(&format!("CA{i}"))).await.unwrap();
    }
    let entries = q.read_new(1000, SHORT_BLOCK).await.unwrap();
    assert_eq!(entries.len(), 1000);
    let dead = dead_letter(DeadReason::ProviderRejected, "APNs 400 BadTopic", 1);
    for entry in &entries {
        let result = EventResult {
            call_sid: entry.field("call_sid").unwrap().into(),
            to: "alice".into(),
            outcome: EventOutcome::DeadLettered,
            devices: 1,
            delivered: 0,
        };
        q.finish(entry, &result, Some(&dead)).await.unwrap();
    }
    // `MAXLEN ~` trims whole stream nodes (100 entries each by default), so the length stays
    // within a node of the cap instead of growing with every dead letter.
    let len: usize = redis::cmd("XLEN")
        .arg(&f.keys.dead)
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert!((100..=200).contains(&len), "dead letters: {len}");
    // The newest are the ones kept.
    let newest: redis::Value = redis::cmd("XREVRANGE")
        .arg(&f.keys.dead)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut f.conn.clone())
        .await
        .unwrap();
    assert!(format!("{newest:?}").contains("CA999"), "{newest:?}");
}

#[tokio::test]
async fn a_touch_does_not_count_an_entry_finished_meanwhile_as_lost() {
    // The heartbeat takes its list of entries in flight, then touches them; an entry whose
    // outcome was recorded in between is acknowledged, not taken by another consumer.
    let f = Fixture::start().await;
    let q = f.grouped("one").await;
    let done = q.enqueue(&call("CA1")).await.unwrap();
    let working = q.enqueue(&call("CA2")).await.unwrap();
    assert_eq!(q.read_new(10, SHORT_BLOCK).await.unwrap().len(), 2);
    f.run(redis::cmd("XACK").arg(&f.keys.calls).arg(GROUP).arg(&done))
        .await;
    let lost = q.touch(&[done.clone(), working.clone()]).await.unwrap();
    assert_eq!(lost, 0, "finished is not lost");
}

/// The items finishing `entries` with `results`, and the entry at `dead`'s index with its
/// dead letter.
fn items<'a>(
    entries: &'a [StreamEntry],
    results: &'a [EventResult],
    dead: Option<(usize, &'a DeadLetter)>,
) -> Vec<Finish<'a>> {
    entries
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (entry, result))| Finish {
            entry,
            result,
            dead: dead.filter(|(at, _)| *at == i).map(|(_, dead)| dead),
        })
        .collect()
}

/// The call sids of the results stream's entries, in order.
async fn result_sids(f: &Fixture) -> Vec<String> {
    f.stream(&f.keys.results)
        .await
        .iter()
        .map(|e| e.field("call_sid").unwrap().to_string())
        .collect()
}

/// What `finish_many` left of `entries`: every entry either acknowledged with its one result, or
/// still pending with none (never acknowledged without its outcome).
async fn assert_finished_or_untouched(f: &Fixture, sids: &[&str]) {
    let results = result_sids(f).await;
    let pending = f.pending().await as usize;
    assert_eq!(
        results.len() + pending,
        sids.len(),
        "results {results:?} and {pending} pending for {sids:?}"
    );
}

#[tokio::test]
async fn a_full_redis_records_an_outcome_with_its_acknowledgement_or_neither() {
    // `maxmemory` reached: Redis refuses a script's first write that needs memory, and once a
    // script has written lets it go on. Either way no entry may end acknowledged without its
    // result, nor with a result and still pending.
    let f = Fixture::start().await;
    let sids = ["CA1", "CA2", "CA3"];
    let (q, entries) = f.read_calls("c1", &sids).await;
    let results: Vec<EventResult> = sids.map(delivered).into();
    let dead = dead_letter(DeadReason::ProviderRejected, "BadDeviceToken", 1);
    f.run(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"))
        .await;
    // A dead letter first (its write is the script's first), then results alone.
    let answers = q
        .finish_many(&items(&entries, &results, Some((0, &dead))))
        .await;
    f.run(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"))
        .await;
    assert_finished_or_untouched(&f, &sids).await;
    assert_eq!(
        answers.iter().filter(|a| a.is_ok()).count() as i64,
        3 - f.pending().await,
        "an entry is answered recorded exactly when it was acknowledged: {answers:?}"
    );

    // Results alone under a full Redis: acknowledged and recorded, or neither.
    let (q, entries) = f.read_calls("c2", &["CA4", "CA5"]).await;
    let results: Vec<EventResult> = ["CA4", "CA5"].map(delivered).into();
    f.run(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"))
        .await;
    q.finish_many(&items(&entries, &results, None)).await;
    f.run(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"))
        .await;
    assert_finished_or_untouched(&f, &["CA1", "CA2", "CA3", "CA4", "CA5"]).await;
}

#[tokio::test]
async fn a_user_refused_xadd_leaves_entries_pending_not_acknowledged_without_outcome() {
    // The script acknowledges an entry before writing its result: a user allowed XACK but not
    // XADD must be refused before anything is acknowledged.
    let f = Fixture::start().await;
    let sids = ["CA1", "CA2"];
    let (_, entries) = f.read_calls("c1", &sids).await;
    f.run(redis::cmd("ACL").arg(&["SETUSER", "noxadd", "on", ">pw", "~*", "+@all", "-xadd"]))
        .await;
    let settings = callpush::config::RedisSettings {
        url: format!("redis://noxadd:pw@127.0.0.1:{}", f.redis.port()),
        ..f.redis.settings(&f.prefix)
    };
    let conn = callpush::redis_conn::connect(&settings).await.unwrap();
    let q = queue_on(&settings, conn, f.keys.clone(), options("c1")).await;
    let results: Vec<EventResult> = sids.map(delivered).into();
    let answers = q.finish_many(&items(&entries, &results, None)).await;

    assert!(answers.iter().all(|a| a.is_err()), "{answers:?}");
    assert_eq!(f.pending().await, 2, "both entries still pending");
    assert!(f.stream(&f.keys.results).await.is_empty());
}
