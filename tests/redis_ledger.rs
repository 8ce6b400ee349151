//! The push ledger in a real redis-server: the claims and the settlements of many calls in one
//! round trip, as the claim and finish stages send them, also after the server forgot its
//! scripts.

mod support;

use callpush::dispatch::ledger::redis::RedisSentLedger;
use callpush::dispatch::ledger::{
    Claim, ClaimCall, ClaimRequest, Holder, SentLedger, Settle, Settlement, CLAIM_MARGIN_MS,
};
use callpush::redis_conn::Keys;
use support::redis_server::{unique_prefix, RedisServer};

fn holder(entry: &str) -> Holder {
    Holder {
        consumer: "c1".into(),
        instance: "i-1".into(),
        entry: entry.into(),
        since_ms: 1,
    }
}

fn free(device: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        device,
        take_over: None,
    }
}

/// Every way the ledger talks to Redis: plain commands in transactions (Redis 7.0 and later,
/// the server the tests run) on the daemon's own wire connection and on the client's (a
/// `rediss://` server), and scripts only (what it does on older servers).
async fn both_ledgers(redis: &RedisServer) -> [(&'static str, RedisSentLedger, Keys); 3] {
    let conn = redis.conn().await;
    let wired = callpush::redis_conn::connect(&redis.settings(""))
        .await
        .unwrap();
    assert!(wired.wire().is_some(), "the daemon's connection has a wire");
    let keys = || Keys::new(&unique_prefix()).unwrap();
    let (wire, commands, scripts) = (keys(), keys(), keys());
    [
        ("wire", RedisSentLedger::new(wired, wire.clone()), wire),
        (
            "commands",
            RedisSentLedger::new(conn.clone(), commands.clone()),
            commands,
        ),
        (
            "scripts",
            RedisSentLedger::scripts_only(conn.clone(), scripts.clone()),
            scripts,
        ),
    ]
}

#[tokio::test]
async fn settle_many_marks_sent_and_releases_across_calls() {
    let redis = RedisServer::start().await;
    let conn = redis.conn().await;
    for (way, ledger, _) in both_ledgers(&redis).await {
        settle_many_case(&conn, way, ledger).await;
    }
}

async fn settle_many_case(
    conn: &redis::aio::ConnectionManager,
    way: &str,
    ledger: RedisSentLedger,
) {
    let mut conn = conn.clone();
    let (a, b) = (holder("1-0"), holder("2-0"));
    let far = callpush::domain::now_ms() + 3_600_000;
    for (call, me) in [("CA1", &a), ("CA2", &b)] {
        let claims = ledger
            .claim(call, me, &[free("x"), free("y")], far)
            .await
            .unwrap();
        assert_eq!(claims, vec![Claim::Fresh, Claim::Fresh], "{way}");
    }
    // A restart or SCRIPT FLUSH: the pipelined settle scripts are loaded again.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let one = Settlement {
        call_sid: "CA1".into(),
        me: a,
        devices: vec![("x".into(), Settle::Sent), ("y".into(), Settle::Release)],
    };
    let two = Settlement {
        call_sid: "CA2".into(),
        me: b,
        devices: vec![("y".into(), Settle::Sent)],
    };
    ledger
        .settle_many(&[&one, &two])
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .unwrap();

    let later = holder("3-0");
    let seen = |call: &'static str| {
        let ledger = &ledger;
        let later = &later;
        async move {
            ledger
                .claim(call, later, &[free("x"), free("y")], far)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        seen("CA1").await,
        vec![Claim::Sent, Claim::Fresh],
        "{way}: x was accepted, y released for a later attempt"
    );
    let ca2 = seen("CA2").await;
    assert_eq!(
        ca2[1],
        Claim::Sent,
        "{way}: y of the other call was accepted"
    );
    assert!(
        matches!(&ca2[0], Claim::Held(Some(h)) if h.entry == "2-0"),
        "{way}: x of the other call is still held by its attempt: {ca2:?}"
    );
}

#[tokio::test]
async fn claim_many_claims_each_call_on_its_own_and_answers_in_order() {
    let redis = RedisServer::start().await;
    let conn = redis.conn().await;
    for (way, ledger, _) in both_ledgers(&redis).await {
        claim_many_case(&conn, way, ledger).await;
    }
}

async fn claim_many_case(conn: &redis::aio::ConnectionManager, way: &str, ledger: RedisSentLedger) {
    let mut conn = conn.clone();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let far = callpush::domain::now_ms() + 3_600_000;
    let (first, second, third) = (holder("1-0"), holder("2-0"), holder("3-0"));
    // The server forgot its scripts: the pipelined claims are loaded and sent again.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let both = [free("x"), free("y")];
    let only_x = [free("x")];
    let answers = ledger
        .claim_many(&[
            ClaimCall {
                call_sid: "CA1",
                me: &first,
                requests: &both,
                expire_at_ms: far,
            },
            ClaimCall {
                call_sid: "CA2",
                me: &second,
                requests: &[],
                expire_at_ms: far,
            },
            // A second attempt of CA1 in the same batch: x is held by the first.
            ClaimCall {
                call_sid: "CA1",
                me: &third,
                requests: &only_x,
                expire_at_ms: far,
            },
            ClaimCall {
                call_sid: "CA3",
                me: &second,
                requests: &only_x,
                expire_at_ms: far,
            },
        ])
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(answers.len(), 4, "{way}");
    assert_eq!(answers[0], vec![Claim::Fresh, Claim::Fresh], "{way}");
    assert!(answers[1].is_empty(), "{way}");
    assert!(
        matches!(&answers[2][..], [Claim::Held(Some(h))] if h.entry == "1-0"),
        "{way}: the later attempt sees the first one's claim: {:?}",
        answers[2]
    );
    assert_eq!(
        answers[3],
        vec![Claim::Fresh],
        "{way}: another call's x is its own"
    );
    // The server is Redis 7: the ledger that may use plain commands does, the other never.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used_commands = stats.contains("cmdstat_hsetnx:");
    assert_eq!(used_commands, way != "scripts", "{way}: {stats}");
}

#[tokio::test]
async fn a_call_s_claims_only_ever_live_longer_and_never_forever() {
    // A later event of the call with a nearer deadline must not cut short the claims of an
    // earlier one; a `sent` mark after the hash expired must not leave a hash that never
    // expires.
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    for (way, ledger, keys) in both_ledgers(&redis).await {
        let now = callpush::domain::now_ms();
        let (first, second) = (holder("1-0"), holder("2-0"));
        let far = [free("x")];
        let near = [free("y")];
        ledger
            .claim_many(&[ClaimCall {
                call_sid: "CA1",
                me: &first,
                requests: &far,
                expire_at_ms: now + 3_600_000,
            }])
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        ledger
            .claim_many(&[ClaimCall {
                call_sid: "CA1",
                me: &second,
                requests: &near,
                expire_at_ms: now + 60_000,
            }])
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.sent("CA1"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 3_000_000,
            "{way}: the longer life stays, {ttl} ms left"
        );
        // The other way round: a later event with a later deadline lengthens the call's life,
        // and gets its claim.
        for (me, requests, expire_at_ms) in [
            (&first, &near, now + 60_000),
            (&second, &far, now + 3_600_000),
        ] {
            let claims = ledger
                .claim_many(&[ClaimCall {
                    call_sid: "CA2",
                    me,
                    requests,
                    expire_at_ms,
                }])
                .await
                .pop()
                .unwrap()
                .unwrap();
            assert_eq!(claims, vec![Claim::Fresh], "{way}");
        }
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.sent("CA2"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 3_000_000, "{way}: lengthened, {ttl} ms left");

        let gone = Settlement {
            call_sid: "CA-expired".into(),
            me: first.clone(),
            devices: vec![("x".into(), Settle::Sent)],
        };
        ledger
            .settle_many(&[&gone])
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.sent("CA-expired"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl == -2 || (ttl > 0 && ttl <= CLAIM_MARGIN_MS as i64),
            "{way}: a late sent mark leaves no hash or one that expires, PTTL {ttl}"
        );
    }
}

#[tokio::test]
async fn when_the_plain_commands_are_refused_the_scripts_do_the_work() {
    // What a failover to a server that cannot run the plain commands looks like (here: a user
    // the server refuses MULTI and HSETNX): every claim and mark still lands, through the
    // scripts, and the ledger keeps trying the plain commands later.
    let redis = RedisServer::start().await;
    let mut admin = redis.conn().await;
    redis::cmd("ACL")
        .arg(&[
            "SETUSER", "limited", "on", ">pw", "~*", "+@all", "-multi", "-hsetnx",
        ])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://limited:pw@127.0.0.1:{}", redis.port());
    let limited = redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .unwrap();
    let settings = callpush::config::RedisSettings {
        url,
        ..redis.settings("")
    };
    let wired = callpush::redis_conn::connect(&settings).await.unwrap();
    for (way, conn) in [("wire", wired), ("commands", limited.into())] {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        let ledger = RedisSentLedger::new(conn, Keys::new(&unique_prefix()).unwrap());
        refused_case(&mut admin, way, ledger).await;
    }
}

async fn refused_case(
    admin: &mut redis::aio::ConnectionManager,
    way: &str,
    ledger: RedisSentLedger,
) {
    let (first, later) = (holder("1-0"), holder("2-0"));
    let far = callpush::domain::now_ms() + 3_600_000;
    let both = [free("x"), free("y")];
    let call = |me| ClaimCall {
        call_sid: "CA1",
        me,
        requests: &both,
        expire_at_ms: far,
    };
    let claims = ledger
        .claim_many(&[call(&first)])
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(claims, vec![vec![Claim::Fresh, Claim::Fresh]], "{way}");
    let sent = Settlement {
        call_sid: "CA1".into(),
        me: first.clone(),
        devices: vec![("x".into(), Settle::Sent), ("y".into(), Settle::Sent)],
    };
    ledger
        .settle_many(&[&sent])
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .unwrap();
    let again = ledger
        .claim_many(&[call(&later)])
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(again, vec![vec![Claim::Sent, Claim::Sent]], "{way}");

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .unwrap();
    let rejected = |name: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| {
                l.split("rejected_calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert!(
        rejected("hsetnx") >= 2 && rejected("multi") >= 3,
        "{way}: the plain commands were tried each time: {stats}"
    );
    assert!(stats.contains("cmdstat_evalsha:"), "{way}: {stats}");
}

#[tokio::test]
async fn marks_of_many_calls_share_a_round_trip_and_one_refused_fails_alone() {
    // The finish stage marks the devices of many single-device events at once. A call whose
    // ledger key holds something else (written by hand, another program) is refused; the
    // other calls of the batch are marked all the same.
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    for (way, ledger, keys) in both_ledgers(&redis).await {
        let far = callpush::domain::now_ms() + 3_600_000;
        let calls = ["CA1", "CA2", "CA3"];
        let holders = three_holders();
        for (call, me) in calls.iter().zip(&holders) {
            let claims = ledger.claim(call, me, &[free("x")], far).await.unwrap();
            assert_eq!(claims, vec![Claim::Fresh], "{way}");
        }
        spoil(&mut conn, &keys, "CA2").await;
        let settlements: Vec<Settlement> = calls
            .iter()
            .zip(&holders)
            .map(|(call, me)| Settlement {
                call_sid: (*call).into(),
                me: me.clone(),
                devices: vec![("x".into(), Settle::Sent)],
            })
            .collect();
        let answers = ledger
            .settle_many(&settlements.iter().collect::<Vec<_>>())
            .await;
        assert!(answers[0].is_ok(), "{way}: {answers:?}");
        assert!(answers[1].is_err(), "{way}: {answers:?}");
        assert!(answers[2].is_ok(), "{way}: {answers:?}");
        let later = holder("4-0");
        for call in ["CA1", "CA3"] {
            let seen = ledger.claim(call, &later, &[free("x")], far).await.unwrap();
            assert_eq!(seen, vec![Claim::Sent], "{way}: {call} was marked");
        }
    }
}

#[tokio::test]
async fn claims_of_many_calls_share_a_round_trip_and_one_refused_fails_alone() {
    // The claim stage claims the devices of many events at once. A call whose ledger key holds
    // something else is refused; the other calls of the batch claim their devices all the same.
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    for (way, ledger, keys) in both_ledgers(&redis).await {
        let far = callpush::domain::now_ms() + 3_600_000;
        spoil(&mut conn, &keys, "CA2").await;
        let holders = three_holders();
        let requests = [free("x"), free("y")];
        let calls: Vec<ClaimCall> = ["CA1", "CA2", "CA3"]
            .into_iter()
            .zip(&holders)
            .map(|(call_sid, me)| ClaimCall {
                call_sid,
                me,
                requests: &requests,
                expire_at_ms: far,
            })
            .collect();
        let answers = ledger.claim_many(&calls).await;
        assert_eq!(
            answers[0].as_ref().ok(),
            Some(&vec![Claim::Fresh, Claim::Fresh]),
            "{way}: {answers:?}"
        );
        assert!(answers[1].is_err(), "{way}: {answers:?}");
        assert_eq!(
            answers[2].as_ref().ok(),
            Some(&vec![Claim::Fresh, Claim::Fresh]),
            "{way}: {answers:?}"
        );
        // The claims were made: another attempt finds them held by their own attempts.
        let later = holder("4-0");
        let seen = ledger
            .claim("CA3", &later, &[free("x")], far)
            .await
            .unwrap();
        assert!(
            matches!(&seen[0], Claim::Held(Some(h)) if h.entry == "3-0"),
            "{way}: {seen:?}"
        );
    }
}

/// Put a string where the ledger hash of `call_sid` goes (written by hand, another program).
async fn spoil(conn: &mut redis::aio::ConnectionManager, keys: &Keys, call_sid: &str) {
    redis::cmd("SET")
        .arg(keys.sent(call_sid))
        .arg("not a ledger hash")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// The attempts of three calls' entries.
fn three_holders() -> Vec<Holder> {
    ["1-0", "2-0", "3-0"].into_iter().map(holder).collect()
}
