//! The hostile-input rows of everyone else: Twilio's webhook, routes and methods, the admin
//! API, stream entries a call server writes, and configuration an operator writes.

use axum::body::Body;
use http::{Method, Request};
use serde_json::json;

use crate::support::api::{token, ADMIN_TOKEN};
use crate::support::twilio;

use super::drivers::{
    admin, call_with, config, enqueue, entry, field, file, get, json_with_settings, nested, replay,
    request, Driver, Input, APNS_CREDENTIAL, JSON,
};

/// These rows' drivers, by id, in the table's order.
pub(super) fn rows() -> Vec<(&'static str, Driver)> {
    vec![
        // Twilio's webhook.
        ("W01", |_| {
            let fields = twilio::notification("CA-w01", "MM-w01", "alice");
            let form = twilio::form_encode(&twilio::pairs(&fields));
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("text/plain"),
                form,
            ))
        }),
        ("W02", |_| {
            let fields = twilio::notification("CA-w02", "MM-w02", "alice");
            Input::Public(twilio::request(&twilio::pairs(&fields), None))
        }),
        ("W03", |_| {
            let fields = twilio::notification("CA-w03", "MM-w03", "alice");
            let other = twilio::notification("CA-other", "MM-w03", "alice");
            let sig = twilio::signature(
                twilio::AUTH_TOKEN,
                twilio::WEBHOOK_URL,
                &twilio::pairs(&other),
            );
            Input::Public(twilio::request(&twilio::pairs(&fields), Some(&sig)))
        }),
        ("W04", |_| {
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("application/x-www-form-urlencoded"),
                "twi_to=client%3Aal%FFice",
            ))
        }),
        ("W05", |_| {
            let fields: Vec<(String, String)> = twilio::notification("CA-w05", "MM-w05", "alice")
                .into_iter()
                .filter(|(k, _)| k != "twi_call_sid")
                .collect();
            Input::Public(twilio::signed(&twilio::pairs(&fields)))
        }),
        ("W06", |_| {
            Input::Public(request(
                Method::POST,
                twilio::ROUTE,
                None,
                Some("application/x-www-form-urlencoded"),
                format!("twi_params={}", "a".repeat(17 * 1024)),
            ))
        }),
        ("W07", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w07", "MM-w07", "alice"));
            Input::Public(twilio::json_request(&body, None, &[]))
        }),
        ("W08", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w08", "MM-w08", "alice"));
            let sig = twilio::json_signature(twilio::AUTH_TOKEN, twilio::WEBHOOK_URL, &body);
            let (parts, _) = twilio::json_request(&body, Some(&sig), &[]).into_parts();
            let tampered = body.replace("alice", "mallory");
            Input::Public(Request::from_parts(parts, Body::from(tampered)))
        }),
        ("W09", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w09", "MM-w09", "alice"));
            Input::Public(twilio::signed_json(&format!("[{body}]")))
        }),
        ("W10", |_| {
            let body = twilio::json_body(&twilio::notification("CA-w10", "MM-w10", "alice"));
            let body = body.replacen('{', r#"{"twi_answer_timeout": 30, "#, 1);
            Input::Public(twilio::signed_json(&body))
        }),
        ("W11", |_| {
            json_with_settings("CA-w11", "key=KS1,algorithm=HMAC_MD5")
        }),
        ("W12", |_| {
            json_with_settings("CA-w12", "key=KS1,algorithm=HMAC_SHA1")
        }),
        // Routes and methods.
        ("R01", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/registrations",
                Some(&token("alice")),
                None,
                Body::empty(),
            ))
        }),
        ("R02", |_| {
            Input::Public(request(
                Method::PUT,
                "/v1/registrations",
                Some(&token("alice")),
                Some(JSON),
                "{}",
            ))
        }),
        ("R03", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/nothing",
                None,
                None,
                Body::empty(),
            ))
        }),
        ("R04", |_| {
            Input::Public(request(
                Method::POST,
                "/v1/calls",
                Some(ADMIN_TOKEN),
                Some(JSON),
                "{}",
            ))
        }),
        ("R05", |_| {
            Input::Public(request(
                Method::GET,
                "/v1/registrations/../../metrics",
                None,
                None,
                Body::empty(),
            ))
        }),
        ("R06", |_| {
            Input::Admin(request(Method::POST, "/metrics", None, None, Body::empty()))
        }),
        ("R07", |_| admin(Method::GET, "/v1/nothing", None)),
        // Admin API.
        ("A01", |_| {
            Input::Admin(request(Method::POST, "/v1/calls", None, Some(JSON), "{}"))
        }),
        ("A02", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some("wrong-admin-token"),
                Some(JSON),
                "{}",
            ))
        }),
        ("A03", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some(&format!("{ADMIN_TOKEN}x")),
                Some(JSON),
                "{}",
            ))
        }),
        ("A04", |_| {
            Input::Admin(request(
                Method::POST,
                "/v1/calls",
                Some(&token("alice")),
                Some(JSON),
                "{}",
            ))
        }),
        ("A05", |_| {
            call_with("params", json!({"a": "x".repeat(17 * 1024)}))
        }),
        ("A06", |_| {
            enqueue(format!(
                r#"{{"type":"incoming","to":"x","call_sid":"CA1","params":{}}}"#,
                nested(5_000)
            ))
        }),
        ("A07", |_| call_with("to", json!(5))),
        ("A08", |_| {
            enqueue(r#"{"type":"incoming","to":"hostile-nobody","to":"alice","call_sid":"CA-a08"}"#)
        }),
        ("A09", |_| call_with("ttl_ms", json!(-1))),
        ("A10", |_| call_with("ttl_ms", json!(0))),
        ("A11", |_| call_with("ttl_ms", json!(86_400_001u64))),
        ("A12", |_| call_with("ttl_ms", json!("soon"))),
        ("A13", |_| call_with("ttl_ms", json!(1e300))),
        ("A14", |_| {
            call_with("call_sid", json!("C".repeat(10 * 1024)))
        }),
        ("A15", |_| call_with("call_sid", json!("{CA1}"))),
        ("A16", |_| call_with("params", json!(["a", "b"]))),
        ("A17", |_| {
            call_with("params", json!({"a": "x".repeat(3 * 1024)}))
        }),
        ("A18", |_| call_with("params", json!({"a": {"b": "c"}}))),
        ("A19", |_| {
            enqueue(
                r#"{"type":"incoming","to":"hostile-nobody","call_sid":"CA-a19","params":{"a":"1","a":"2"}}"#,
            )
        }),
        ("A20", |_| call_with("to", json!("al\u{0}ice"))),
        ("A21", |_| call_with("type", json!("ring"))),
        ("A22", |_| {
            get(&format!("/v1/identities/{}/bindings", "x".repeat(122)))
        }),
        ("A23", |_| get("/v1/identities/a%00b/bindings")),
        ("A24", |_| get("/v1/identities/%FF/bindings")),
        ("A25", |_| get("/v1/identities/*/bindings")),
        ("A26", |_| get("/v1/dead-letters?limit=many")),
        ("A27", |_| get("/v1/dead-letters?limit=100000")),
        ("A28", |_| get("/v1/dead-letters/not-an-id")),
        ("A29", |_| replay(r#"{"ids":"x"}"#)),
        ("A30", |_| replay("{}")),
        ("A31", |_| replay(r#"{"all":true,"ttl_ms":-5}"#)),
        ("A32", |_| get("/v1/dead-letters?since=yesterday")),
        // Stream entries.
        ("S01", |_| entry(&[], &["type"])),
        ("S02", |_| field("type", "INCOMING")),
        ("S03", |_| entry(&[], &["to"])),
        ("S04", |_| field("to", &"x".repeat(122))),
        ("S05", |_| field("to", "al\u{0}ice")),
        ("S06", |_| entry(&[("to", b"al\xffice")], &[])),
        ("S07", |_| field("call_sid", &"C".repeat(10 * 1024))),
        ("S08", |_| field("call_sid", "")),
        ("S09", |_| entry(&[("call_sid", b"CA\xc3\x28")], &[])),
        ("S10", |_| field("ttl_ms", "-1")),
        ("S11", |_| field("ttl_ms", "0")),
        ("S12", |_| field("ttl_ms", &"9".repeat(25))),
        ("S13", |_| field("ttl_ms", "1e3")),
        ("S14", |_| field("params", "[1]")),
        ("S15", |_| {
            field("params", &json!({"a": "x".repeat(3 * 1024)}).to_string())
        }),
        ("S16", |_| field("params", r#"{"a":{"b":"c"}}"#)),
        ("S17", |_| field("params", &nested(1_000))),
        ("S18", |_| field("params", r#"{"a":"1","a":"2"}"#)),
        ("S27", |_| {
            field("twilio", r#"[{"twi_to": "client:alice"}]"#)
        }),
        ("S28", |_| field("twilio", r#"{"twi_answer_timeout": 30}"#)),
        ("S19", |_| field("from", "+1555\u{1b}[2J")),
        ("S20", |_| field("from", &"1".repeat(300))),
        ("S21", |_| {
            entry(&[("to", b"hostile-nobody"), ("to", b"alice")], &[])
        }),
        ("S22", |_| {
            let Input::Stream(_, fields) = entry(&[], &[]) else {
                unreachable!()
            };
            Input::Stream(Some("1-1"), fields)
        }),
        ("S23", |_| field("to", "}x{")),
        ("S24", |_| {
            let extra: Vec<(String, String)> = (0..500)
                .map(|i| (format!("x{i}"), "y".to_string()))
                .collect();
            let over: Vec<(&str, &[u8])> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            entry(&over, &[])
        }),
        ("S26", |_| {
            entry(
                &[("to", b"hostile-good"), ("call_sid", b"}{CA-s26}:*")],
                &[],
            )
        }),
        ("S25", |_| {
            let Input::Stream(id, mut fields) = entry(&[], &[]) else {
                unreachable!()
            };
            fields.push((b"x\xff".to_vec(), b"y".to_vec()));
            Input::Stream(id, fields)
        }),
        // Configuration.
        ("C01", |_| config("[redis]\nkey_prefix = \"cp:{x}:\"\n")),
        ("C02", |_| {
            config("[redis]\nurll = \"redis://127.0.0.1:1\"\n")
        }),
        ("C03", |_| config("[workers]\nmax_in_flight = \"many\"\n")),
        ("C04", |_| config("[retry]\nmax_attempts = -1\n")),
        ("C05", |_| {
            config("[redis]\nurl = \"redis://a:1\"\nurl = \"redis://b:1\"\n")
        }),
        ("C06", |_| {
            config("[redis]\nurl = \"http://127.0.0.1:6379\"\n")
        }),
        ("C07", |_| {
            config(&format!("[workers]\nmax_in_flight = {}\n", "9".repeat(25)))
        }),
        ("C08", |_| {
            Input::Config(
                String::new(),
                vec![("CALLPUSH_WORKERS__MAX_IN_FLIGHT".into(), "lots".into())],
            )
        }),
        ("C09", |_| {
            config(&APNS_CREDENTIAL.replace("bundle_id = \"com.example.app\"\n", ""))
        }),
        ("C10", |_| {
            config("[[credentials]]\nsid = \"CR1\"\nplatform = \"webpush\"\n")
        }),
        ("C11", |_| {
            config(&format!("{APNS_CREDENTIAL}{APNS_CREDENTIAL}"))
        }),
        ("C12", |env| {
            config(&format!("[auth]\naccount_sid = \"AC1\"\n[[auth.api_keys]]\nsid = \"SK1\"\nsecret_file = \"{}\"\n", env.dir.join("missing.secret").display()))
        }),
        ("C13", |env| {
            config(&format!(
                "[admin]\ntoken_file = \"{}\"\n",
                file(&env.dir, "empty-admin-token", "\n")
            ))
        }),
        ("C14", |_| config("[stream]\nclaim_idle_ms = 0\n")),
        ("C15", |_| {
            config(
                &APNS_CREDENTIAL.replace("key_file", "endpoint = \"ftp://apns.example\"\nkey_file"),
            )
        }),
    ]
}
