//! Signing in to FCM: the OAuth token is fetched once, shared, refreshed ahead of expiry and
//! replaced when refused; a bad service account fails at start or with the token endpoint's
//! error.

mod support;

use std::path::Path;
use std::time::Duration;

use callpush::domain::Push;
use callpush::fcm::{FcmError, FcmProvider};
use callpush::providers::{Outcome, Provider};
use futures::future::join_all;
use serde_json::json;
use support::fcm_double::{
    incoming_push, start_with_provider, write_json, Answer, FcmDouble, FcmDoubleOptions,
};

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

fn provider_for(
    fcm: &FcmDouble,
    dir: &Path,
    account: &serde_json::Value,
) -> Result<FcmProvider, FcmError> {
    let sa = write_json(dir, "sa.json", account);
    FcmProvider::new(&fcm.credential("CRfcm", &sa))
}

/// Push to `n` devices at once; every push must be delivered.
async fn push_many_at_once(provider: &FcmProvider, n: usize) {
    let pushes: Vec<Push> = (0..n)
        .map(|i| incoming_push(&format!("device-{i}")))
        .collect();
    let outcomes = join_all(pushes.iter().map(|p| provider.send(p))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
}

/// The reason and the `Retry-After` of a push answered with a retry.
async fn retried(provider: &FcmProvider) -> (String, Option<Duration>) {
    match provider.send(&incoming_push("dev")).await {
        Outcome::Retry {
            failure,
            retry_after,
        } => (failure.reason.to_string(), retry_after),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn one_token_serves_many_concurrent_pushes() {
    let opts = FcmDoubleOptions {
        token_delay: Duration::from_millis(200),
        ..FcmDoubleOptions::default()
    };
    let s = start_with_provider(opts).await;
    push_many_at_once(&s.provider, 200).await;
    assert_eq!(s.fcm.token_requests(), 1);
    assert_eq!(s.fcm.count(), 200);
    let first = s.fcm.requests()[0].bearer.clone();
    assert!(s.fcm.requests().iter().all(|r| r.bearer == first));
    // Many streams share a few long-lived connections.
    let open = s.provider.open_connections();
    assert!((1..=2).contains(&open), "{open} connections open");

    assert_eq!(
        s.provider.send(&incoming_push("later")).await,
        Outcome::Delivered
    );
    assert_eq!(s.fcm.token_requests(), 1);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_once_before_it_expires() {
    let opts = FcmDoubleOptions {
        expires_in: 4,
        token_delay: Duration::from_millis(100),
        ..FcmDoubleOptions::default()
    };
    let s = start_with_provider(opts).await;
    assert_eq!(
        s.provider.send(&incoming_push("first")).await,
        Outcome::Delivered
    );
    let old = s.fcm.requests()[0].bearer.clone();

    // Half its life gone: due for refresh, though Google would still take it.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    push_many_at_once(&s.provider, 100).await;
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
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    assert_eq!(
        s.provider.send(&incoming_push("dev")).await,
        Outcome::Delivered
    );
    s.fcm.revoke_tokens();

    let (reason, retry_after) = retried(&s.provider).await;
    assert_eq!(reason, "UNAUTHENTICATED");
    assert_eq!(retry_after, Some(Duration::ZERO));
    assert_eq!(
        s.provider.send(&incoming_push("dev")).await,
        Outcome::Delivered
    );
    assert_eq!(s.fcm.token_requests(), 2);
}

#[tokio::test]
async fn an_unknown_key_is_rejected_naming_the_token_endpoints_error() {
    let fcm = FcmDouble::start(FcmDoubleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut account = fcm.service_account_json();
    account["private_key"] = json!(UNKNOWN_KEY);
    let provider = provider_for(&fcm, dir.path(), &account).unwrap();
    match provider.send(&incoming_push("dev")).await {
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
    let s = start_with_provider(FcmDoubleOptions::default()).await;
    s.fcm
        .script_token(vec![Answer::unavailable().retry_after(2)]);
    let (reason, retry_after) = retried(&s.provider).await;
    assert_eq!(reason, "oauth_http_503");
    assert_eq!(retry_after, Some(Duration::from_secs(2)));
    // The endpoint is asked again once the failure is a second old.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        s.provider.send(&incoming_push("dev")).await,
        Outcome::Delivered
    );
    assert_eq!(s.fcm.token_requests(), 2);
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
