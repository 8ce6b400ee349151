//! The registry's contract: every name registered once, label sets known in advance visible
//! at zero, and the metered provider counting each request by its answer.

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};

use super::*;
use crate::domain::{CallContent, Platform, Push, PushKind};
use crate::providers::{Failure, Outcome, Provider};

fn scrape(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

struct Answers(std::sync::Mutex<Vec<Outcome>>);

#[async_trait::async_trait]
impl Provider for Answers {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }
    fn credential(&self) -> &str {
        "CRfcm"
    }
    fn sends_cancel(&self) -> bool {
        true
    }
    async fn send(&self, _push: &Push) -> Outcome {
        self.0.lock().unwrap().remove(0)
    }
}

fn push() -> Push {
    Push::new(
        Arc::new(CallContent {
            kind: PushKind::Incoming,
            call_sid: "CA1".into(),
            caller: None,
            callee: "alice".into(),
            params: None,
            deadline_ms: u64::MAX,
            twilio: Vec::new(),
        }),
        "token",
    )
}

#[test]
fn known_label_sets_show_zero_before_any_work() {
    let registry = Registry::new();
    Metrics::new(&registry, [(Platform::Apns, "CRapns")]).unwrap();
    let text = scrape(&registry);
    for line in [
        r#"callpush_events_total{outcome="no_bindings",type="incoming"} 0"#,
        r#"callpush_rate_limited_total{scope="callee"} 0"#,
        r#"callpush_registrations_total{outcome="created",platform="fcm"} 0"#,
        r#"callpush_pushes_total{credential="CRapns",environment="production",outcome="delivered",platform="apns",reason=""} 0"#,
        r#"callpush_pushes_total{credential="CRapns",environment="sandbox",outcome="delivered",platform="apns",reason=""} 0"#,
        r#"callpush_provider_connections{credential="CRapns",environment="production",platform="apns"} 0"#,
        r#"callpush_provider_connections{credential="CRapns",environment="sandbox",platform="apns"} 0"#,
        r#"callpush_credential_paused{credential="CRapns",platform="apns"} 0"#,
        r#"callpush_credential_pauses_total{credential="CRapns",platform="apns"} 0"#,
        r#"callpush_provider_token_refreshes_total{outcome="failed",platform="fcm"} 0"#,
        r#"callpush_push_retries_total{platform="apns",reason="ServiceUnavailable"} 0"#,
        r#"callpush_push_retries_total{platform="fcm",reason="timeout"} 0"#,
        r#"callpush_tokens_pruned_total{platform="apns",reason="DeviceTokenNotForTopic"} 0"#,
        r#"callpush_tokens_pruned_total{platform="fcm",reason="UNREGISTERED"} 0"#,
        r#"callpush_pushes_total{credential="CRapns",environment="production",outcome="retry",platform="apns",reason="TooManyRequests"} 0"#,
        r#"callpush_pushes_total{credential="CRapns",environment="sandbox",outcome="invalid_token",platform="apns",reason="Unregistered"} 0"#,
        "callpush_pushes_in_flight 0",
        "callpush_stream_lag 0",
        r#"callpush_event_latency_seconds_bucket{type="incoming",le="30"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

#[test]
fn a_second_metrics_on_the_same_registry_is_refused() {
    let registry = Registry::new();
    Metrics::new(&registry, []).unwrap();
    assert!(Metrics::new(&registry, []).is_err());
}

#[tokio::test]
async fn metered_provider_counts_each_request_by_answer() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry, [(Platform::Fcm, "CRfcm")]).unwrap();
    let inner = Arc::new(Answers(std::sync::Mutex::new(vec![
        Outcome::Retry {
            failure: Failure::new("UNAVAILABLE", "FCM 503"),
            retry_after: None,
        },
        Outcome::Delivered,
        Outcome::InvalidToken {
            failure: Failure::new("UNREGISTERED", "FCM 404"),
            judged_at_ms: 0,
        },
    ])));
    let metered = MeteredProvider::new(inner, &metrics);
    for _ in 0..3 {
        metered.send(&push()).await;
    }
    let text = scrape(&registry);
    for line in [
        r#"callpush_pushes_total{credential="CRfcm",environment="",outcome="retry",platform="fcm",reason="UNAVAILABLE"} 1"#,
        r#"callpush_pushes_total{credential="CRfcm",environment="",outcome="delivered",platform="fcm",reason=""} 1"#,
        r#"callpush_pushes_total{credential="CRfcm",environment="",outcome="invalid_token",platform="fcm",reason="UNREGISTERED"} 1"#,
        r#"callpush_push_duration_seconds_count{credential="CRfcm",platform="fcm"} 3"#,
        "callpush_pushes_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

#[test]
fn an_event_of_an_unexpected_type_is_counted_as_unknown() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry, []).unwrap();
    metrics.event("ring", "malformed");
    metrics.event("cancel", "delivered");
    let text = scrape(&registry);
    assert!(text.contains(r#"callpush_events_total{outcome="malformed",type="unknown"} 1"#));
    assert!(text.contains(r#"callpush_events_total{outcome="delivered",type="cancel"} 1"#));
}
