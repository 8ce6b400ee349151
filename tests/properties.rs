//! Property tests (proptest) of the parsers that read what strangers send: call events from the
//! stream, access tokens, device tokens and registration bodies. Each never panics on any input,
//! and whatever it accepts round-trips: the parsed value says what the input said.
//!
//! Case counts stay modest so the binary runs in a few seconds; the fuzz targets (`fuzz/`) are
//! for long runs.

mod support;

use std::collections::BTreeMap;

use callpush::api::read_registration_body;
use callpush::auth::Auth;
use callpush::bindings::normalize_device_token;
use callpush::config::Settings;
use callpush::domain::{now_ms, Platform, PushKind};
use callpush::event::{CallEvent, StreamEntry, MAX_TTL_MS};
use proptest::prelude::*;
use serde_json::json;
use support::api::{add_auth, claims, sign, KEY_SECRET};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Any text, hostile characters included: braces, NUL and controls, U+FFFD, multi-byte.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[{}:* \\x00\\n\\u{FFFD}a-z0-9é]{0,40}",
        Just("x".repeat(300)),
    ]
}

/// A valid identity: 1 to 121 bytes, no control characters, no U+FFFD.
fn identity() -> impl Strategy<Value = String> {
    "[^\\p{Cc}\u{FFFD}]{1,30}".prop_filter("at most 121 bytes", |s| s.len() <= 121)
}

/// A valid APNs token: 32 to 100 bytes as hex digits, in either case.
fn apns_token() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(any::<u8>(), 32..=100),
        any::<bool>(),
    )
        .prop_map(|(bytes, upper)| {
            let hex = hex::encode(bytes);
            if upper {
                hex.to_uppercase()
            } else {
                hex
            }
        })
}

fn entry(fields: Vec<(String, String)>) -> StreamEntry {
    StreamEntry::from_slice(format!("{}-0", now_ms()), &fields)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_parsing_never_panics(
        names in proptest::collection::vec(prop_oneof![
            Just("type".to_string()), Just("to".to_string()), Just("call_sid".to_string()),
            Just("ttl_ms".to_string()), Just("params".to_string()), Just("from".to_string()),
            hostile_text(),
        ], 0..8),
        values in proptest::collection::vec(hostile_text(), 8),
    ) {
        let fields = names.into_iter().zip(values).collect::<Vec<_>>();
        if let Err(e) = CallEvent::parse(&entry(fields)) {
            prop_assert!(e.to_string().contains(e.field));
        }
    }

    #[test]
    fn an_accepted_event_says_what_its_fields_said(
        cancel in any::<bool>(),
        to in identity(),
        call_sid in "[A-Za-z0-9{}:_-]{1,64}",
        from in proptest::option::of("[+0-9a-z:]{1,30}"),
        ttl_ms in 1..=MAX_TTL_MS,
        params in proptest::collection::btree_map("[a-z{}\" ]{1,8}", "[^\\x00]{0,20}", 0..5),
    ) {
        let params_text = serde_json::to_string(&params).unwrap();
        let mut fields = vec![
            ("type".to_string(), if cancel { "cancel" } else { "incoming" }.to_string()),
            ("to".to_string(), to.clone()),
            ("call_sid".to_string(), call_sid.clone()),
            ("ttl_ms".to_string(), ttl_ms.to_string()),
        ];
        if let Some(f) = &from {
            fields.push(("from".to_string(), f.clone()));
        }
        let fits = params_text.len() <= callpush::event::MAX_PARAMS_BYTES;
        if fits {
            fields.push(("params".to_string(), params_text));
        }
        let event = CallEvent::parse(&entry(fields)).unwrap();
        prop_assert_eq!(event.kind(), if cancel { PushKind::Cancel } else { PushKind::Incoming });
        prop_assert_eq!(event.to(), to.as_str());
        prop_assert_eq!(event.call_sid(), call_sid.as_str());
        prop_assert_eq!(event.call.caller.as_deref(), from.as_deref());
        prop_assert_eq!(event.ttl_ms, ttl_ms);
        prop_assert_eq!(event.deadline_ms(), event.enqueued_at_ms + ttl_ms);
        if fits {
            let back: BTreeMap<String, String> =
                serde_json::from_str(event.call.params.as_deref().unwrap()).unwrap();
            prop_assert_eq!(back, params);
        }
    }

    #[test]
    fn device_tokens_never_panic_and_accepted_ones_are_stable(
        token in prop_oneof![hostile_text(), "[0-9a-fA-F]{60,204}", "[A-Za-z0-9_:.-]{1,200}"],
    ) {
        for platform in [Platform::Apns, Platform::Fcm] {
            if let Ok(stored) = normalize_device_token(platform, &token) {
                prop_assert_eq!(stored.to_lowercase(), token.to_lowercase());
                prop_assert_eq!(normalize_device_token(platform, &stored), Ok(stored.clone()));
                let forbidden = ['{', '}', ' ', '*', '\0'];
                prop_assert!(!stored.contains(forbidden), "{stored:?}");
            }
        }
    }

    #[test]
    fn valid_device_tokens_are_accepted(
        apns in apns_token(),
        fcm in "[A-Za-z0-9_:.-]{1,300}",
    ) {
        prop_assert_eq!(normalize_device_token(Platform::Apns, &apns), Ok(apns.to_lowercase()));
        prop_assert_eq!(normalize_device_token(Platform::Fcm, &fcm), Ok(fcm.clone()));
    }

    #[test]
    fn registration_bodies_never_panic_and_round_trip(
        raw in prop_oneof![
            hostile_text().prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..64),
        ],
        apns in apns_token().prop_map(|t| t.to_lowercase()),
        fcm in "[A-Za-z0-9_:.-]{1,100}",
    ) {
        if let Err(rejection) = read_registration_body(&raw) {
            prop_assert_eq!(rejection.status, 400);
        }
        for (platform, name, token) in [(Platform::Apns, "apns", &apns), (Platform::Fcm, "fcm", &fcm)] {
            let body = json!({"platform": name, "device_token": token}).to_string();
            prop_assert_eq!(read_registration_body(body.as_bytes()), Ok((platform, token.clone())));
        }
    }
}

/// An `Auth` with the test API key, as the daemon builds it.
fn auth() -> (Auth, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::from_toml_with_env("", Vec::new()).unwrap();
    add_auth(&mut settings, dir.path());
    (Auth::from_settings(&settings).unwrap(), dir)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_verification_never_panics(
        raw in prop_oneof![hostile_text(), "[A-Za-z0-9_.=-]{0,200}"],
        claim in prop_oneof![Just("exp"), Just("nbf"), Just("grants"), Just("sub"), Just("iss")],
        value in prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            hostile_text().prop_map(|s| json!(s)),
            Just(json!([1, 2])),
            Just(json!({"identity": []})),
            Just(json!(null)),
        ],
    ) {
        let (auth, _dir) = auth();
        let now = now_ms() / 1000;
        if let Err(e) = auth.verify(&raw, now) {
            prop_assert!(matches!(e.status(), 401 | 403));
        }
        let mut c = claims("alice");
        c[claim] = value;
        match auth.verify(&sign(&c, KEY_SECRET), now) {
            Ok(t) => prop_assert_eq!(t.identity, "alice"),
            Err(e) => prop_assert!(matches!(e.status(), 401 | 403)),
        }
    }

    #[test]
    fn a_signed_token_round_trips_its_identity(identity in identity()) {
        let (auth, _dir) = auth();
        let t = auth.verify(&sign(&claims(&identity), KEY_SECRET), now_ms() / 1000).unwrap();
        prop_assert_eq!(t.identity, identity);
        prop_assert!(t.incoming_allowed);
    }
}
