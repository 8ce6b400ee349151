//! Stream entries → `CallEvent::parse`: never panics, and an accepted entry says what its
//! fields said.
//!
//! Input layout: the bytes split at NUL into id, name, value, name, value, …; each part decoded
//! lossily, as the consumer decodes what Redis returns.
#![no_main]

use callpush::event::{check_identity, CallEvent, StreamEntry, MAX_TTL_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let id = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.collect();
    let fields: Vec<(String, String)> = rest
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
        .collect();
    let entry = StreamEntry { id, fields };
    match CallEvent::parse(&entry) {
        Ok(event) => {
            assert_eq!(Some(event.to()), entry.field("to"));
            assert_eq!(Some(event.call_sid()), entry.field("call_sid"));
            assert!(check_identity(event.to()).is_ok());
            assert!((1..=MAX_TTL_MS).contains(&event.ttl_ms));
            assert!(event.deadline_ms() >= event.enqueued_at_ms);
            if let Some(params) = &event.call.params {
                let v: serde_json::Value = serde_json::from_str(params).unwrap();
                assert!(v.is_object());
            }
        }
        Err(e) => assert!(e.to_string().contains(e.field)),
    }
});
