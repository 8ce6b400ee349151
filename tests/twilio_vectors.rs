//! The shared vectors (`tests/fixtures/twilio-webhook-vectors.json`, copied from
//! `../shared/twilio-webhook-vectors.json`): requests signed by the real `twilio` helper
//! library 9.13.0 — JSON with `bodySHA256`, form-encoded, auth tokens and Webhooks SharedKeys
//! with HMAC-SHA1 and HMAC-SHA256 — each with the verdict the library gives. Every one goes
//! through the real route exactly as Twilio would send it (path and query of the URL, the
//! headers, the body bytes), and the answer must agree: 200 when the library accepts the
//! request, 403 when it refuses it.

mod support;

use axum::body::Body;
use callpush::domain::Platform;
use http::{Request, StatusCode};
use serde_json::Value;
use support::api::{send, ApiWorld};
use support::twilio::{add_shared_keys, add_twilio, ROUTE, WEBHOOK_URL};

const VECTORS: &str = include_str!("fixtures/twilio-webhook-vectors.json");

/// The account the vectors' notifications name.
const VECTOR_ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn vectors() -> Vec<Value> {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    file["vectors"].as_array().unwrap().clone()
}

/// The secret of each kind the vectors use (they agree within a kind).
fn secret(kind: &str) -> String {
    let secrets: Vec<String> = vectors()
        .iter()
        .filter(|v| v["secret_kind"] == kind)
        .map(|v| v["secret"].as_str().unwrap().to_string())
        .collect();
    assert!(
        secrets.windows(2).all(|w| w[0] == w[1]),
        "{kind}: one secret"
    );
    secrets[0].clone()
}

/// The request Twilio sent for `vector`, to callpush's route.
fn request(vector: &Value) -> Request<Body> {
    let url = vector["url"].as_str().unwrap();
    let tail = url
        .strip_prefix(WEBHOOK_URL)
        .expect("the vectors call the tests' webhook URL");
    let mut req = Request::post(format!("{ROUTE}{tail}"))
        .header("content-type", vector["content_type"].as_str().unwrap());
    for (name, value) in vector["headers"].as_object().unwrap() {
        req = req.header(name.as_str(), value.as_str().unwrap());
    }
    req.body(Body::from(vector["body"].as_str().unwrap().to_string()))
        .unwrap()
}

#[tokio::test]
async fn every_vector_gets_the_verdict_of_twilios_library_through_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| {
        add_twilio(s, dir.path(), &["an-older-token", &secret("auth_token")]);
        add_shared_keys(s, dir.path(), &[&secret("shared_key"), "an-older-key"]);
        s.auth.account_sid = Some(VECTOR_ACCOUNT.into());
    })
    .await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    let vectors = vectors();
    assert_eq!(vectors.len(), 9, "every vector of the shared file");
    let mut accepted = 0;
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let r = send(w.public(), request(v)).await;
        let expected = if v["valid"].as_bool().unwrap() {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(r.status, expected, "{name}: {}", r.body);
        if r.status == StatusCode::OK {
            // Every valid vector is the same notification: the first adds it, the others are
            // Twilio retrying it.
            assert_eq!(r.body["duplicate"], accepted > 0, "{name}: {}", r.body);
            accepted += 1;
        } else {
            assert_eq!(r.code(), "forbidden", "{name}");
        }
    }
    assert_eq!(accepted, 6);
    let mut conn = w.world.conn.clone();
    let len: usize = redis::cmd("XLEN")
        .arg(&w.world.keys.calls)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 1, "one notification, one stream entry");
    let (_, metrics) = support::api::get_text(w.admin(), "/metrics").await;
    assert!(
        metrics.contains("callpush_twilio_signature_failures_total 3"),
        "{metrics}"
    );
}
