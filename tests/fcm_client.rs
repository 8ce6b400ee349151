//! The FCM provider against the FCM double: what reaches FCM, and what each of FCM's answers
//! means for the dispatcher.

mod support;

use std::sync::Arc;
use std::time::Duration;

use callpush::domain::{now_ms, PushKind};
use callpush::fcm::FcmProvider;
use callpush::providers::{Outcome, Provider};
use serde_json::json;
use support::fcm_double::{
    incoming_push, start_with_provider, Answer, FcmDouble, FcmDoubleOptions,
};

#[tokio::test]
async fn sends_the_spec_message_with_a_bearer_token() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    assert_eq!(
        s.provider.send(&incoming_push("dev-token:abc_123")).await,
        Outcome::Delivered
    );

    let requests = s.fcm.requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    let ttl = body["message"]["android"]["ttl"]
        .as_str()
        .unwrap()
        .to_string();
    let secs: u64 = ttl.trim_end_matches('s').parse().unwrap();
    assert!(
        (25..=30).contains(&secs),
        "ttl {ttl} is the time left until the deadline"
    );
    assert_eq!(
        body,
        &json!({"message": {
            "token": "dev-token:abc_123",
            "data": {
                "type": "incoming",
                "call_sid": "CA0123456789abcdef",
                "caller": "+15551234567",
                "callee": "alice",
                "params": "{\"display\":\"Bob\",\"room\":\"42\"}",
            },
            "android": {"priority": "HIGH", "ttl": ttl},
        }})
    );
    assert!(requests[0].bearer.as_deref().unwrap().starts_with("ya29."));
    assert!(s.provider.sends_cancel());
}

#[tokio::test]
async fn cancel_pushes_reach_the_device() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    let mut push = incoming_push("dev-token");
    let mut call = (*push.call).clone();
    call.kind = PushKind::Cancel;
    call.caller = None;
    call.params = None;
    push.call = Arc::new(call);
    assert_eq!(s.provider.send(&push).await, Outcome::Delivered);
    let data = &s.fcm.requests()[0].body["message"]["data"];
    assert_eq!(
        data,
        &json!({"type": "cancel", "call_sid": "CA0123456789abcdef", "callee": "alice"})
    );
}

fn assert_invalid_token(outcome: Outcome, reason: &str, sent_between: (u64, u64)) {
    match outcome {
        Outcome::InvalidToken {
            failure,
            judged_at_ms,
        } => {
            assert_eq!(failure.reason, reason);
            assert!(judged_at_ms >= sent_between.0 && judged_at_ms <= sent_between.1);
        }
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[tokio::test]
async fn unregistered_tokens_are_invalid() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    s.fcm.set_unregistered("uninstalled");
    let before = now_ms();
    let outcome = s.provider.send(&incoming_push("uninstalled")).await;
    match &outcome {
        Outcome::InvalidToken { failure, .. } => {
            assert_eq!(
                failure.detail,
                "FCM 404 UNREGISTERED: Requested entity was not found."
            )
        }
        other => panic!("expected InvalidToken, got {other:?}"),
    }
    assert_invalid_token(outcome, "UNREGISTERED", (before, now_ms()));
}

#[tokio::test]
async fn a_malformed_token_is_invalid() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    let before = now_ms();
    let outcome = s.provider.send(&incoming_push("not a token!")).await;
    assert_invalid_token(outcome, "INVALID_ARGUMENT", (before, now_ms()));
}

#[tokio::test]
async fn a_token_of_another_project_is_invalid() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    s.fcm
        .script("other-app", vec![Answer::sender_id_mismatch()]);
    let before = now_ms();
    let outcome = s.provider.send(&incoming_push("other-app")).await;
    assert_invalid_token(outcome, "SENDER_ID_MISMATCH", (before, now_ms()));
}

#[tokio::test]
async fn other_bad_requests_are_rejected_with_googles_message() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    s.fcm.script(
        "dev",
        vec![Answer::invalid_argument("Invalid data payload key: from")],
    );
    let outcome = s.provider.send(&incoming_push("dev")).await;
    assert_eq!(
        outcome,
        Outcome::Rejected(callpush::providers::Failure::new(
            "INVALID_ARGUMENT",
            "FCM 400 INVALID_ARGUMENT: Invalid data payload key: from"
        ))
    );
}

#[tokio::test]
async fn an_oversized_push_is_rejected_without_a_request() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    let mut push = incoming_push("dev");
    let mut call = (*push.call).clone();
    call.params = Some(format!(r#"{{"blob":"{}"}}"#, "x".repeat(4100)).into());
    push.call = Arc::new(call);
    match s.provider.send(&push).await {
        Outcome::Rejected(failure) => assert_eq!(failure.reason, "MessageTooBig"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(s.fcm.count(), 0);
}

#[tokio::test]
async fn outages_are_retried_after_the_advertised_delay() {
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    s.fcm.script(
        "dev",
        vec![
            Answer::unavailable().retry_after(7),
            Answer::quota_exceeded().retry_after(60),
            Answer::ok(),
        ],
    );
    let retry = |outcome| match outcome {
        Outcome::Retry {
            failure,
            retry_after,
        } => (failure.reason, retry_after),
        other => panic!("expected Retry, got {other:?}"),
    };
    let first = retry(s.provider.send(&incoming_push("dev")).await);
    assert_eq!(
        first,
        ("UNAVAILABLE".to_string(), Some(Duration::from_secs(7)))
    );
    let second = retry(s.provider.send(&incoming_push("dev")).await);
    assert_eq!(
        second,
        ("QUOTA_EXCEEDED".to_string(), Some(Duration::from_secs(60)))
    );
    assert_eq!(
        s.provider.send(&incoming_push("dev")).await,
        Outcome::Delivered
    );
}

#[tokio::test]
async fn a_wrong_project_is_rejected_and_not_taken_for_a_dead_token() {
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    let mut cred = fcm.credential("CRfcm", &sa);
    cred.project_id = Some("someone-elses-project".into());
    let provider = FcmProvider::new(&cred).unwrap();
    match provider.send(&incoming_push("dev")).await {
        Outcome::Rejected(failure) => assert_eq!(failure.reason, "PERMISSION_DENIED"),
        other => panic!("expected Rejected, got {other:?}"),
    }
}
