//! Micro-benchmarks of the per-event and per-push hot paths (`cargo bench --bench hot_paths`):
//! parsing a call event from its stream entry, building the APNs and FCM bodies in both payload
//! formats, verifying an access token, and decoding a stored binding. `docs/benchmarks.md`
//! has the numbers of one run.

use std::hint::black_box;
use std::sync::Arc;

use callpush::auth::{self, Auth};
use callpush::bindings::Binding;
use callpush::config::{PayloadFormat, Settings};
use callpush::domain::{now_ms, Push};
use callpush::event::{CallEvent, StreamEntry};
use criterion::{criterion_group, criterion_main, Criterion};

fn entry() -> StreamEntry {
    let fields = [
        ("type", "incoming"),
        ("to", "alice"),
        ("call_sid", "CA0123456789abcdef0123456789abcdef"),
        ("from", "+15551234567"),
        ("ttl_ms", "30000"),
        ("params", r#"{"display":"Bob","room":"42"}"#),
    ];
    StreamEntry::of(format!("{}-0", now_ms()), &fields)
}

fn event_parsing(c: &mut Criterion) {
    let entry = entry();
    c.bench_function("event_parse", |b| {
        b.iter(|| CallEvent::parse(black_box(&entry)).unwrap())
    });
}

fn payloads(c: &mut Criterion) {
    let event = CallEvent::parse(&entry()).unwrap();
    let call = event.call.clone();
    let push = Push::new(Arc::clone(&call), "fcm-registration-token-0123456789");
    let mut group = c.benchmark_group("payload");
    group.bench_function("apns_callpush", |b| {
        b.iter(|| callpush::apns::payload::body(black_box(&call)))
    });
    group.bench_function("apns_twilio", |b| {
        b.iter(|| callpush::apns::payload::twilio_body(black_box(&call)))
    });
    for (name, format) in [
        ("fcm_callpush", PayloadFormat::Callpush),
        ("fcm_twilio", PayloadFormat::Twilio),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| callpush::fcm::payload::message(black_box(&push), format, 1_800_000_000))
        });
    }
    group.finish();
}

fn token_verification(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the-api-key-secret\n").unwrap();
    let toml = format!(
        r#"
[auth]
account_sid = "AC00000000000000000000000000000001"
[[auth.api_keys]]
sid = "SK00000000000000000000000000000001"
secret_file = {:?}
"#,
        secret.display().to_string()
    );
    let settings = Settings::from_toml_with_env(&toml, Vec::new()).unwrap();
    let auth = Auth::from_settings(&settings).unwrap();
    let now = now_ms() / 1000;
    let token = auth::mint(&settings, "alice", 3600, None, now).unwrap();
    c.bench_function("access_token_verify", |b| {
        b.iter(|| auth.verify(black_box(&token), now).unwrap())
    });
}

fn binding_decode(c: &mut Criterion) {
    // As the binding store keeps it (`src/bindings/redis/`).
    let stored = r#"{"created_at_ms":1800000000000,"binding_id":"BS0123456789abcdef0123456789abcdef","identity":"alice","platform":"apns","credential":"CRapns","device_token":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","updated_at_ms":1800000000000,"expires_at_ms":1831536000000}"#;
    serde_json::from_str::<Binding>(stored).unwrap();
    c.bench_function("binding_decode", |b| {
        b.iter(|| serde_json::from_str::<Binding>(black_box(stored)).unwrap())
    });
}

criterion_group!(
    hot_paths,
    event_parsing,
    payloads,
    token_verification,
    binding_decode
);
criterion_main!(hot_paths);
