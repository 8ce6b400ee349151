//! Webhook to push through the real daemon: Twilio-format credentials get the Twilio Voice
//! SDK's format (APNs: every `twi_*` field at the top level beside `aps`; FCM: data keys that
//! are exactly the `twi_*` fields), `callpush` credentials of the same identity get their own
//! format from the same webhook call, the outcome is `delivered`, and a notification Twilio
//! sends again rings nobody twice.

mod support;

use std::collections::BTreeMap;

use callpush::domain::Platform;
use http::StatusCode;
use serde_json::Value;
use support::api::add_auth;
use support::daemon::TestDaemon;
use support::twilio::{add_twilio, add_twilio_credential, notification, pairs, post_signed};
use support::world::{World, WAIT};

const APNS_CALLPUSH: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const APNS_TWILIO: &str = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2";
const FCM_CALLPUSH: &str = "fcm-callpush-token";
const FCM_TWILIO: &str = "fcm-twilio-token";

/// A world with bob registered four times: APNs and FCM, each in both formats.
async fn world(dir: &std::path::Path) -> World {
    let w = World::with(|s| {
        add_auth(s, dir);
        add_twilio(s, dir, &[support::twilio::AUTH_TOKEN]);
        add_twilio_credential(s, "CRapns", "CRapnsTwilio");
        add_twilio_credential(s, "CRfcm", "CRfcmTwilio");
    })
    .await;
    let now = callpush::domain::now_ms();
    w.register_at("bob", Platform::Apns, "CRapns", APNS_CALLPUSH, now)
        .await;
    w.register_at("bob", Platform::Apns, "CRapnsTwilio", APNS_TWILIO, now)
        .await;
    w.register_at("bob", Platform::Fcm, "CRfcm", FCM_CALLPUSH, now)
        .await;
    w.register_at("bob", Platform::Fcm, "CRfcmTwilio", FCM_TWILIO, now)
        .await;
    w
}

fn object(v: &Value) -> BTreeMap<String, Value> {
    v.as_object().unwrap().clone().into_iter().collect()
}

#[tokio::test]
async fn one_webhook_wakes_each_credential_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let fields = notification("CAtwilio1", "RMtwilio1", "bob");
    let r = post_signed(&daemon.api_url(), &pairs(&fields)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    assert!(w.apns.wait_for(2, WAIT).await, "both APNs pushes arrive");
    assert!(w.fcm.wait_for(2, WAIT).await, "both FCM pushes arrive");
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["call_sid"], "CAtwilio1");
    assert_eq!(results[0]["delivered"], "4");

    let twi: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let apns = w.apns.requests();
    let twilio_push = apns.iter().find(|p| p.token == APNS_TWILIO).unwrap();
    let mut body = object(&twilio_push.body);
    assert_eq!(body.remove("aps"), Some(serde_json::json!({})));
    assert_eq!(body, twi, "every twi_* field at the top level, unchanged");
    let header = |name: &str| twilio_push.headers[name].to_str().unwrap().to_string();
    assert_eq!(header("apns-push-type"), "voip");
    assert_eq!(header("apns-topic"), "com.example.app.voip");
    assert_eq!(header("apns-priority"), "10");
    assert_eq!(header("apns-collapse-id"), "CAtwilio1");
    assert!(header("apns-expiration").parse::<u64>().unwrap() > 0);
    let callpush_push = apns.iter().find(|p| p.token == APNS_CALLPUSH).unwrap();
    assert_eq!(callpush_push.body["callpush"]["call_sid"], "CAtwilio1");
    assert_eq!(callpush_push.body["callpush"]["caller"], "client:alice");
    assert!(callpush_push.body.get("twi_call_sid").is_none());

    let fcm = w.fcm.requests();
    let twilio_msg = fcm.iter().find(|p| p.token == FCM_TWILIO).unwrap();
    assert_eq!(
        object(&twilio_msg.body["message"]["data"]),
        twi,
        "the data keys are exactly the twi_* fields"
    );
    assert_eq!(twilio_msg.body["message"]["android"]["priority"], "HIGH");
    let callpush_msg = fcm.iter().find(|p| p.token == FCM_CALLPUSH).unwrap();
    assert_eq!(
        callpush_msg.body["message"]["data"]["call_sid"],
        "CAtwilio1"
    );
    assert_eq!(callpush_msg.body["message"]["data"]["callee"], "bob");
    daemon.stop().await;
}

#[tokio::test]
async fn a_retried_notification_rings_each_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let fields = notification("CAretried", "RMretried", "bob");
    for _ in 0..3 {
        let r = post_signed(&daemon.api_url(), &pairs(&fields)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // The same call under a new message id (a retry after the marker expired, or Twilio
    // minting a new id): a second stream entry, which the call_sid ledger finds delivered.
    let again = notification("CAretried", "RMretried-again", "bob");
    let r = post_signed(&daemon.api_url(), &pairs(&again)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["duplicate"], false);

    let results = w.results(2).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[1]["outcome"], "duplicate");
    assert_eq!(w.apns.count(), 2, "each APNs device rang once");
    assert_eq!(w.fcm.requests().len(), 2, "each FCM device rang once");
    daemon.stop().await;
}
