//! The queue after a crash, a dead consumer, a deleted group or a restarted Redis: what was read comes back, is claimed, or goes on where it left off.

use super::*;

#[tokio::test]
async fn a_restarted_consumer_gets_its_unfinished_entries_back() {
    let f = Fixture::start().await;
    let q = f.grouped("worker-a").await;
    let id1 = q.enqueue(&call("CA1")).await.unwrap();
    let id2 = q.enqueue(&call("CA2")).await.unwrap();
    assert_eq!(q.read_new(10, SHORT_BLOCK).await.unwrap().len(), 2);
    drop(q); // the "crash": read, never finished

    // The second entry is deleted from the stream meanwhile: skipped and acknowledged.
    f.run(redis::cmd("XDEL").arg(&f.keys.calls).arg(&id2)).await;

    let restarted = f.queue("worker-a").await;
    let pending = restarted.read_own_pending("0", 10).await.unwrap();
    assert_eq!(pending, vec![entry(&id1, "CA1")]);
    assert_eq!(f.pending().await, 1);
    assert!(restarted
        .read_new(10, SHORT_BLOCK)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn another_consumer_claims_entries_left_idle() {
    let f = Fixture::start().await;
    let dead = f.grouped("worker-a").await;
    let id1 = dead.enqueue(&call("CA1")).await.unwrap();
    let id2 = dead.enqueue(&call("CA2")).await.unwrap();
    assert_eq!(dead.read_new(10, SHORT_BLOCK).await.unwrap().len(), 2);
    f.run(redis::cmd("XDEL").arg(&f.keys.calls).arg(&id2)).await;

    let alive = f.queue("worker-b").await;
    assert!(
        alive
            .claim_stale(Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "entries idle for less than min_idle stay with their consumer"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let claimed = alive
        .claim_stale(Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!(claimed, vec![entry(&id1, "CA1")]);
    // The deleted entry is acknowledged; the claimed one is now worker-b's.
    assert_eq!(f.pending().await, 1);
    let mine = alive.read_own_pending("0", 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, id1);
}

#[tokio::test]
async fn read_new_recovers_when_the_group_or_stream_is_deleted() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;

    f.destroy_group().await;
    let id = q.enqueue(&call("CA1")).await.unwrap();
    let read = q.read_new(10, SHORT_BLOCK).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, id);

    f.run(redis::cmd("DEL").arg(&f.keys.calls)).await;
    assert!(q.read_new(10, SHORT_BLOCK).await.unwrap().is_empty());
    q.enqueue(&call("CA2")).await.unwrap();
    assert_eq!(q.read_new(10, SHORT_BLOCK).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_group_deleted_under_a_running_daemon_comes_back_where_it_left_off() {
    let f = Fixture::start().await;
    let q = f.grouped("c1").await;
    for n in 0..5 {
        q.enqueue(&call(&format!("CA-old-{n}"))).await.unwrap();
    }
    assert_eq!(q.read_new(10, SHORT_BLOCK).await.unwrap().len(), 5);
    f.destroy_group().await;
    let new: Vec<String> = vec![
        q.enqueue(&call("CA-new-1")).await.unwrap(),
        q.enqueue(&call("CA-new-2")).await.unwrap(),
    ];
    let read: Vec<String> = q
        .read_new(10, SHORT_BLOCK)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        read, new,
        "only what came after the last entry read, not the history"
    );

    // A process that read nothing yet resumes where the group stood when it started.
    let fresh = f.grouped("c2").await;
    f.destroy_group().await;
    let later = q.enqueue(&call("CA-new-3")).await.unwrap();
    let read = fresh.read_new(10, SHORT_BLOCK).await.unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].id, later);
}

#[tokio::test]
async fn the_queue_carries_on_after_redis_restarts() {
    let mut redis = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..RedisOptions::default()
    })
    .await;
    let prefix = unique_prefix();
    let settings = redis.settings(&prefix);
    let keys = Keys::new(&prefix).unwrap();
    let conn = callpush::redis_conn::connect(&settings).await.unwrap();
    let q = queue_on(&settings, conn, keys, options("c1")).await;
    q.ensure_group().await.unwrap();
    let id = q.enqueue(&call("CA1")).await.unwrap();

    redis.restart().await;

    // The first command after the restart may fail while the connections are re-made, as the
    // dispatcher's retry loop expects; within a few seconds the queue works again, data intact.
    let deadline = Instant::now() + Duration::from_secs(10);
    let read = loop {
        match q.read_new(10, SHORT_BLOCK).await {
            Ok(read) => break read,
            Err(e) if Instant::now() < deadline => {
                eprintln!("while Redis restarts: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the queue did not recover: {e}"),
        }
    };
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, id);
}
