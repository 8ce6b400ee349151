//! `X-Twilio-Signature` on the webhook, with signatures computed by the tests' own
//! implementation of Twilio's published algorithm (tests/support/twilio.rs), itself checked
//! against known vectors first (tests/twilio_vectors.rs runs the requests the real `twilio`
//! library signed).

mod support;

use axum::body::Body;
use callpush::domain::Platform;
use http::{Request, StatusCode};
use support::api::{send, ApiWorld};
use support::twilio::{
    add_twilio, data_to_sign, hmac_sha1, json_body, json_query, notification, pairs, request, sha1,
    signature, signed, AUTH_TOKEN, ROUTE, WEBHOOK_URL,
};

#[test]
fn the_test_signer_matches_known_vectors() {
    assert_eq!(
        hex::encode(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    // RFC 2202, test case 2.
    assert_eq!(
        hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    // RFC 2202, test case 6: a key longer than the block is hashed first.
    assert_eq!(
        hex::encode(hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
    );
    // Twilio's own example (their signature-validation snippet): token 12345.
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    // Worked out by hand: the URL, then name+value sorted by name, nothing between.
    assert_eq!(
        data_to_sign(url, &params),
        "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309\
         Digits1234From+14158675309To+18005551212"
    );
    assert_eq!(
        signature("12345", url, &params),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
}

/// A webhook world with `bob` registered, the given auth tokens and webhook URL.
async fn world(tokens: &[&str], url: &str) -> (ApiWorld, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let w = ApiWorld::with(|s| {
        add_twilio(s, dir.path(), tokens);
        s.twilio.webhook_url = Some(url.into());
    })
    .await;
    w.world
        .register("bob", Platform::Apns, &"ab".repeat(32))
        .await;
    (w, dir)
}

async fn calls_len(w: &ApiWorld) -> usize {
    let mut conn = w.world.conn.clone();
    redis::cmd("XLEN")
        .arg(&w.world.keys.calls)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn valid_wrong_tampered_extra_and_missing() {
    let (w, _dir) = world(&[AUTH_TOKEN], WEBHOOK_URL).await;
    let fields = notification("CAsig1", "RMsig1", "bob");
    let params = pairs(&fields);

    let ok = send(w.public(), signed(&params)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(calls_len(&w).await, 1);

    let wrong = signature("not-the-token", WEBHOOK_URL, &params);
    let r = send(w.public(), request(&params, Some(&wrong))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "forbidden");
    assert!(r.message().contains("X-Twilio-Signature"), "{}", r.body);
    assert!(!r.body.to_string().contains(&wrong));

    let sig = signature(AUTH_TOKEN, WEBHOOK_URL, &params);
    let mut tampered = params.clone();
    tampered[3] = ("twi_from", "client:mallory");
    let r = send(w.public(), request(&tampered, Some(&sig))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let mut extra = params.clone();
    extra.push(("twi_extra", "added after signing"));
    let r = send(w.public(), request(&extra, Some(&sig))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = send(w.public(), request(&params, None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.message().contains("X-Twilio-Signature"), "{}", r.body);

    let r = send(w.public(), request(&params, Some("%%% not base64"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    assert_eq!(calls_len(&w).await, 1, "nothing refused reached the stream");
    let (_, metrics) = support::api::get_text(w.admin(), "/metrics").await;
    assert!(
        metrics.contains("callpush_twilio_signature_failures_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("callpush_twilio_webhooks_total{status=\"403\"} 5"));
    assert!(metrics.contains("callpush_twilio_webhooks_total{status=\"200\"} 1"));
}

#[tokio::test]
async fn rotated_tokens_are_both_accepted() {
    let (w, _dir) = world(&["new-auth-token", "old-auth-token"], WEBHOOK_URL).await;
    for (i, token) in ["old-auth-token", "new-auth-token"].iter().enumerate() {
        let fields = notification(&format!("CArot{i}"), &format!("RMrot{i}"), "bob");
        let params = pairs(&fields);
        let sig = signature(token, WEBHOOK_URL, &params);
        let r = send(w.public(), request(&params, Some(&sig))).await;
        assert_eq!(r.status, StatusCode::OK, "{token}: {}", r.body);
    }
    let fields = notification("CArot9", "RMrot9", "bob");
    let params = pairs(&fields);
    let sig = signature(AUTH_TOKEN, WEBHOOK_URL, &params);
    let r = send(w.public(), request(&params, Some(&sig))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a token no longer listed");
}

#[tokio::test]
async fn urls_with_and_without_port_and_query() {
    let url = "https://push.example.com/v1/twilio/call-notifications?region=eu";
    let (w, _dir) = world(&[AUTH_TOKEN], url).await;
    let with_port = "https://push.example.com:443/v1/twilio/call-notifications?region=eu";
    let without_query = "https://push.example.com/v1/twilio/call-notifications";
    for (i, (signed_url, expected)) in [
        (url, StatusCode::OK),
        (with_port, StatusCode::OK),
        (without_query, StatusCode::FORBIDDEN),
        (
            "http://push.example.com/v1/twilio/call-notifications?region=eu",
            StatusCode::FORBIDDEN,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let fields = notification(&format!("CAurl{i}"), &format!("RMurl{i}"), "bob");
        let params = pairs(&fields);
        let sig = signature(AUTH_TOKEN, signed_url, &params);
        let r = send(w.public(), request(&params, Some(&sig))).await;
        assert_eq!(r.status, expected, "signed for {signed_url}: {}", r.body);
    }

    // Configured with an explicit port: Twilio may sign with or without it.
    let (w, _dir) = world(&[AUTH_TOKEN], "https://push.example.com:8443/hook").await;
    for (i, signed_url) in [
        "https://push.example.com:8443/hook",
        "https://push.example.com/hook",
    ]
    .into_iter()
    .enumerate()
    {
        let fields = notification(&format!("CAport{i}"), &format!("RMport{i}"), "bob");
        let params = pairs(&fields);
        let sig = signature(AUTH_TOKEN, signed_url, &params);
        let r = send(w.public(), request(&params, Some(&sig))).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "signed for {signed_url}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn the_query_twilio_calls_with_is_signed_with_its_body_hash() {
    // Configured with a query of its own: Twilio calls that URL and adds `bodySHA256` to it.
    let url = "https://push.example.com/v1/twilio/call-notifications?region=eu";
    let (w, _dir) = world(&[AUTH_TOKEN], url).await;
    let body = json_body(&notification("CAquery", "RMquery", "bob"));
    let called = format!("{url}&{}", json_query(&body));
    let req = |query: &str, signed_url: &str| {
        Request::post(format!("{ROUTE}?{query}"))
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature(AUTH_TOKEN, signed_url, &[]))
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let query = format!("region=eu&{}", json_query(&body));
    let r = send(w.public(), req(&query, &called)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Signed without the query's `region=eu`: not the URL this request came to.
    let bare = format!("{WEBHOOK_URL}?{}", json_query(&body));
    let r = send(w.public(), req(&query, &bare)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn without_an_auth_token_the_webhook_is_off() {
    let w = ApiWorld::new().await;
    let fields = notification("CAoff", "RMoff", "bob");
    let r = send(w.public(), signed(&pairs(&fields))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
}
