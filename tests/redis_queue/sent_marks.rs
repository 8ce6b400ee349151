//! `sent` marks written with the outcomes (standalone Redis): the ledger builds the mark, the
//! queue's `finish.lua` writes it in the step that records the outcome and acknowledges.

use callpush::dispatch::ledger::redis::RedisSentLedger;
use callpush::dispatch::ledger::{Holder, SentLedger, Settle, Settlement, CLAIM_MARGIN_MS};
use callpush::ingest::{CallQueue, Finish};
use callpush::outcome::EventResult;

use super::support::queue::{delivered, Fixture};

fn settlement(call_sid: &str, entry: &str, devices: &[(&str, Settle)]) -> Settlement {
    Settlement {
        call_sid: call_sid.into(),
        me: Holder {
            consumer: "c1".into(),
            instance: "i-1".into(),
            entry: entry.into(),
            since_ms: 1,
        },
        devices: devices
            .iter()
            .map(|(d, how)| (d.to_string(), *how))
            .collect(),
    }
}

#[tokio::test]
async fn only_a_settlement_of_sent_devices_becomes_a_mark() {
    let f = Fixture::start().await;
    let ledger = RedisSentLedger::new(f.conn.clone(), f.keys.clone());
    let mark = ledger
        .sent_mark(&settlement("CA1", "1-0", &[("apns:c:d1", Settle::Sent)]))
        .expect("a mark on one server");
    assert_eq!(mark.key, f.keys.sent("CA1"));
    assert_eq!(mark.devices, ["apns:c:d1"]);
    assert_eq!(mark.value, "sent|1-0");
    assert_eq!(mark.life_ms, CLAIM_MARGIN_MS);
    let mixed = settlement(
        "CA1",
        "1-0",
        &[("apns:c:d1", Settle::Sent), ("apns:c:d2", Settle::Release)],
    );
    assert_eq!(
        ledger.sent_mark(&mixed),
        None,
        "a release stays the ledger's"
    );
    assert_eq!(ledger.sent_mark(&settlement("CA1", "1-0", &[])), None);
}

#[tokio::test]
async fn finish_many_writes_each_mark_with_its_outcome_and_never_leaves_a_hash_forever() {
    let f = Fixture::start().await;
    let sids = ["CA1", "CA2", "CA3", "CA4"];
    let (q, entries) = f.read_calls("c1", &sids).await;
    assert!(q.records_sent_marks(), "one server");
    let ledger = RedisSentLedger::new(f.conn.clone(), f.keys.clone());
    let claim = "sending|1|i-1|x|c1";
    // CA1 and CA4 claimed (their hashes live); CA2's hash expired; CA3's key is not a hash.
    for sid in ["CA1", "CA4"] {
        f.run(redis::cmd("HSET").arg(f.keys.sent(sid)).arg("d").arg(claim))
            .await;
        f.run(redis::cmd("PEXPIRE").arg(f.keys.sent(sid)).arg(600_000))
            .await;
    }
    f.run(redis::cmd("SET").arg(f.keys.sent("CA3")).arg("not a hash"))
        .await;
    let results: Vec<EventResult> = sids.map(delivered).into();
    // CA4 was finished by another consumer first: its mark is still true and written.
    q.finish(&entries[3], &results[3], None).await.unwrap();
    let marks: Vec<_> = sids
        .iter()
        .zip(&entries)
        .map(|(sid, e)| {
            ledger
                .sent_mark(&settlement(sid, &e.id, &[("d", Settle::Sent)]))
                .unwrap()
        })
        .collect();
    let items: Vec<Finish> = entries
        .iter()
        .zip(&results)
        .zip(&marks)
        .map(|((entry, result), mark)| Finish {
            entry,
            result,
            dead: None,
            sent: Some(mark),
        })
        .collect();
    for answer in q.finish_many(&items).await {
        answer.unwrap();
    }

    assert_eq!(f.pending().await, 0, "every entry acknowledged");
    assert_eq!(f.len(&f.keys.results).await, 4, "one outcome per entry");
    let mut conn = f.conn.clone();
    for (sid, entry, longest) in [
        ("CA1", &entries[0], 600_000),
        ("CA2", &entries[1], CLAIM_MARGIN_MS as i64),
        ("CA4", &entries[3], 600_000),
    ] {
        let (stored, ttl): (String, i64) = redis::pipe()
            .hget(f.keys.sent(sid), "d")
            .pttl(f.keys.sent(sid))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, format!("sent|{}", entry.id), "{sid}");
        assert!(
            ttl > 0 && ttl <= longest,
            "{sid}: the hash expires ({ttl} ms)"
        );
    }
    let other: String = redis::cmd("GET")
        .arg(f.keys.sent("CA3"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(other, "not a hash", "a key of another type is left alone");
}
