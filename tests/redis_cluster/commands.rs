//! callpush's own commands and scripts on a real cluster, one store at a time: heartbeat touches
//! wait for masters that answer late, binding scripts keep every key of an identity in one slot,
//! and the ledger claims with plain commands.

use std::time::{Duration, Instant};

use callpush::api;
use callpush::redis_conn::slots::key_slot;
use callpush::redis_conn::Keys;
use http::{Method, StatusCode};
use serde_json::json;

use crate::support::api::{call, token, ADMIN_TOKEN};
use crate::support::cluster_slots::{ask, slot_map_from};
use crate::support::cluster_world::ClusterWorld;
use crate::support::redis_cluster::RedisCluster;
use crate::support::redis_server::{pause_clients, unique_prefix, SLOW_ANSWER};

/// The heartbeat on a cluster: while every master holds its commands for 4 s (as masters
/// swamped by a burst answer late), touching entries of every shard waits for them instead of
/// failing as a short command would after 3 s, and the entries stay this daemon's.
#[tokio::test]
async fn touches_wait_for_masters_that_answer_late() {
    let w = ClusterWorld::start().await;
    let mut settings = w.settings.clone();
    settings.stream.claim_idle_ms = 10_000;
    settings.stream.consumer = Some("busy".into());
    let (queue, _) = callpush::daemon::redis_backends(&settings).await.unwrap();
    queue.ensure_group().await.unwrap();
    w.add_calls("hb", 40).await;
    let read = queue
        .read_new(100, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(read.len(), 40);
    let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
    for url in w.cluster.urls() {
        pause_clients(&url, SLOW_ANSWER).await;
    }
    let lost = queue
        .touch(&ids)
        .await
        .expect("the touch waits for the paused masters instead of failing");
    assert_eq!(lost, 0, "every entry is still this consumer's");
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let owners = queue.owners(&refs).await.unwrap();
    assert!(
        owners.iter().all(|o| o.as_deref() == Some("busy")),
        "{owners:?}"
    );
}

/// Identities whose braces would move or empty the hash tag (docs/security.md, rows I01–I05)
/// register, list and unregister on a real cluster: the binding scripts never meet CROSSSLOT.
#[tokio::test]
async fn identities_with_braces_keep_their_bindings_in_one_slot_on_a_cluster() {
    let w = ClusterWorld::start().await;
    for (i, who) in ["}alice", "}", "al}ice", "{bob", "{}", "a:b*c d"]
        .into_iter()
        .enumerate()
    {
        let body = json!({"platform": "fcm", "device_token": format!("brace-{i}")});
        let public = || api::public_router(w.ctx.clone());
        let reply = call(
            public(),
            Method::POST,
            "/v1/registrations",
            Some(&token(who)),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{who}: {reply:?}");
        let segment =
            percent_encoding::utf8_percent_encode(who, percent_encoding::NON_ALPHANUMERIC);
        let path = format!("/v1/identities/{segment}/bindings");
        let listed = call(
            api::admin_router(w.ctx.clone()),
            Method::GET,
            &path,
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(
            listed.body.as_array().map(Vec::len),
            Some(1),
            "{who}: {listed:?}"
        );
        let reply = call(
            public(),
            Method::DELETE,
            "/v1/registrations",
            Some(&token(who)),
            Some(body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{who}: {reply:?}");
    }
}

#[tokio::test]
async fn the_ledger_claims_with_plain_commands_on_a_cluster() {
    // Each call's ledger hash is in its own slot: the claims of a batch go as one transaction
    // per call, to the masters that own them, and a second attempt sees the first one's claims.
    use callpush::dispatch::ledger::redis::RedisSentLedger;
    use callpush::dispatch::ledger::{Claim, ClaimCall, ClaimRequest, Holder, SentLedger};
    let cluster = RedisCluster::start().await;
    let conn = cluster.client().get_async_connection().await.unwrap();
    let ledger = RedisSentLedger::new(
        callpush::redis_conn::RedisConn::Cluster(conn),
        Keys::new(&unique_prefix()).unwrap(),
    );
    let holder = |entry: &str| Holder {
        consumer: "c1".into(),
        instance: "i-1".into(),
        entry: entry.into(),
        since_ms: 1,
    };
    let (first, second) = (holder("1-0"), holder("2-0"));
    let devices = [
        ClaimRequest {
            device: "x",
            take_over: None,
        },
        ClaimRequest {
            device: "y",
            take_over: None,
        },
    ];
    let far = callpush::domain::now_ms() + 3_600_000;
    let calls = ["CA1", "CA2", "CA3", "CA4", "CA5", "CA6"];
    let batch = |me| -> Vec<ClaimCall> {
        calls
            .iter()
            .map(|call_sid| ClaimCall {
                call_sid,
                me,
                requests: &devices,
                expire_at_ms: far,
            })
            .collect()
    };
    let claims = ledger
        .claim_many(&batch(&first))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(claims
        .iter()
        .all(|c| *c == vec![Claim::Fresh, Claim::Fresh]));
    let again = ledger
        .claim_many(&batch(&second))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(
        again
            .iter()
            .flatten()
            .all(|c| matches!(c, Claim::Held(Some(h)) if h.entry == "1-0")),
        "{again:?}"
    );
    let mut hsetnx = 0;
    let mut evalsha = 0;
    for port in cluster.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut node = client.get_multiplexed_async_connection().await.unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut node)
            .await
            .unwrap();
        let calls_of = |name: &str| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        hsetnx += calls_of("hsetnx");
        evalsha += calls_of("evalsha");
    }
    assert_eq!(hsetnx, 24, "two devices of six calls, twice");
    assert_eq!(evalsha, 0, "no script on Redis 7");
}

/// A resharding while callpush's cluster connection is busy: slot after slot moves to another
/// master (`CLUSTER SETSLOT … NODE`, as `redis-cli --cluster reshard` ends a move) while a
/// burst of reads is in flight on the connection, so the first `MOVED` starts the client's slot
/// refresh with hundreds of requests queued behind it. Every read is answered: at once, or, when
/// the busy machine made it wait past the connection's 3 s, when asked again. With tokio 1.54
/// the connection wedged here for good (Cargo.toml, docs/operations.md "Pinned: tokio 1.53"):
/// every command timed out from the first refresh on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_refresh_under_a_burst_never_wedges_the_connection() {
    const MOVES: usize = 6;
    const BURST: usize = 1_500;
    const ASK_AGAIN_FOR: Duration = Duration::from_secs(30);
    let w = ClusterWorld::start().await;
    let conn = callpush::redis_conn::connect(&w.settings.redis)
        .await
        .unwrap();
    let masters = w.cluster.ports();
    let mut ids = Vec::new();
    for &port in &masters {
        let id = ask(port, &["CLUSTER", "MYID"]).await.expect("CLUSTER MYID");
        ids.push(redis::from_redis_value::<String>(id).unwrap());
    }
    let prefix = &w.settings.redis.key_prefix;
    let keys: Vec<String> = (0..BURST).map(|i| format!("{prefix}reshard-{i}")).collect();
    let get = move |key: String| {
        let mut conn = conn.clone();
        async move {
            let got: Result<Option<String>, _> =
                redis::cmd("GET").arg(&key).query_async(&mut conn).await;
            got.map_err(|e| format!("GET {key}: {e}"))
        }
    };
    // The connection learns the slot map before the first move.
    get(keys[0].clone()).await.unwrap();
    for round in 0..MOVES {
        // An empty slot (its keys are only ever read), moved to the next master.
        let slot = key_slot(&keys[round]);
        let map = slot_map_from(&masters).await.expect("the slot map");
        let from = map.master_of_slot(slot);
        let to_index = (masters.iter().position(|&p| p == from).unwrap() + 1) % masters.len();
        let to = masters[to_index];
        let mut order: Vec<u16> = vec![to, from];
        order.extend(masters.iter().filter(|&&p| p != to && p != from));
        let burst = tokio::spawn({
            let keys = keys.clone();
            let get = get.clone();
            async move { futures::future::join_all(keys.into_iter().map(get)).await }
        });
        for port in order {
            let slot = slot.to_string();
            let moved = ask(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &ids[to_index]]).await;
            assert!(moved.is_some(), "SETSLOT {slot} on {port}");
        }
        let answers = burst.await.unwrap();
        // A read the busy machine did not answer within the connection's 3 s is asked again,
        // as the daemon does, for up to `ASK_AGAIN_FOR`: a slow connection answers then, a
        // wedged one never does.
        let late: Vec<String> = keys
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_err())
            .map(|(k, _)| k.clone())
            .collect();
        let asked_again = Instant::now();
        let mut unanswered = 0;
        for (i, key) in late.iter().enumerate() {
            while get(key.clone()).await.is_err() {
                if asked_again.elapsed() > ASK_AGAIN_FOR {
                    unanswered = late.len() - i;
                    break;
                }
            }
            if unanswered > 0 {
                break;
            }
        }
        eprintln!(
            "round {round}: slot {slot} moved from {from} to {to}; {} of {BURST} reads not \
             answered within 3 s, {} of them answered when asked again ({:.1?})",
            late.len(),
            late.len() - unanswered,
            asked_again.elapsed()
        );
        assert_eq!(
            unanswered,
            0,
            "round {round} (slot {slot} moved from {from} to {to}): {} of {BURST} reads timed \
             out, and the connection still did not answer {ASK_AGAIN_FOR:?} later",
            late.len()
        );
    }
}
