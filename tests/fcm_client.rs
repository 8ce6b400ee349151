//! The FCM provider against the FCM double: what reaches Google, how the OAuth token is shared
//! and refreshed, and what each of FCM's answers means for the dispatcher.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callpush::fcm::{FcmError, FcmProvider};
use callpush::providers::{now_ms, CallContent, Outcome, Provider, Push, PushKind};
use futures::future::join_all;
use serde_json::json;
use support::fcm_double::{write_json, Answer, FcmDouble, FcmDoubleOptions};
use tempfile::TempDir;

/// An RSA key Google never saw: a service account whose key was deleted or replaced.
const UNKNOWN_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC6JG0V7acdYDtE
LC4kgxGbOIwntrldLvvz1wRj/7FvUx+V9QvDq07bE75LOMB69nGD3UwhWf7UkFzM
w0IEHcYp/PeUDM+wPFXcaighr8CF8hIx7zIlq4xOITOulhhY5Ty44qQIhRhakaTg
cfS7pVn1HhLwXPWcyGr091gbyCeSLi994iA1EnGlvudI+JDtCuas8hxXGXackS07
rRzbWkRczng7CcwGBQaeJcRYLjy2nB5w2Jn2uSogPlAk/yLmYxaNXvpglUTPSSUA
RbOKauDEIFoSdDxwyybkoq8ENPxE/v0BeQRNqLu2Y2c1uxBgNfXG1HayAGi463sU
vbx/AXVDAgMBAAECggEARdCou3tF3S49PF4HtnkUbvAAHVsa3hjjtfq08l6yKat3
ItLkZTDI5EFc87Cm/NeXDtq/FZlAC3DT5ZbsmUejjhcLstM1SIfwujl0sOHO5046
RdFNsTRM7Pbl//rayei85ClZVbq5vip3ORl0rbagbV+owc9T7ch72UI2IUFqmhgl
naguy881ge5v7zVIcGvre4sYmYfr3d58agsTwPJv8CTc9LHGyeffMzqUzxiBnjfm
5oDMoldOaCOektCHirAHxBTB/52PvGh6lFFs43CwEV1cW0CIdkWxwVmkPVNBvYnc
TRXge6yqjkKJ+ZxprQegTeE7PdwHEur/1HqxMNFpEQKBgQDkK6vMnBInMJb0zSzb
PHVwCAcM296x8ZE3DuNAqTwkViUaILo1/ag2wS+u2CkDnt1MRS8xUMlTrJ4xjLI+
OD2uymKgJB57v2+ye0SkZwmUp7zYPA5qJlIUnt7lO2q5lyWrUfdEX5Jy5oDuAg8Q
j+L3FtrD2Cc03zkNYUEWwXzkEQKBgQDQ2HnnOMTJvCYZmD3L8v659zGpH7BWGL3g
hGRxfbi9Fb/bcvLPwoD94okSglrwgTcoNoxdpL64F9xZ3wf4S1CDMrxiWxaF+Gij
1zvb1M9xl9M+rT62OE7W2G6Fir6DDgs1G6g0nHsLeZ+ZCxzdwhLbeEbhk2pz4tcj
UbKBbdwIEwKBgFo15fO8lPTHojdhU2XOjoPfuKHd4DssTgSdrz2ma2/WW07sN5MX
GcWkNa0EK5sR2V7JT7JIxYB+lAD1Jpew9ro/rCSygxbcBlZjpCz3y/LpKqG3hN91
DSi381pgVn7QAoWsn31559Xjyn/PcpNSwCJ+97lMoZum0dC3bduIXk9xAoGABoN5
6dg/avtPROUWqFG/2BT5m4i9ezHyWhpG97MwG9Wd0j5XjFtIoqJ6G/Ws2GtvSPXK
kvEccals2fC20uumazEd5wNoRG1m9hU0bLrKbYSKth25Iv3Gl7TQXaHiJzw85T8j
k+B9hfIZJDDQiaoP5IBv1YE/hLXCd/uIUbkXb7kCgYB2KtyL+M8swnAmsvRDghvV
1Yz3bDexzbOo3IBR0ZuwdBH0kRKUBZoTKpCav1qHTI6jid5a/Ipt2mYEBabFlCyk
F8xd20cUSrUXV2DYR2TFjKKXEO4kK6sDE1OHw+oWJfpNwhi7yWZ7ulQM45a/hBKN
GzUcN+ucg1pKOwOVzNEjxA==
-----END PRIVATE KEY-----
";

struct Setup {
    fcm: FcmDouble,
    provider: FcmProvider,
    _dir: TempDir,
}

async fn setup(opts: FcmDoubleOptions) -> Setup {
    let fcm = FcmDouble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    let provider = FcmProvider::new(&fcm.credential("CRfcm", &sa)).unwrap();
    Setup {
        fcm,
        provider,
        _dir: dir,
    }
}

fn push_to(token: &str) -> Push {
    Push {
        call: Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA0123456789abcdef".into(),
            caller: Some("+15551234567".into()),
            callee: "alice".into(),
            params: Some(r#"{"display":"Bob","room":"42"}"#.into()),
            deadline_ms: now_ms() + 30_000,
        }),
        device_token: token.into(),
    }
}

fn provider_for(
    fcm: &FcmDouble,
    dir: &Path,
    account: &serde_json::Value,
) -> Result<FcmProvider, FcmError> {
    let sa = write_json(dir, "sa.json", account);
    FcmProvider::new(&fcm.credential("CRfcm", &sa))
}

#[tokio::test]
async fn sends_the_spec_message_with_a_bearer_token() {
    let s = setup(FcmDoubleOptions::default()).await;
    assert_eq!(
        s.provider.send(&push_to("dev-token:abc_123")).await,
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
    let s = setup(FcmDoubleOptions::default()).await;
    let mut push = push_to("dev-token");
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

#[tokio::test]
async fn one_token_serves_many_concurrent_pushes() {
    let opts = FcmDoubleOptions {
        token_delay: Duration::from_millis(200),
        ..FcmDoubleOptions::default()
    };
    let s = setup(opts).await;
    let pushes: Vec<Push> = (0..200).map(|i| push_to(&format!("device-{i}"))).collect();
    let outcomes = join_all(pushes.iter().map(|p| s.provider.send(p))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    assert_eq!(s.fcm.token_requests(), 1);
    assert_eq!(s.fcm.count(), 200);
    let first = s.fcm.requests()[0].bearer.clone();
    assert!(s.fcm.requests().iter().all(|r| r.bearer == first));
    // Many streams share a few long-lived connections.
    let open = s.provider.open_connections();
    assert!((1..=2).contains(&open), "{open} connections open");

    assert_eq!(s.provider.send(&push_to("later")).await, Outcome::Delivered);
    assert_eq!(s.fcm.token_requests(), 1);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_once_before_it_expires() {
    let opts = FcmDoubleOptions {
        expires_in: 4,
        token_delay: Duration::from_millis(100),
        ..FcmDoubleOptions::default()
    };
    let s = setup(opts).await;
    assert_eq!(s.provider.send(&push_to("first")).await, Outcome::Delivered);
    let old = s.fcm.requests()[0].bearer.clone();

    // Half its life gone: due for refresh, though Google would still take it.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let pushes: Vec<Push> = (0..100).map(|i| push_to(&format!("device-{i}"))).collect();
    let outcomes = join_all(pushes.iter().map(|p| s.provider.send(p))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    assert_eq!(
        s.fcm.token_requests(),
        2,
        "one refresh for all concurrent pushes"
    );
    let requests = s.fcm.requests();
    let new = requests[1].bearer.clone();
    assert_ne!(new, old);
    assert!(requests[1..].iter().all(|r| r.bearer == new));
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_push_retried() {
    let s = setup(FcmDoubleOptions::default()).await;
    assert_eq!(s.provider.send(&push_to("dev")).await, Outcome::Delivered);
    s.fcm.revoke_tokens();

    match s.provider.send(&push_to("dev")).await {
        Outcome::Retry {
            failure,
            retry_after,
        } => {
            assert_eq!(failure.reason, "UNAUTHENTICATED");
            assert_eq!(retry_after, Some(Duration::ZERO));
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(s.provider.send(&push_to("dev")).await, Outcome::Delivered);
    assert_eq!(s.fcm.token_requests(), 2);
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
    let s = setup(FcmDoubleOptions::default()).await;
    s.fcm.set_unregistered("uninstalled");
    let before = now_ms();
    let outcome = s.provider.send(&push_to("uninstalled")).await;
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
    let s = setup(FcmDoubleOptions::default()).await;
    let before = now_ms();
    let outcome = s.provider.send(&push_to("not a token!")).await;
    assert_invalid_token(outcome, "INVALID_ARGUMENT", (before, now_ms()));
}

#[tokio::test]
async fn a_token_of_another_project_is_invalid() {
    let s = setup(FcmDoubleOptions::default()).await;
    s.fcm
        .script("other-app", vec![Answer::sender_id_mismatch()]);
    let before = now_ms();
    let outcome = s.provider.send(&push_to("other-app")).await;
    assert_invalid_token(outcome, "SENDER_ID_MISMATCH", (before, now_ms()));
}

#[tokio::test]
async fn other_bad_requests_are_rejected_with_googles_message() {
    let s = setup(FcmDoubleOptions::default()).await;
    s.fcm.script(
        "dev",
        vec![Answer::invalid_argument("Invalid data payload key: from")],
    );
    let outcome = s.provider.send(&push_to("dev")).await;
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
    let s = setup(FcmDoubleOptions::default()).await;
    let mut push = push_to("dev");
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
    let s = setup(FcmDoubleOptions::default()).await;
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
    let first = retry(s.provider.send(&push_to("dev")).await);
    assert_eq!(
        first,
        ("UNAVAILABLE".to_string(), Some(Duration::from_secs(7)))
    );
    let second = retry(s.provider.send(&push_to("dev")).await);
    assert_eq!(
        second,
        ("QUOTA_EXCEEDED".to_string(), Some(Duration::from_secs(60)))
    );
    assert_eq!(s.provider.send(&push_to("dev")).await, Outcome::Delivered);
}

#[tokio::test]
async fn an_unknown_key_is_rejected_naming_the_token_endpoints_error() {
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut account = fcm.service_account_json();
    account["private_key"] = json!(UNKNOWN_KEY);
    let provider = provider_for(&fcm, dir.path(), &account).unwrap();
    match provider.send(&push_to("dev")).await {
        Outcome::Rejected(failure) => {
            assert_eq!(failure.reason, "oauth_invalid_grant");
            assert_eq!(
                failure.detail,
                "OAuth token endpoint 400 invalid_grant: Invalid JWT Signature."
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(fcm.token_requests(), 1);
    assert_eq!(fcm.count(), 0, "no push without a token");
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried() {
    let s = setup(FcmDoubleOptions::default()).await;
    s.fcm
        .script_token(vec![Answer::unavailable().retry_after(2)]);
    match s.provider.send(&push_to("dev")).await {
        Outcome::Retry {
            failure,
            retry_after,
        } => {
            assert_eq!(failure.reason, "oauth_http_503");
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    // The endpoint is asked again once the failure is a second old.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(s.provider.send(&push_to("dev")).await, Outcome::Delivered);
    assert_eq!(s.fcm.token_requests(), 2);
}

#[tokio::test]
async fn a_wrong_project_is_rejected_and_not_taken_for_a_dead_token() {
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sa = fcm.write_service_account(dir.path());
    let mut cred = fcm.credential("CRfcm", &sa);
    cred.project_id = Some("someone-elses-project".into());
    let provider = FcmProvider::new(&cred).unwrap();
    match provider.send(&push_to("dev")).await {
        Outcome::Rejected(failure) => assert_eq!(failure.reason, "PERMISSION_DENIED"),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_account_without_a_field_is_refused_naming_it() {
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for field in ["client_email", "private_key", "project_id"] {
        let mut account = fcm.service_account_json();
        account.as_object_mut().unwrap().remove(field);
        match provider_for(&fcm, dir.path(), &account) {
            Err(FcmError::MissingField {
                file,
                field: missing,
            }) => {
                assert_eq!(missing, field);
                assert!(file.ends_with("sa.json"), "{file}");
            }
            other => panic!("expected MissingField for {field}, got {other:?}"),
        }
    }
    let mut account = fcm.service_account_json();
    account["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    match provider_for(&fcm, dir.path(), &account) {
        Err(FcmError::BadField { field, .. }) => assert_eq!(field, "private_key"),
        other => panic!("expected BadField, got {other:?}"),
    }
    let missing = dir.path().join("nowhere.json");
    match FcmProvider::new(&fcm.credential("CRfcm", &missing)) {
        Err(FcmError::Read { file, .. }) => assert!(file.ends_with("nowhere.json")),
        other => panic!("expected Read, got {other:?}"),
    }
}
