//! The push ledger in a real redis-server: the claims and the settlements of many calls in one
//! round trip, as the claim and finish stages send them, also after the server forgot its
//! scripts.

mod support;

use callpush::dispatch::ledger::redis::RedisSentLedger;
use callpush::dispatch::ledger::{
    Claim, ClaimCall, ClaimRequest, Holder, SentLedger, Settle, Settlement,
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

#[tokio::test]
async fn settle_many_marks_sent_and_releases_across_calls() {
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    let ledger = RedisSentLedger::new(conn.clone(), Keys::new(&unique_prefix()).unwrap());
    let (a, b) = (holder("1-0"), holder("2-0"));
    let far = callpush::domain::now_ms() + 3_600_000;
    for (call, me) in [("CA1", &a), ("CA2", &b)] {
        let claims = ledger
            .claim(call, me, &[free("x"), free("y")], far)
            .await
            .unwrap();
        assert_eq!(claims, vec![Claim::Fresh, Claim::Fresh]);
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
    ledger.settle_many(&[&one, &two]).await.unwrap();

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
        "x was accepted, y released for a later attempt"
    );
    let ca2 = seen("CA2").await;
    assert_eq!(ca2[1], Claim::Sent, "y of the other call was accepted");
    assert!(
        matches!(&ca2[0], Claim::Held(Some(h)) if h.entry == "2-0"),
        "x of the other call is still held by its attempt: {ca2:?}"
    );
}

#[tokio::test]
async fn claim_many_claims_each_call_on_its_own_and_answers_in_order() {
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    let ledger = RedisSentLedger::new(conn.clone(), Keys::new(&unique_prefix()).unwrap());
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
        .unwrap();
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0], vec![Claim::Fresh, Claim::Fresh]);
    assert!(answers[1].is_empty());
    assert!(
        matches!(&answers[2][..], [Claim::Held(Some(h))] if h.entry == "1-0"),
        "the later attempt sees the first one's claim: {:?}",
        answers[2]
    );
    assert_eq!(
        answers[3],
        vec![Claim::Fresh],
        "another call's x is its own"
    );
}
