use super::*;
use crate::domain::PushKind;

fn holder(consumer: &str, instance: &str, entry: &str) -> Holder {
    Holder {
        consumer: consumer.into(),
        instance: instance.into(),
        entry: entry.into(),
        since_ms: 1_700_000_000_000,
    }
}

fn free(device: &str) -> ClaimRequest<'_> {
    ClaimRequest {
        device,
        take_over: None,
    }
}

#[tokio::test]
async fn a_claim_is_taken_once_until_sent_or_released() {
    let ledger = MemoryLedger::default();
    let a = holder("c1", "i1", "1-0");
    let b = holder("c2", "i2", "2-0");
    let first = ledger
        .claim("CA1", &a, &[free("x"), free("y")], u64::MAX)
        .await
        .unwrap();
    assert_eq!(first, vec![Claim::Fresh, Claim::Fresh]);
    let seen = ledger
        .claim("CA1", &b, &[free("x"), free("y")], u64::MAX)
        .await
        .unwrap();
    assert_eq!(seen, vec![Claim::Held(Some(a.clone())); 2]);
    ledger
        .settle("CA1", &a, &[("x", Settle::Sent), ("y", Settle::Release)])
        .await
        .unwrap();
    let again = ledger
        .claim("CA1", &b, &[free("x"), free("y")], u64::MAX)
        .await
        .unwrap();
    assert_eq!(again, vec![Claim::Sent, Claim::Fresh]);
    let other_call = ledger.claim("CA2", &b, &[free("x")], u64::MAX).await;
    assert_eq!(other_call.unwrap(), vec![Claim::Fresh]);
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_once_and_only_if_unchanged() {
    let ledger = MemoryLedger::default();
    let dead = holder("c1", "i1", "1-0");
    let b = holder("c2", "i2", "1-0");
    let c = holder("c3", "i3", "2-0");
    ledger
        .claim("CA", &dead, &[free("x")], u64::MAX)
        .await
        .unwrap();
    fn take(h: &Holder) -> ClaimRequest<'_> {
        ClaimRequest {
            device: "x",
            take_over: Some(h),
        }
    }
    let won = ledger.claim("CA", &b, &[take(&dead)], u64::MAX).await;
    assert_eq!(won.unwrap(), vec![Claim::Fresh]);
    // A second taker that judged the same dead holder loses: the claim changed.
    let lost = ledger.claim("CA", &c, &[take(&dead)], u64::MAX).await;
    assert_eq!(lost.unwrap(), vec![Claim::Held(Some(b.clone()))]);
    // The dead holder's late release does not free b's claim.
    ledger
        .settle("CA", &dead, &[("x", Settle::Release)])
        .await
        .unwrap();
    let still = ledger.claim("CA", &c, &[free("x")], u64::MAX).await;
    assert_eq!(still.unwrap(), vec![Claim::Held(Some(b))]);
}

#[tokio::test]
async fn expired_calls_are_swept() {
    let ledger = MemoryLedger::default();
    let me = holder("c", "i", "1-0");
    for n in 0..2_000 {
        ledger
            .claim(&format!("CA{n}"), &me, &[free("a")], 1)
            .await
            .unwrap();
    }
    assert!(ledger.calls() < 1_100, "{} calls kept", ledger.calls());
}

#[test]
fn holders_round_trip_even_with_bars_in_the_consumer_name() {
    let h = holder("pod|7", "ab12", "1700000000000-3");
    assert_eq!(Claim::parse(&h.encode()), Claim::Held(Some(h)));
    assert_eq!(
        Claim::parse("sending"),
        Claim::Held(None),
        "a claim of callpush before holders"
    );
    assert_eq!(Claim::parse("sent"), Claim::Sent);
}

#[test]
fn the_values_written_in_pieces_are_the_stored_forms() {
    let h = holder("pod|7", "ab12", "1700000000000-3");
    let mut since = [0; 20];
    assert_eq!(h.encode_parts(&mut since).concat(), h.encode().as_bytes());
    assert_eq!(
        super::sent_value_parts("1-0").concat(),
        super::sent_value("1-0").as_bytes()
    );
}

#[test]
fn liveness_of_a_held_claim() {
    let me = holder("c1", "i1", "5-0");
    let none_in_flight = |_: &str| false;
    let in_flight = |id: &str| id == "4-0";
    let cases = [
        // An earlier attempt of the entry this attempt works on: over.
        (holder("c2", "i2", "5-0"), Liveness::Stale),
        (holder("c1", "i0", "5-0"), Liveness::Stale),
        // An earlier process with this consumer name: it died (or restarted).
        (holder("c1", "i0", "4-0"), Liveness::Stale),
        // Another consumer: ask whether its entry is still pending with it.
        (
            holder("c2", "i2", "4-0"),
            Liveness::IfPendingWith {
                entry: "4-0".into(),
                consumer: "c2".into(),
            },
        ),
    ];
    for (held, want) in cases {
        assert_eq!(liveness(&me, Some(&held), none_in_flight), want, "{held:?}");
    }
    let mine = holder("c1", "i1", "4-0");
    assert_eq!(liveness(&me, Some(&mine), in_flight), Liveness::Live);
    assert_eq!(liveness(&me, Some(&mine), none_in_flight), Liveness::Stale);
    assert_eq!(liveness(&me, None, none_in_flight), Liveness::Live);
}

#[test]
fn device_keys_separate_kinds_and_hide_the_token() {
    let incoming = device_key(PushKind::Incoming, "CR1", "secret-token");
    let cancel = device_key(PushKind::Cancel, "CR1", "secret-token");
    assert_ne!(incoming, cancel);
    assert!(incoming.starts_with("incoming:CR1:"));
    assert!(!incoming.contains("secret-token"));
    assert_eq!(
        incoming,
        device_key(PushKind::Incoming, "CR1", "secret-token")
    );
}

#[test]
fn device_keys_keep_their_stored_form() {
    // Ledgers written by earlier builds hold keys of this form: a rolling upgrade must find them.
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(b"secret-token");
    assert_eq!(
        device_key(PushKind::Cancel, "CR1", "secret-token"),
        format!("cancel:CR1:{}", hex::encode(&digest[..16]))
    );
}

#[tokio::test]
async fn an_ack_counts_once_for_a_device_a_provider_accepted() {
    use super::{sent_value, Acked, MemoryLedger};
    let ledger = MemoryLedger::default();
    let me = Holder {
        consumer: "c1".into(),
        instance: "i-1".into(),
        entry: "1700000000000-0".into(),
        since_ms: 1,
    };
    let now = crate::domain::now_ms();
    let free = [
        ClaimRequest {
            device: "incoming:CR1:aa",
            take_over: None,
        },
        ClaimRequest {
            device: "incoming:CR1:bb",
            take_over: None,
        },
    ];
    ledger.claim("CA1", &me, &free, now + 60_000).await.unwrap();
    ledger
        .settle("CA1", &me, &[("incoming:CR1:aa", Settle::Sent)])
        .await
        .unwrap();
    assert_eq!(
        Claim::parse(&sent_value(&me.entry)),
        Claim::Sent,
        "a sent mark names its entry and still reads as sent"
    );
    let ack = |device: &'static str, record| ledger.ack("CA1", device, now, record);
    assert_eq!(
        ack("incoming:CR1:bb", true).await.unwrap(),
        Acked::NotPushed,
        "still in flight"
    );
    assert_eq!(
        ack("incoming:CR1:cc", true).await.unwrap(),
        Acked::NotPushed
    );
    let first = Acked::First(Some(me.entry.clone()));
    assert_eq!(
        ack("incoming:CR1:aa", false).await.unwrap(),
        first,
        "looking records nothing"
    );
    assert_eq!(ack("incoming:CR1:aa", true).await.unwrap(), first);
    assert_eq!(ack("incoming:CR1:aa", true).await.unwrap(), Acked::Again);
    assert_eq!(
        ledger
            .ack("CA1", "incoming:CR1:aa", now + 61_000, true)
            .await
            .unwrap(),
        Acked::NotPushed,
        "the call is over"
    );
}
