//! The simulators (`callpush_sim`) as callpush's real provider clients see them, with the
//! development identity `callpush dev` writes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::apns::ApnsProvider;
use crate::domain::{now_ms, CallContent, Push, PushKind};
use crate::fcm::FcmProvider;
use crate::providers::{Outcome, Provider};
use callpush_sim::*;

const WAIT: Duration = Duration::from_secs(10);

/// The simulators copy the probe token rather than depend on callpush.
#[test]
fn the_simulators_know_the_check_probe_token() {
    assert_eq!(PROBE_TOKEN, crate::apns::PROBE_TOKEN);
}

/// The real clients, signing with the development keys written into `dir`.
fn providers(sims: &Simulators, dir: &Path) -> (ApnsProvider, FcmProvider) {
    let key = dir.join("apns.p8");
    std::fs::write(&key, DEV_APNS_KEY).unwrap();
    let apns = serde_json::from_value(json!({
        "sid": "CRapns", "bundle_id": DEV_BUNDLE_ID, "team_id": DEV_TEAM_ID,
        "key_id": DEV_KEY_ID, "key_file": key, "endpoint": sims.apns_endpoint(),
    }))
    .unwrap();
    let account = dir.join("fcm.json");
    let sa = json!({
        "type": "service_account", "project_id": DEV_PROJECT_ID, "private_key": DEV_FCM_KEY,
        "client_email": DEV_CLIENT_EMAIL, "token_uri": sims.token_uri(),
    });
    std::fs::write(&account, sa.to_string()).unwrap();
    let fcm = serde_json::from_value(json!({
        "sid": "CRfcm", "service_account_file": account, "base_url": sims.fcm_base_url(),
    }))
    .unwrap();
    (
        ApnsProvider::new(&apns).unwrap(),
        FcmProvider::new(&fcm).unwrap(),
    )
}

/// The simulators started with `opts`, and the real clients pointed at them (the
/// directory holds their keys).
async fn started(opts: SimOptions) -> (Simulators, tempfile::TempDir, ApnsProvider, FcmProvider) {
    let sims = Simulators::start_with(opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (apns, fcm) = providers(&sims, dir.path());
    (sims, dir, apns, fcm)
}

fn push(token: &str) -> Push {
    Push::new(
        Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA0001".into(),
            caller: Some("+15551234567".into()),
            callee: "alice".into(),
            params: None,
            deadline_ms: now_ms() + 30_000,
            twilio: Vec::new(),
        }),
        token,
    )
}

fn gone(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::InvalidToken { .. })
}

#[tokio::test]
async fn scripted_answers_win_and_unscripted_tokens_follow_their_prefix() {
    let (sims, _dir, apns, fcm) = started(SimOptions::default()).await;
    let dead_iphone = format!("dead{}", "0".repeat(60));
    sims.apns().script(&dead_iphone, vec![ApnsAnswer::ok()]);
    sims.fcm().script("dead-pixel", vec![FcmAnswer::ok()]);

    assert_eq!(apns.send(&push(&dead_iphone)).await, Outcome::Delivered);
    assert!(gone(&apns.send(&push(&dead_iphone)).await));
    assert_eq!(fcm.send(&push("dead-pixel")).await, Outcome::Delivered);
    assert!(gone(&fcm.send(&push("dead-pixel")).await));

    sims.fcm().set_default(FcmAnswer::unregistered());
    assert!(gone(&fcm.send(&push("alice-pixel")).await));
}

#[tokio::test]
async fn every_push_is_recorded_with_its_path_and_bearer() {
    let (sims, _dir, apns, fcm) = started(SimOptions {
        record: true,
        ..SimOptions::default()
    })
    .await;
    let iphone = "ab".repeat(32);
    assert_eq!(apns.send(&push(&iphone)).await, Outcome::Delivered);
    assert_eq!(fcm.send(&push("alice-pixel")).await, Outcome::Delivered);

    let sent = sims.apns().requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, format!("/3/device/{iphone}"));
    assert_eq!(sent[0].header("apns-push-type"), Some("voip"));
    assert_eq!(
        sent[0].bearer.as_deref().map(|jwt| jwt.split('.').count()),
        Some(3)
    );
    assert_eq!(sims.apns().distinct_jwts().len(), 1);

    let sent = sims.fcm().requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].token, "alice-pixel");
    assert_eq!(sent[0].path, "/v1/projects/callpush-dev/messages:send");
    let bearer = sent[0].bearer.clone().unwrap();
    assert!(sims.fcm().issued_at(&bearer).is_some());
    assert_eq!(sims.fcm().token_requests(), 1);
}

#[tokio::test]
async fn without_recording_pushes_are_counted_not_kept() {
    let (sims, _dir, apns, fcm) = started(SimOptions::default()).await;
    assert_eq!(apns.send(&push(&"ab".repeat(32))).await, Outcome::Delivered);
    assert_eq!(fcm.send(&push("alice-pixel")).await, Outcome::Delivered);
    assert_eq!((sims.apns().count(), sims.fcm().count()), (1, 1));
    assert!(sims.apns().requests().is_empty());
    assert!(sims.fcm().requests().is_empty());
}

/// A latency of a minute: the pushes arrive, and no answer comes back meanwhile.
#[tokio::test]
async fn the_latency_holds_every_answer() {
    let (sims, _dir, apns, fcm) = started(SimOptions {
        latency: Duration::from_secs(60),
        ..SimOptions::default()
    })
    .await;
    let iphone = "ab".repeat(32);
    let mut apns_push = tokio::spawn(async move { apns.send(&push(&iphone)).await });
    let mut fcm_push = tokio::spawn(async move { fcm.send(&push("alice-pixel")).await });

    assert!(sims.apns().wait_for_received(1, WAIT).await);
    assert!(sims.fcm().wait_for_received(1, WAIT).await);
    // The token endpoint answered at once: the push itself is what waits.
    assert_eq!(sims.fcm().token_requests(), 1);
    assert_eq!(sims.fcm().count(), 0);
    // Without the latency both would be answered in milliseconds.
    let hold = Duration::from_secs(1);
    assert!(tokio::time::timeout(hold, &mut apns_push).await.is_err());
    assert!(tokio::time::timeout(hold, &mut fcm_push).await.is_err());
    apns_push.abort();
    fcm_push.abort();
}
