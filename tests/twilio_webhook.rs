//! The webhook's answers before anything reaches a provider: the notification on the stream
//! whole (JSON as Twilio sends it, or a form), its ttl from `twi_answer_timeout`, 404 for a
//! callee without a live binding, 400/413/415 naming the field for malformed requests, 403 for
//! another account, and one stream entry per notification however often Twilio retries it
//! (same `twi_message_id` or same `I-Twilio-Idempotency-Token`).

mod support;

use axum::body::Body;
use callpush::domain::Platform;
use http::{Request, StatusCode};
use support::api::{send, ApiWorld};
use support::twilio::{
    add_twilio, json_body, json_request, json_signature, notification, pairs, signed, signed_json,
    AUTH_TOKEN, ROUTE, WEBHOOK_URL,
};

async fn world() -> (ApiWorld, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| add_twilio(s, dir.path(), &[support::twilio::AUTH_TOKEN])).await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    (w, dir)
}

async fn stream(w: &ApiWorld) -> Vec<(String, Vec<(String, String)>)> {
    let mut conn = w.world.conn.clone();
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&w.world.keys.calls)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
}

fn get<'a>(entry: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entry
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The notification carried in an entry's `twilio` field, in order.
fn carried(entry: &[(String, String)]) -> Vec<(String, String)> {
    let text = get(entry, "twilio").expect("a twilio field");
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    // serde_json's map is sorted: read the order from the text itself.
    let mut fields: Vec<(String, String)> = object
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
        .collect();
    fields.sort_by_key(|(k, _)| text.find(&format!("{:?}:", k)).unwrap());
    fields
}

#[tokio::test]
async fn a_json_notification_goes_on_the_stream_whole_and_in_order() {
    let (w, _dir) = world().await;
    let mut fields = notification("CAjson", "RMjson", "bob");
    fields.push(("twi_stir_status".into(), "TN-Validation-Passed-A".into()));
    fields.push(("Never-Heard-Of".into(), "kept \"as\" is".into()));
    fields.push(("to".into(), "not the stream's to".into()));
    let r = send(w.public(), signed_json(&json_body(&fields))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["duplicate"], false);
    let entries = stream(&w).await;
    assert_eq!(entries.len(), 1);
    let got = &entries[0].1;
    assert_eq!(get(got, "type"), Some("incoming"));
    assert_eq!(get(got, "to"), Some("bob"));
    assert_eq!(get(got, "call_sid"), Some("CAjson"));
    assert_eq!(get(got, "from"), Some("client:alice"));
    assert_eq!(get(got, "ttl_ms"), Some("30000"));
    assert_eq!(carried(got), fields, "every field, unchanged and in order");
}

#[tokio::test]
async fn a_form_notification_still_goes_on_the_stream() {
    let (w, _dir) = world().await;
    let fields = notification("CAform", "RMform", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = stream(&w).await;
    assert_eq!(get(&entries[0].1, "call_sid"), Some("CAform"));
    assert_eq!(carried(&entries[0].1), fields);
}

#[tokio::test]
async fn twi_answer_timeout_sets_the_ttl_within_bounds() {
    let (w, _dir) = world().await;
    for (i, (timeout, ttl_ms)) in [
        ("12", "12000"),
        ("900", "600000"),
        ("0", "30000"),
        ("soon", "30000"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut fields = notification(&format!("CAttl{i}"), &format!("RMttl{i}"), "bob");
        fields.push(("twi_answer_timeout".into(), timeout.into()));
        let r = send(w.public(), signed_json(&json_body(&fields))).await;
        assert_eq!(r.status, StatusCode::OK, "{timeout}: {}", r.body);
        let entries = stream(&w).await;
        assert_eq!(get(&entries[i].1, "ttl_ms"), Some(ttl_ms), "{timeout}");
    }
}

#[tokio::test]
async fn no_live_binding_is_404_and_adds_nothing() {
    let (w, _dir) = world().await;
    let fields = notification("CAnobody", "RMnobody", "carol");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), "not_found");
    assert!(stream(&w).await.is_empty());
}

#[tokio::test]
async fn a_retried_message_id_is_200_without_a_second_entry() {
    let (w, _dir) = world().await;
    let fields = notification("CAretry", "RMretry", "bob");
    for duplicate in [false, true, true] {
        let r = send(w.public(), signed(&pairs(&fields))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["duplicate"], duplicate);
    }
    // The same notification as JSON: the same message id.
    let r = send(w.public(), signed_json(&json_body(&fields))).await;
    assert_eq!(r.body["duplicate"], true, "{}", r.body);
    assert_eq!(stream(&w).await.len(), 1);
    // A new message id is a new notification.
    let fields = notification("CAretry2", "RMretry2", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], false);
    assert_eq!(stream(&w).await.len(), 2);
}

#[tokio::test]
async fn a_retried_idempotency_token_is_200_without_a_second_entry() {
    let (w, _dir) = world().await;
    let post = |message_id: &str, token: Option<&str>| {
        let body = json_body(&notification("CAidem", message_id, "bob"));
        let sig = json_signature(AUTH_TOKEN, WEBHOOK_URL, &body);
        let headers: Vec<(&str, &str)> = token
            .map(|t| ("I-Twilio-Idempotency-Token", t))
            .into_iter()
            .collect();
        json_request(&body, Some(&sig), &headers)
    };
    for (message_id, token, duplicate) in [
        ("RMidem1", Some("idem-token-1"), false),
        // Twilio's retry: same token (here even under another message id).
        ("RMidem2", Some("idem-token-1"), true),
        // The same message id without the header.
        ("RMidem1", None, true),
        // Both new.
        ("RMidem3", Some("idem-token-3"), false),
    ] {
        let r = send(w.public(), post(message_id, token)).await;
        assert_eq!(r.status, StatusCode::OK, "{message_id}: {}", r.body);
        assert_eq!(r.body["duplicate"], duplicate, "{message_id} {token:?}");
    }
    assert_eq!(stream(&w).await.len(), 2);
    let r = send(w.public(), post("RMidem4", Some(&"t".repeat(257)))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.message().contains("I-Twilio-Idempotency-Token"),
        "{}",
        r.body
    );
    assert_eq!(stream(&w).await.len(), 2);
}

#[tokio::test]
async fn malformed_json_names_what_is_wrong_and_adds_nothing() {
    let (w, _dir) = world().await;
    let base = notification("CAbadjson", "RMbadjson", "bob");
    let without = |name: &str| -> String {
        json_body(
            &base
                .iter()
                .filter(|(k, _)| k != name)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let good = json_body(&base);
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() - 1].to_string(), "not valid JSON"),
        ("[]".into(), "not a JSON object"),
        (r#""twi_to""#.into(), "not a JSON object"),
        (
            good.replacen('{', r#"{"twi_answer_timeout": 30, "#, 1),
            "twi_answer_timeout",
        ),
        (
            good.replacen('{', r#"{"twi_params": {"a": "b"}, "#, 1),
            "twi_params",
        ),
        (
            good.replacen('{', r#"{"twi_to": "client:eve", "#, 1),
            "twi_to",
        ),
        (without("twi_call_sid"), "twi_call_sid"),
        (without("twi_to"), "twi_to"),
        (without("twi_message_id"), "twi_message_id"),
    ];
    for (body, named) in cases {
        let r = send(w.public(), signed_json(&body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
        assert!(r.message().contains(named), "{named}: {}", r.body);
    }

    // A 20 KB body: 413 before anything else.
    let mut big = base.clone();
    big.push(("twi_params".into(), "x".repeat(20 * 1024)));
    let r = send(w.public(), signed_json(&json_body(&big))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "payload_too_large");

    // Unsigned, or signed for another body: 403 before the body is read as JSON.
    let r = send(w.public(), json_request("[]", None, &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let stale = json_signature(AUTH_TOKEN, WEBHOOK_URL, &good);
    let req = Request::post(format!(
        "{ROUTE}?bodySHA256={}",
        support::twilio::body_sha256(&good)
    ))
    .header("content-type", "application/json")
    .header("x-twilio-signature", stale)
    .body(Body::from(without("twi_from")))
    .unwrap();
    let r = send(w.public(), req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("bodySHA256"), "{}", r.body);

    assert!(
        stream(&w).await.is_empty(),
        "nothing malformed reached the stream"
    );
}

#[tokio::test]
async fn malformed_requests_name_the_field_and_add_nothing() {
    let (w, _dir) = world().await;
    let base = notification("CAbad", "RMbad", "bob");
    let without = |name: &str| -> Vec<(String, String)> {
        base.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut f = without(name);
        f.push((name.to_string(), value.to_string()));
        f
    };
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (without("twi_call_sid"), "twi_call_sid"),
        (without("twi_to"), "twi_to"),
        (with("twi_to", &"x".repeat(130)), "twi_to"),
        (with("twi_to", "client:"), "twi_to"),
        (with("twi_call_sid", "CA\r\nInjected: yes"), "twi_call_sid"),
        (
            with("twi_params", "x")
                .into_iter()
                .chain([("twi_params".into(), "y".into())])
                .collect(),
            "twi_params",
        ),
    ];
    for (fields, field) in cases {
        let r = send(w.public(), signed(&pairs(&fields))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
        assert!(r.message().contains(field), "{field}: {}", r.body);
    }
    let r = send(w.public(), signed(&pairs(&with("twi_from", "a\u{7}b")))).await;
    assert!(r.message().contains("control characters"), "{}", r.body);

    // Bad percent-encoding (not UTF-8) is a 400 naming the field, before any signature check.
    let req = Request::post(ROUTE)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("twi_to=%FF%FE&twi_call_sid=CA1"))
        .unwrap();
    let r = send(w.public(), req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("twi_to"), "{}", r.body);

    // A 20 KB body.
    let big = with("twi_params", &"x".repeat(20 * 1024));
    let r = send(w.public(), signed(&pairs(&big))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "payload_too_large");

    // Neither JSON nor a form.
    let req = Request::post(ROUTE)
        .header("content-type", "text/plain")
        .body(Body::from("twi_call_sid=CA1"))
        .unwrap();
    let r = send(w.public(), req).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");
    assert!(r.message().contains("application/json"), "{}", r.body);
    assert!(r.message().contains("x-www-form-urlencoded"), "{}", r.body);

    // Another account's notification, correctly signed with our token.
    let other = with("twi_account_sid", "AC99999999999999999999999999999999");
    let r = send(w.public(), signed(&pairs(&other))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("twi_account_sid"));

    assert!(
        stream(&w).await.is_empty(),
        "nothing malformed reached the stream"
    );
}

#[tokio::test]
async fn the_message_id_marker_expires_with_the_ring_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| {
        add_twilio(s, dir.path(), &[support::twilio::AUTH_TOKEN]);
        s.twilio.ring_ttl_ms = 300;
    })
    .await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    let fields = notification("CAttl", "RMttl", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], false);
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.body["duplicate"], true);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(
        r.body["duplicate"], false,
        "past the ring ttl the id is new again"
    );
    assert_eq!(stream(&w).await.len(), 2);
}
