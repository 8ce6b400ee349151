//! The APNs provider against the APNs double: what goes over the wire (SPEC §6) and what each of
//! Apple's answers means for the dispatcher.

#[path = "../support/mod.rs"]
mod support;

mod connections;

use std::sync::Arc;
use std::time::Duration;

use callpush::apns::ApnsProvider;
use callpush::domain::{now_ms, CallContent, Push, PushKind};
use callpush::providers::{Failure, Outcome, Provider};
use serde_json::json;
use support::apns_double::{Answer, ApnsDouble, DoubleOptions};
use support::fixtures::numbered_apns_token as device;

const WAIT: Duration = Duration::from_secs(10);

fn call(call_sid: &str) -> CallContent {
    CallContent {
        kind: PushKind::Incoming,
        call_sid: call_sid.into(),
        caller: Some("+15551234567".into()),
        callee: "alice".into(),
        params: Some(r#"{"room":"blue"}"#.into()),
        deadline_ms: now_ms() + 30_000,
        twilio: Vec::new(),
    }
}

fn push(call: CallContent, token: &str) -> Push {
    Push::new(Arc::new(call), token)
}

async fn double_and_provider() -> (ApnsDouble, ApnsProvider) {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let provider = ApnsProvider::new(&apns.credential("CRapns")).expect("provider");
    (apns, provider)
}

fn invalid_token(outcome: Outcome) -> (Failure, u64) {
    match outcome {
        Outcome::InvalidToken {
            failure,
            judged_at_ms,
        } => (failure, judged_at_ms),
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

fn rejected(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Rejected(failure) => failure,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn retry_reason(outcome: &Outcome) -> (&str, Option<Duration>) {
    match outcome {
        Outcome::Retry {
            failure,
            retry_after,
        } => (failure.reason.as_str(), *retry_after),
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn push_carries_exactly_the_voip_headers_and_body() {
    let (apns, provider) = double_and_provider().await;
    let c = call("CA0001");
    let deadline = c.deadline_ms;
    assert_eq!(
        provider.send(&push(c, &device(1))).await,
        Outcome::Delivered
    );

    let got = apns.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.token, device(1));
    assert_eq!(r.status, 200);
    assert!(r.header("authorization").unwrap().starts_with("bearer "));
    let deadline_secs = (deadline / 1000).to_string();
    let mut apns_headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("apns-"))
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    apns_headers.sort();
    assert_eq!(
        apns_headers,
        vec![
            ("apns-collapse-id", "CA0001"),
            ("apns-expiration", deadline_secs.as_str()),
            ("apns-priority", "10"),
            ("apns-push-type", "voip"),
            ("apns-topic", "com.example.app.voip"),
        ]
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.body,
        json!({"aps": {}, "callpush": {"type": "incoming", "call_sid": "CA0001",
            "caller": "+15551234567", "callee": "alice", "params": {"room": "blue"}}})
    );
}

#[tokio::test]
async fn cancel_push_says_cancel_and_follows_send_cancel() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let mut cred = apns.credential("CRapns");
    assert!(!ApnsProvider::new(&cred).unwrap().sends_cancel());
    cred.send_cancel = true;
    let provider = ApnsProvider::new(&cred).unwrap();
    assert!(provider.sends_cancel());
    let mut c = call("CA0002");
    c.kind = PushKind::Cancel;
    c.caller = None;
    c.params = None;
    assert_eq!(
        provider.send(&push(c, &device(2))).await,
        Outcome::Delivered
    );
    assert_eq!(
        apns.requests()[0].body,
        json!({"aps": {}, "callpush": {"type": "cancel", "call_sid": "CA0002", "callee": "alice"}})
    );
}

#[tokio::test]
async fn provider_token_is_signed_once_for_many_pushes() {
    let (apns, provider) = double_and_provider().await;
    for n in 0..50 {
        let outcome = provider.send(&push(call("CA0003"), &device(n))).await;
        assert_eq!(outcome, Outcome::Delivered);
    }
    assert_eq!(apns.distinct_jwts().len(), 1);
}

#[tokio::test]
async fn expired_provider_token_is_resigned_once_and_the_retry_delivers() {
    let (apns, provider) = double_and_provider().await;
    assert_eq!(
        provider.send(&push(call("CA0004"), &device(1))).await,
        Outcome::Delivered
    );
    // Apple judges by `iat` (whole seconds): let a second pass so a fresh token is newer.
    let first_iat_secs = now_ms() / 1000;
    while now_ms() / 1000 == first_iat_secs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    apns.expire_provider_tokens_before(now_ms() / 1000);

    let burst = (0..20).map(|n| {
        let p = push(call("CA0004"), &device(100 + n));
        let provider = &provider;
        async move { provider.send(&p).await }
    });
    let outcomes = futures::future::join_all(burst).await;
    let mut expired = 0;
    for outcome in &outcomes {
        if *outcome != Outcome::Delivered {
            assert_eq!(
                retry_reason(outcome),
                ("ExpiredProviderToken", Some(Duration::ZERO))
            );
            expired += 1;
        }
    }
    assert!(expired >= 1, "the old token was refused at least once");
    assert_eq!(
        provider.send(&push(call("CA0004"), &device(1))).await,
        Outcome::Delivered
    );
    // One token before, one after: the burst of 403s re-signed only once.
    assert_eq!(apns.distinct_jwts().len(), 2);
}

#[tokio::test]
async fn unregistered_token_is_invalid_as_of_apples_timestamp() {
    let (apns, provider) = double_and_provider().await;
    apns.set_unregistered(&device(5), 1_458_114_061_260);
    let outcome = provider.send(&push(call("CA0005"), &device(5))).await;
    let (failure, judged_at_ms) = invalid_token(outcome);
    assert_eq!(failure.reason, "Unregistered");
    assert_eq!(failure.detail, "APNs 410 Unregistered");
    assert_eq!(judged_at_ms, 1_458_114_061_260);
}

#[tokio::test]
async fn bad_device_token_is_invalid_as_of_now() {
    let (_apns, provider) = double_and_provider().await;
    let before = now_ms();
    let outcome = provider.send(&push(call("CA0006"), &"ab".repeat(16))).await;
    let (failure, judged_at_ms) = invalid_token(outcome);
    assert_eq!(failure.reason, "BadDeviceToken");
    assert!(judged_at_ms >= before && judged_at_ms <= now_ms());
}

#[tokio::test]
async fn wrong_topic_is_rejected_with_apples_reason() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let mut cred = apns.credential("CRapns");
    cred.bundle_id = "com.example.other".into();
    let provider = ApnsProvider::new(&cred).unwrap();
    let outcome = provider.send(&push(call("CA0007"), &device(7))).await;
    let failure = rejected(outcome);
    assert_eq!(failure.reason, "TopicDisallowed");
    assert_eq!(failure.detail, "APNs 400 TopicDisallowed");
}

#[tokio::test]
async fn unavailable_is_retried_after_apples_retry_after() {
    let (apns, provider) = double_and_provider().await;
    apns.script(
        &device(8),
        vec![
            Answer::error(503, "ServiceUnavailable").retry_after(3),
            Answer::ok(),
        ],
    );
    let p = push(call("CA0008"), &device(8));
    let first = provider.send(&p).await;
    assert_eq!(
        retry_reason(&first),
        ("ServiceUnavailable", Some(Duration::from_secs(3)))
    );
    assert_eq!(provider.send(&p).await, Outcome::Delivered);
}

#[tokio::test]
async fn long_call_sid_becomes_a_hashed_collapse_id() {
    let (apns, provider) = double_and_provider().await;
    let sid = format!("CA{}", "7".repeat(100));
    assert_eq!(
        provider.send(&push(call(&sid), &device(9))).await,
        Outcome::Delivered
    );
    let r = &apns.requests()[0];
    let collapse = r.header("apns-collapse-id").unwrap();
    assert_eq!(collapse.len(), 64);
    assert!(collapse.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.body["callpush"]["call_sid"], sid.as_str());
}

#[tokio::test]
async fn oversized_payload_is_rejected_without_a_request() {
    let (apns, provider) = double_and_provider().await;
    let mut c = call("CA0010");
    c.params = Some(format!(r#"{{"blob":"{}"}}"#, "x".repeat(6000)).into());
    let outcome = provider.send(&push(c, &device(10))).await;
    let failure = rejected(outcome);
    assert_eq!(failure.reason, "PayloadTooLarge");
    assert_eq!(apns.count(), 0);
}

#[tokio::test]
async fn wrong_key_id_or_team_is_an_invalid_provider_token() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    for (key_id, team_id) in [("KEY0000000", "TEAM123456"), ("KEY1234567", "TEAM000000")] {
        let mut cred = apns.credential("CRapns");
        cred.key_id = key_id.into();
        cred.team_id = team_id.into();
        let provider = ApnsProvider::new(&cred).unwrap();
        let outcome = provider.send(&push(call("CA0016"), &device(16))).await;
        let failure = rejected(outcome);
        assert_eq!(failure.detail, "APNs 403 InvalidProviderToken");
    }
}

#[tokio::test]
async fn unreadable_or_wrong_key_file_names_the_file() {
    let apns = ApnsDouble::start(DoubleOptions::default()).await;
    let mut cred = apns.credential("CRapns");
    cred.key_file = "/nonexistent/AuthKey.p8".into();
    let err = ApnsProvider::new(&cred).unwrap_err();
    assert!(
        matches!(err, callpush::apns::ApnsError::KeyFile { ref path, .. } if path == &cred.key_file)
    );
    // An RSA key is not an APNs key.
    cred.key_file = support::apns_double::fixture("fcm_sa_key.pk8.pem");
    let err = ApnsProvider::new(&cred).unwrap_err();
    assert!(
        matches!(err, callpush::apns::ApnsError::Key { ref path, .. } if path == &cred.key_file)
    );
}
