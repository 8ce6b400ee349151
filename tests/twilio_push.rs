//! Webhook to push through the real daemon, with notifications posted as Twilio posts them
//! (JSON): Twilio-format credentials get the Twilio Voice SDK's format (APNs: every field of
//! the notification at the top level beside `aps`, fields callpush never heard of included;
//! FCM: data keys that are exactly the notification's fields), `callpush` credentials of the
//! same identity get their own format from the same webhook call, the outcome is `delivered`;
//! `twi_answer_timeout` sets the pushes' expiry; a notification Twilio sends again (same
//! message id or same idempotency token) rings nobody twice; and a field FCM forbids as a data
//! key dead-letters the push, naming the key.

mod support;

use std::collections::BTreeMap;

use callpush::domain::Platform;
use http::StatusCode;
use serde_json::Value;
use support::api::add_auth;
use support::daemon::TestDaemon;
use support::twilio::{
    add_twilio, add_twilio_credential, notification, pairs, post_signed, post_signed_json,
};
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

/// A notification as Twilio sends it today: the documented fields, fields seen in the wild and
/// one callpush has never heard of.
fn rich_notification(call_sid: &str, message_id: &str) -> Vec<(String, String)> {
    let mut fields = notification(call_sid, message_id, "bob");
    for (k, v) in [
        ("twi_answer_timeout", "30"),
        ("twi_stir_status", "TN-Validation-Passed-A"),
        ("twi_brand_new", "{\"nested\": \"text\"}"),
        ("Unprefixed-Field", "kept"),
    ] {
        fields.push((k.to_string(), v.to_string()));
    }
    fields
}

#[tokio::test]
async fn one_webhook_wakes_each_credential_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let fields = rich_notification("CAtwilio1", "RMtwilio1");
    let r = post_signed_json(&daemon.api_url(), &fields, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    assert!(w.apns.wait_for(2, WAIT).await, "both APNs pushes arrive");
    assert!(w.fcm.wait_for(2, WAIT).await, "both FCM pushes arrive");
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[0]["call_sid"], "CAtwilio1");
    assert_eq!(results[0]["delivered"], "4");

    let sent: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let apns = w.apns.requests();
    let twilio_push = apns.iter().find(|p| p.token == APNS_TWILIO).unwrap();
    let mut body = object(&twilio_push.body);
    assert_eq!(body.remove("aps"), Some(serde_json::json!({})));
    assert_eq!(body, sent, "every field at the top level, unchanged");
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
        sent,
        "the data keys are exactly the notification's fields"
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
async fn a_form_notification_still_rings_in_twilios_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let fields = notification("CAform", "RMform", "bob");
    let r = post_signed(&daemon.api_url(), &pairs(&fields)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(w.results(1).await[0]["outcome"], "delivered");
    let apns = w.apns.requests();
    let twilio_push = apns.iter().find(|p| p.token == APNS_TWILIO).unwrap();
    assert_eq!(twilio_push.body["twi_bridge_token"], "eyJ.bridge.token");
    daemon.stop().await;
}

#[tokio::test]
async fn twi_answer_timeout_sets_the_expiry_of_every_push() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let mut fields = notification("CAtimeout", "RMtimeout", "bob");
    fields.push(("twi_answer_timeout".into(), "12".into()));
    let before_s = callpush::domain::now_ms() / 1000;
    let r = post_signed_json(&daemon.api_url(), &fields, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(w.apns.wait_for(2, WAIT).await);
    assert!(w.fcm.wait_for(2, WAIT).await);
    let after_s = callpush::domain::now_ms() / 1000;
    for push in w.apns.requests() {
        let expiration: u64 = push.headers["apns-expiration"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (before_s + 11..=after_s + 12).contains(&expiration),
            "apns-expiration {expiration} follows 12 s from {before_s}, not 30"
        );
    }
    for push in w.fcm.requests() {
        let ttl = push.body["message"]["android"]["ttl"].as_str().unwrap();
        let secs: u64 = ttl.trim_end_matches('s').parse().unwrap();
        assert!(
            (1..=12).contains(&secs),
            "FCM ttl {ttl} follows 12 s, not 30"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_retried_notification_rings_each_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let daemon = TestDaemon::start(w.settings.clone());
    let fields = rich_notification("CAretried", "RMretried");
    let token = [("I-Twilio-Idempotency-Token", "RMretried-try")];
    for _ in 0..3 {
        let r = post_signed_json(&daemon.api_url(), &fields, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Twilio's retry under the same idempotency token, even had the message id changed.
    let renamed = rich_notification("CAretried", "RMretried-renamed");
    let r = post_signed_json(&daemon.api_url(), &renamed, &token).await;
    assert_eq!(r.body["duplicate"], true, "{}", r.body);
    // The same call under a new message id and token (a retry after the markers expired, or
    // Twilio minting new ids): a second stream entry, which the call_sid ledger finds
    // delivered.
    let again = rich_notification("CAretried", "RMretried-again");
    let r = post_signed_json(&daemon.api_url(), &again, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["duplicate"], false);

    let results = w.results(2).await;
    assert_eq!(results[0]["outcome"], "delivered");
    assert_eq!(results[1]["outcome"], "duplicate");
    assert_eq!(w.apns.count(), 2, "each APNs device rang once");
    assert_eq!(w.fcm.requests().len(), 2, "each FCM device rang once");
    daemon.stop().await;
}

#[tokio::test]
async fn a_field_fcm_forbids_dead_letters_the_push_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(dir.path()).await;
    let now = callpush::domain::now_ms();
    w.register_at(
        "carol",
        Platform::Fcm,
        "CRfcmTwilio",
        "fcm-carol-token",
        now,
    )
    .await;
    let daemon = TestDaemon::start(w.settings.clone());
    let mut fields = notification("CAreserved", "RMreserved", "carol");
    fields.push(("from".into(), "a field FCM refuses".into()));
    let r = post_signed_json(&daemon.api_url(), &fields, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = w.results(1).await;
    assert_eq!(results[0]["outcome"], "dead_lettered");
    let dead = w.dead(1).await;
    assert_eq!(dead[0]["reason"], "provider_rejected");
    assert!(dead[0]["detail"].contains("\"from\""), "{:?}", dead[0]);
    assert!(
        w.fcm.requests().is_empty(),
        "nothing was sent without the field"
    );
    daemon.stop().await;
}
