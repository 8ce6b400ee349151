//! The token endpoint's answers, the refresh schedule and the assertion's claims.

use std::path::PathBuf;

use http::HeaderMap;

use super::*;
use crate::transport::PoolOptions;

fn response(status: u16, body: &str) -> Response {
    Response {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
    }
}

fn lifetime_left_at_refresh(expires_in: u64) -> Duration {
    let now = Instant::now();
    let body =
        format!(r#"{{"access_token":"ya29.x","expires_in":{expires_in},"token_type":"Bearer"}}"#);
    let token = granted(&response(200, &body), now).unwrap();
    assert_eq!(token.expires_at, now + Duration::from_secs(expires_in));
    token.expires_at - token.refresh_at
}

#[test]
fn refresh_margin_is_five_minutes_or_ten_percent() {
    assert_eq!(lifetime_left_at_refresh(1800), Duration::from_secs(300));
    assert_eq!(lifetime_left_at_refresh(3600), Duration::from_secs(360));
    // Short-lived tokens live at least half their life before being replaced.
    assert_eq!(lifetime_left_at_refresh(60), Duration::from_secs(30));
}

#[test]
fn a_huge_expires_in_is_read_as_a_day() {
    let now = Instant::now();
    let body = r#"{"access_token":"ya29.x","expires_in":18446744073709551615}"#;
    let token = granted(&response(200, body), now).unwrap();
    assert_eq!(token.expires_at, now + MAX_LIFETIME);
    assert!(token.refresh_at < token.expires_at);
}

#[test]
fn invalid_grant_is_rejected_naming_the_error() {
    let body = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
    match granted(&response(400, body), Instant::now()) {
        Err(Outcome::Rejected(f)) => {
            assert_eq!(f.reason, "oauth_invalid_grant");
            assert_eq!(
                f.detail,
                "OAuth token endpoint 400 invalid_grant: Invalid JWT Signature."
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn endpoint_outages_are_retried() {
    match granted(&response(503, "unavailable"), Instant::now()) {
        Err(Outcome::Retry { failure, .. }) => assert_eq!(failure.reason, "oauth_http_503"),
        other => panic!("expected Retry, got {other:?}"),
    }
    match granted(&response(200, "not json"), Instant::now()) {
        Err(Outcome::Retry { failure, .. }) => assert_eq!(failure.reason, "oauth_bad_response"),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[test]
fn assertion_carries_googles_claims() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let key = std::fs::read_to_string(fixtures.join("fcm_sa_key.pk8.pem")).unwrap();
    let file = dir.path().join("sa.json");
    let json = serde_json::json!({
        "type": "service_account", "project_id": "demo", "private_key_id": "kid1",
        "private_key": key, "client_email": "push@demo.iam.gserviceaccount.com",
        "token_uri": "http://127.0.0.1:9/token",
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let account = ServiceAccount::load(&file, None, None).unwrap();
    let pool = Arc::new(H2Pool::new(&account.token_uri, PoolOptions::default()).unwrap());
    let source = TokenSource::new(&account, pool, "/token".into());
    let jwt = source.assertion().unwrap();

    let public = std::fs::read(fixtures.join("fcm_sa_key.pub.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&["http://127.0.0.1:9/token"]);
    validation.set_issuer(&["push@demo.iam.gserviceaccount.com"]);
    let decoded = jsonwebtoken::decode::<serde_json::Value>(
        &jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some("kid1"));
    assert_eq!(decoded.claims["scope"], FCM_SCOPE);
    let lifetime =
        decoded.claims["exp"].as_u64().unwrap() - decoded.claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3600);
}

#[test]
fn an_access_token_never_prints() {
    let body = r#"{"access_token":"ya29.secret-bearer","expires_in":3600}"#;
    let token = granted(&response(200, body), Instant::now()).unwrap();
    assert_eq!(token.value.expose_str(), "ya29.secret-bearer");
    assert!(!format!("{token:?}").contains("ya29"), "{token:?}");
}
