//! The parsing of call events: every field, its bounds, and what is malformed.

use super::*;

fn entry(fields: &[(&str, &str)]) -> StreamEntry {
    StreamEntry::of("1700000000000-0", fields)
}

#[test]
fn parses_a_full_event() {
    let e = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("from", "+15551234567"),
        ("ttl_ms", "5000"),
        ("params", r#"{"a": "b"}"#),
        ("extra", "kept"),
    ]))
    .unwrap();
    assert_eq!(e.to(), "alice");
    assert_eq!(e.kind(), PushKind::Incoming);
    assert_eq!(e.deadline_ms(), 1_700_000_005_000);
    assert_eq!(e.call.params.as_deref(), Some(r#"{"a":"b"}"#));
    assert_eq!(e.call.caller.as_deref(), Some("+15551234567"));
    assert!(e.call.twilio.is_empty());
}

#[test]
fn twi_fields_are_collected_in_order() {
    let e = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "bob"),
        ("call_sid", "CA1"),
        ("twi_to", "client:bob"),
        ("twist", "not twilio's"),
        ("twi_call_sid", "CA1"),
    ]))
    .unwrap();
    assert_eq!(
        e.call.twilio,
        vec![
            ("twi_to".to_string(), "client:bob".to_string()),
            ("twi_call_sid".to_string(), "CA1".to_string())
        ]
    );
}

#[test]
fn the_twilio_field_carries_any_name_and_wins_over_twi_fields() {
    let e = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "bob"),
        ("call_sid", "CA1"),
        ("twi_to", "client:old"),
        (
            "twilio",
            r#"{"twi_to": "client:bob", "from": "x", "aps": "y"}"#,
        ),
    ]))
    .unwrap();
    assert_eq!(
        e.call.twilio,
        vec![
            ("twi_to".to_string(), "client:bob".to_string()),
            ("from".to_string(), "x".to_string()),
            ("aps".to_string(), "y".to_string()),
        ]
    );
    for bad in ["{", "[]", r#"{"a": 1}"#, r#"{"a": "1", "a": "2"}"#] {
        let err = CallEvent::parse(&entry(&[
            ("type", "incoming"),
            ("to", "bob"),
            ("call_sid", "CA1"),
            ("twilio", bad),
        ]))
        .unwrap_err();
        assert_eq!(err.field, "twilio", "{bad}: {err}");
    }
    let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_TWILIO_BYTES));
    let err = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "bob"),
        ("call_sid", "CA1"),
        ("twilio", &big),
    ]))
    .unwrap_err();
    assert_eq!(err.field, "twilio");
}

#[test]
fn a_known_field_given_twice_or_not_utf8_is_malformed() {
    let twice = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "a"),
        ("call_sid", "C"),
        ("to", "b"),
    ]))
    .unwrap_err();
    assert_eq!(twice.field, "to");
    assert!(twice.problem.contains("2 times"), "{twice}");
    let lossy = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "a"),
        ("call_sid", "CA\u{FFFD}"),
    ]))
    .unwrap_err();
    assert_eq!(lossy.field, "call_sid");
    let dup_params = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "a"),
        ("call_sid", "C"),
        ("params", r#"{"k": "1", "k": "2"}"#),
    ]))
    .unwrap_err();
    assert_eq!(dup_params.field, "params");
    // Unknown fields may repeat: they are only carried along.
    CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "a"),
        ("call_sid", "C"),
        ("x", "1"),
        ("x", "2"),
    ]))
    .unwrap();
}

#[test]
fn default_ttl() {
    let e = CallEvent::parse(&entry(&[
        ("type", "cancel"),
        ("to", "a"),
        ("call_sid", "C"),
    ]))
    .unwrap();
    assert_eq!(e.ttl_ms, DEFAULT_TTL_MS);
}

#[test]
fn malformed_names_the_field() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("to", "a"), ("call_sid", "C")], "type"),
        (&[("type", "ring"), ("to", "a"), ("call_sid", "C")], "type"),
        (&[("type", "incoming"), ("call_sid", "C")], "to"),
        (&[("type", "incoming"), ("to", ""), ("call_sid", "C")], "to"),
        (
            &[("type", "incoming"), ("to", "a\u{7}"), ("call_sid", "C")],
            "to",
        ),
        (&[("type", "incoming"), ("to", "a")], "call_sid"),
        (
            &[
                ("type", "incoming"),
                ("to", "a"),
                ("call_sid", "C"),
                ("ttl_ms", "x"),
            ],
            "ttl_ms",
        ),
        (
            &[
                ("type", "incoming"),
                ("to", "a"),
                ("call_sid", "C"),
                ("ttl_ms", "86400001"),
            ],
            "ttl_ms",
        ),
        (
            &[
                ("type", "incoming"),
                ("to", "a"),
                ("call_sid", "C"),
                ("params", "{"),
            ],
            "params",
        ),
        (
            &[
                ("type", "incoming"),
                ("to", "a"),
                ("call_sid", "C"),
                ("params", "[1]"),
            ],
            "params",
        ),
        (
            &[
                ("type", "incoming"),
                ("to", "a"),
                ("call_sid", "C"),
                ("params", r#"{"a":1}"#),
            ],
            "params",
        ),
    ];
    for (fields, field) in cases {
        let err = CallEvent::parse(&entry(fields)).unwrap_err();
        assert_eq!(err.field, *field, "{fields:?}: {err}");
        assert!(err.to_string().contains(field));
    }
    let long = "x".repeat(122);
    let err = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", &long),
        ("call_sid", "C"),
    ]))
    .unwrap_err();
    assert_eq!(err.field, "to");
}

#[test]
fn an_entry_keeps_its_fields_in_order_empty_and_repeated_ones_included() {
    let fields = [
        ("to", "alice"),
        ("", ""),
        ("x", "é ✓"),
        ("to", "bob"),
        ("y", ""),
    ];
    let e = StreamEntry::of("1-0", &fields);
    assert_eq!(e.fields().collect::<Vec<_>>(), fields);
    assert_eq!(e.len(), 5);
    assert_eq!(
        e.field("to"),
        Some("alice"),
        "the first of a repeated field"
    );
    assert_eq!(e.field("y"), Some(""));
    assert_eq!(e.field("z"), None);
    let owned = e.to_pairs();
    assert_eq!(StreamEntry::from_slice("1-0", &owned), e);
    assert!(StreamEntry::of("2-0", &[]).is_empty());
}

#[test]
fn a_known_field_given_twice_is_malformed_and_named() {
    let twice = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("to", "bob"),
    ]))
    .unwrap_err();
    assert_eq!(twice.field, "to");
    assert_eq!(twice.problem, "is given 2 times");
    let thrice = CallEvent::parse(&entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("ttl_ms", "1000"),
        ("ttl_ms", "2000"),
        ("ttl_ms", "3000"),
    ]))
    .unwrap_err();
    assert_eq!(thrice.field, "ttl_ms");
    assert_eq!(thrice.problem, "is given 3 times");
    // An unknown field may repeat: it is only kept.
    let repeated_unknown = entry(&[
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA1"),
        ("extra", "1"),
        ("extra", "2"),
    ]);
    assert!(CallEvent::parse(&repeated_unknown).is_ok());
}
